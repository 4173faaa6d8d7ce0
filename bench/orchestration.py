"""What does the distributed path cost per pair over the embedded one, on the same pairs and tiny models?

In one run: the embedded run (four services in this process, 8 pairs in flight) against the distributed
path (the gateway in this process, Celery workers on the local Redis, the four services as processes,
results through the artifact store), both on the same pairs, each timed from submission to the last record.
Prints the per-pair difference (target <= 50 ms). The worker pool runs 8 processes, matching the embedded
run's 8 pairs in flight.
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


async def embedded(settings: Settings, items: list[dict], folder: Path) -> float:
    from services.registry import in_process
    from spotdiff.runner import run_embedded

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    async with in_process(settings) as clients:
        await run_embedded(path, folder / "warm", settings, progress=False, clients=clients)  # warm-up pass
        started = time.perf_counter()
        await run_embedded(path, folder / "run", settings, progress=False, clients=clients)
        return time.perf_counter() - started


async def distributed(settings: Settings, items: list[dict], folder: Path) -> float:
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
    processes.append(subprocess.Popen(worker_command(8), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
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
                    await asyncio.sleep(0.05)
                return time.perf_counter() - started

            await job([{**item, "id": "warm-" + item["id"]} for item in items])  # warm-up pass
            return await job(items)
    finally:
        stop(processes, timeout=60)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from spotdiff.cli import ensure_tiny_models

    settings = Settings(profile="tiny")
    ensure_tiny_models(settings)
    redis.Redis.from_url(REDIS_URL).flushdb()
    items = pairs(24)
    with tempfile.TemporaryDirectory() as folder:
        embedded_s = asyncio.run(embedded(settings, items, Path(folder) / "embedded"))
        distributed_s = asyncio.run(distributed(settings, items, Path(folder) / "distributed"))
    redis.Redis.from_url(REDIS_URL).flushdb()
    overhead_ms = (distributed_s - embedded_s) / len(items) * 1000
    print(
        f"orchestration[{len(items)} pairs, tiny profile]: embedded {embedded_s:.2f}s, distributed "
        f"{distributed_s:.2f}s; per-pair overhead {overhead_ms:.1f} ms (target <= 50 ms)",
        flush=True,
    )


if __name__ == "__main__":
    main()
