"""What does the distributed path cost per pair over the embedded one, on the same pairs and tiny models?

In one run: the embedded run (four services in this process) against the distributed path (the gateway in
this process, Celery workers on the local Redis, one task per step per pair, the four services as processes,
state and records through the artifact store), on the same pairs, each timed from submission to the last
record, twice:

- throughput: 24 pairs, 8 in flight on both sides (8 worker processes);
- latency: 6 pairs one at a time (1 worker process, concurrency 1), so the difference is what six queue
  hops, six state round trips through the store and HTTP to the services add to one pair.

Prints the per-pair differences (target <= 50 ms).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import redis

from services.launch import free_port, start_services, stop, wait_ready, worker_command
from spotdiff.settings import SERVICE_NAMES, Settings

REDIS_URL = "redis://127.0.0.1:6379/13"
EXAMPLES = Path(__file__).parent.parent / "examples" / "caption_pairs.jsonl"


def pairs(count: int) -> list[dict]:
    examples = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    return [{**examples[i % len(examples)], "id": f"p{i:03d}", "seed": i} for i in range(count)]


async def embedded(settings: Settings, items: list[dict], folder: Path, in_flight: int) -> float:
    from services.registry import in_process
    from spotdiff.runner import run_embedded

    settings = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(update={"concurrency": in_flight})})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    async with in_process(settings) as clients:
        await run_embedded(path, folder / "warm", settings, progress=False, clients=clients)  # warm-up pass
        started = time.perf_counter()
        await run_embedded(path, folder / "run", settings, progress=False, clients=clients)
        return time.perf_counter() - started


async def distributed(settings: Settings, items: list[dict], folder: Path, in_flight: int) -> float:
    from gateway.app import create_app

    urls = {name: f"http://127.0.0.1:{free_port()}" for name in SERVICE_NAMES}
    env = {
        **os.environ,
        "SPOTDIFF_PROFILE": "tiny",
        "SPOTDIFF_TINY_DIR": str(settings.tiny_dir),
        "SPOTDIFF_REDIS_URL": REDIS_URL,
        "SPOTDIFF_STORAGE_URL": str(folder / "store"),
        "SPOTDIFF_WORKER__SERVICE_URLS": json.dumps(urls),
    }
    processes = start_services(urls, env)
    worker = subprocess.Popen(worker_command(in_flight), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes.append(worker)
    try:
        await asyncio.to_thread(wait_ready, urls)
        config = settings.model_copy(
            update={
                "redis_url": REDIS_URL,
                "storage_url": str(folder / "store"),
                "worker": settings.worker.model_copy(update={"service_urls": urls}),
            }
        )
        app = create_app(config)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:

            async def job(batch: list[dict]) -> float:
                started = time.perf_counter()
                job_id = (await client.post("/v1/jobs", json={"pairs": batch})).json()["id"]
                while (await client.get(f"/v1/jobs/{job_id}")).json()["state"] != "done":
                    await asyncio.sleep(0.02)
                return time.perf_counter() - started

            await job([{**item, "id": "warm-" + item["id"]} for item in items])  # warm-up pass
            return await job(items)
    finally:
        stop(processes, timeout=60)


def compare(settings: Settings, count: int, in_flight: int, label: str) -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()
    items = pairs(count)
    with tempfile.TemporaryDirectory() as folder:
        embedded_s = asyncio.run(embedded(settings, items, Path(folder) / "embedded", in_flight))
        distributed_s = asyncio.run(distributed(settings, items, Path(folder) / "distributed", in_flight))
    redis.Redis.from_url(REDIS_URL).flushdb()
    overhead_ms = (distributed_s - embedded_s) / count * 1000
    print(
        f"orchestration {label}[{count} pairs, {in_flight} in flight, tiny profile]: embedded {embedded_s:.2f}s, "
        f"distributed {distributed_s:.2f}s; per-pair overhead {overhead_ms:.1f} ms (target <= 50 ms)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from spotdiff.cli import ensure_tiny_models

    settings = Settings(profile="tiny")
    ensure_tiny_models(settings)
    compare(settings, count=24, in_flight=8, label="throughput")
    compare(settings, count=6, in_flight=1, label="latency")


if __name__ == "__main__":
    main()
