"""One big job: what the job machinery costs at 10 pairs and at 10,000.

The gateway and a Celery worker run as processes on a Redis database of their own, the tiny profile's
thresholds, and the four model services replaced by stand-ins that answer after a fixed latency
(`bench/standin.py`): this measures the gateway, Celery, Redis and the store, not the models. For each job size
it prints how long POST took, the median cost of a status request and of a page of samples while and after
the job runs, the time to the event stream's first event, the throughput, each export's time and the gateway's
peak memory while it streams, and how long a full reconcile takes after Redis lost everything.

    python -m bench.scale                 # 10 and 10,000 pairs
    python -m bench.scale --pairs 1000    # a quicker look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import redis

from services.launch import free_port, stop, wait_ready, worker_command
from spotdiff.jobs.queues import create_celery
from spotdiff.jobs.store import JobStore
from spotdiff.settings import SERVICE_NAMES, Settings
from workers.reconciler import reconcile

REDIS_URL = "redis://127.0.0.1:6379/11"
EXAMPLES = Path(__file__).parent.parent / "examples" / "caption_pairs.jsonl"


def pairs(count: int, prefix: str) -> list[dict]:
    examples = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    return [{**examples[i % len(examples)], "id": f"{prefix}{i:05d}", "seed": i} for i in range(count)]


def median_ms(call: Callable[[], object], times: int) -> float:
    taken = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        taken.append(time.perf_counter() - started)
    return statistics.median(taken) * 1000


@contextmanager
def peak_rss(pid: int) -> Iterator[dict[str, float]]:
    """The process's resident memory before, and at its highest while the block runs (sampled every 10 ms)."""
    process = psutil.Process(pid)
    seen = {"before_mb": process.memory_info().rss / 2**20, "peak_mb": 0.0}
    running = True

    def sample() -> None:
        while running:
            seen["peak_mb"] = max(seen["peak_mb"], process.memory_info().rss / 2**20)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        running = False
        sampler.join()


def first_event_ms(url: str, job_id: str) -> float:
    started = time.perf_counter()
    with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                return (time.perf_counter() - started) * 1000
    raise AssertionError("the stream ended without an event")


def measure(url: str, gateway_pid: int, size: int, label: str) -> tuple[str, dict[str, float]]:
    http = httpx.Client(base_url=url, timeout=600)
    body = {"pairs": pairs(size, label)}
    started = time.perf_counter()
    answer = http.post("/v1/jobs", json=body)
    post_s = time.perf_counter() - started
    answer.raise_for_status()
    job_id = answer.json()["id"]
    found = {"post_s": post_s}
    found["status_running_ms"] = median_ms(lambda: http.get(f"/v1/jobs/{job_id}").raise_for_status(), 30)
    found["first_event_ms"] = statistics.median(first_event_ms(url, job_id) for _ in range(5))
    while http.get(f"/v1/jobs/{job_id}").json()["state"] != "done":
        time.sleep(0.5)
    found["pairs_per_s"] = size / (time.perf_counter() - started)
    found["status_done_ms"] = median_ms(lambda: http.get(f"/v1/jobs/{job_id}").raise_for_status(), 30)
    last = max(0, size - 50)
    page = f"/v1/jobs/{job_id}/samples?offset={last}&limit=50"
    found["samples_page_ms"] = median_ms(lambda: http.get(page).raise_for_status(), 10)
    for export_format in ("jsonl", "llava", "messages", "hf", "parquet"):
        with peak_rss(gateway_pid) as memory:
            started = time.perf_counter()
            with http.stream("GET", f"/v1/jobs/{job_id}/export", params={"format": export_format}) as stream:
                sent = sum(len(chunk) for chunk in stream.iter_bytes())
            found[f"export_{export_format}_s"] = time.perf_counter() - started
        found[f"export_{export_format}_mb"] = sent / 2**20
        found[f"export_{export_format}_rss_growth_mb"] = memory["peak_mb"] - memory["before_mb"]
        found[f"export_{export_format}_rss_peak_mb"] = memory["peak_mb"]
    return job_id, found


def reconcile_after_loss(settings: Settings, job_id: str, size: int) -> float:
    store = JobStore.from_url(settings.redis_url, settings.storage_url)
    store.redis.flushdb()  # Redis lost everything
    started = time.perf_counter()
    reconcile(store, create_celery(settings), settings, full=True)
    took = time.perf_counter() - started
    status = store.status(job_id)
    assert status is not None and status.done == size and status.state.value == "done", status
    return took


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4, help="Celery worker processes")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="each stand-in answer's latency")
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    ports = [free_port() for _ in SERVICE_NAMES]
    urls = {name: f"http://127.0.0.1:{port}" for name, port in zip(SERVICE_NAMES, ports, strict=True)}
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "SPOTDIFF_PROFILE": "tiny",
            "SPOTDIFF_REDIS_URL": REDIS_URL,
            "SPOTDIFF_STORAGE_URL": str(Path(folder) / "store"),
            "SPOTDIFF_WORKER__SERVICE_URLS": json.dumps(urls),
            "SPOTDIFF_GATEWAY__MAX_PAIRS_PER_JOB": str(max(args.pairs, args.small)),
            "SPOTDIFF_GATEWAY__MAX_REQUEST_BYTES": str(64 * 2**20),
            "SPOTDIFF_WORKER__RECONCILE_INTERVAL_S": "3600",  # this benchmark times a reconcile itself
        }
        standin = [sys.executable, "-m", "bench.standin", "--latency-ms", str(args.latency_ms), "--ports"]
        quiet = subprocess.DEVNULL
        processes = [subprocess.Popen([*standin, ",".join(map(str, ports))], env=env, stdout=quiet, stderr=quiet)]
        gateway_port = free_port()
        command = [sys.executable, "-m", "uvicorn", "gateway.app:create_app", "--factory", "--port", str(gateway_port)]
        processes.append(subprocess.Popen([*command, "--log-level", "warning"], env=env, stdout=quiet, stderr=quiet))
        processes.append(subprocess.Popen(worker_command(args.workers), env=env, stdout=quiet, stderr=quiet))
        url = f"http://127.0.0.1:{gateway_port}"
        try:
            wait_ready({**urls, "gateway": url})
            print(
                f"scale [stand-in services answering after {args.latency_ms:.0f} ms, not the models; tiny profile; "
                f"{args.workers} worker processes; {psutil.cpu_count()} CPUs]",
                flush=True,
            )
            settings = Settings(profile="tiny", redis_url=REDIS_URL, storage_url=str(Path(folder) / "store"))
            results = {}
            for size in (args.small, args.pairs):  # the small job first: its reconcile reads only its own records
                job_id, found = measure(url, processes[1].pid, size, f"s{size}-")
                found["reconcile_s"] = reconcile_after_loss(settings, job_id, size)
                results[size] = found
            names = list(next(iter(results.values())))
            print(f"{'':28s}" + "".join(f"{size:>14,d}" for size in results), flush=True)
            for name in names:
                values = "".join(f"{results[size][name]:14.3f}" for size in results)
                print(f"{name:28s}{values}", flush=True)
        finally:
            stop(processes, timeout=60)
            client.flushdb()


if __name__ == "__main__":
    main()
