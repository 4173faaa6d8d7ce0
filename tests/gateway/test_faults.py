"""Faults the stack must survive: workers killed mid-step, a service down for 20 s, Redis flushed mid-job,
and a burst of requests far over what a service can batch."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest_asyncio
import redis
from PIL import Image

from gateway.app import create_app
from gateway.deps import hash_key
from services.launch import free_port, start_services, stop, wait_ready
from spotdiff.jobs.queues import STEP_QUEUES, create_celery
from spotdiff.jobs.store import JobStore
from spotdiff.settings import Settings
from workers.reconciler import reconcile

from .conftest import KEYS, REDIS_URL

EXAMPLES = Path(__file__).parents[2] / "examples" / "caption_pairs.jsonl"
HEADERS = {"Authorization": f"Bearer {KEYS['alice']}"}


def many_pairs(count: int, prefix: str) -> list[dict]:
    examples = [json.loads(line) for line in EXAMPLES.read_text().splitlines()]
    return [{**examples[i % len(examples)], "id": f"{prefix}{i:03d}", "seed": i} for i in range(count)]


@pytest_asyncio.fixture(scope="module")
async def setup(stack: dict) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = Settings(
        profile="tiny",
        redis_url=REDIS_URL,
        storage_url=str(stack["storage"]),
        gateway={"api_keys": [hash_key(KEYS["alice"])]},
        worker={"service_urls": stack["urls"]},
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://gateway"
    ) as client:
        yield client, settings


async def status(client: httpx.AsyncClient, job_id: str) -> dict:
    return (await client.get(f"/v1/jobs/{job_id}", headers=HEADERS)).json()


async def until(client: httpx.AsyncClient, job_id: str, done: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = await status(client, job_id)
        if current["done"] >= done:
            return current
        await asyncio.sleep(0.2)
    broker = redis.Redis.from_url(REDIS_URL)
    queues = {queue: broker.llen(queue) for queue in STEP_QUEUES}
    raise AssertionError(f"job {job_id} stalled: {current}; queued {queues}, unacked {broker.hlen('unacked')}")


def assert_each_pair_once(store: JobStore, job_id: str, expected: int) -> None:
    records = store.records(job_id)
    assert len(records) == expected and len({record.pair_id for record in records}) == expected


async def test_killing_workers_mid_step_loses_nothing_and_duplicates_nothing(setup, stack: dict) -> None:
    client, settings = setup
    pairs = many_pairs(50, "kill")
    job_id = (await client.post("/v1/jobs", json={"pairs": pairs}, headers=HEADERS)).json()["id"]
    worker = psutil.Process(stack["worker"].pid)
    kills = 0
    while kills < 8 and (await status(client, job_id))["done"] < len(pairs):
        children = worker.children()
        if children:
            os.kill(children[kills % len(children)].pid, signal.SIGKILL)  # a pool process, mid-step
            kills += 1
        await asyncio.sleep(0.7)
    assert kills >= 4
    final = await until(client, job_id, len(pairs), timeout=300)
    assert final["state"] == "done" and final["done"] == len(pairs)
    assert final["accepted"] + final["rejected"] == len(pairs) and final["stages"] == {}
    assert_each_pair_once(JobStore.from_url(REDIS_URL, settings.storage_url), job_id, len(pairs))
    export = await client.get(f"/v1/jobs/{job_id}/export", params={"format": "jsonl"}, headers=HEADERS)
    exported = [json.loads(line)["pair_id"] for line in export.text.splitlines()]
    assert sorted(exported) == sorted(pair["id"] for pair in pairs)  # each once: none lost, none twice


async def test_a_service_down_for_20s_mid_job_fails_no_pair(setup, stack: dict) -> None:
    client, settings = setup
    pairs = many_pairs(16, "outage")
    job_id = (await client.post("/v1/jobs", json={"pairs": pairs}, headers=HEADERS)).json()["id"]
    await until(client, job_id, 1)
    name = "captioning"  # the last service a pair needs: every pair in flight runs into the outage
    stop([stack["services"][name]])
    await asyncio.sleep(20)
    during = await status(client, job_id)
    stack["services"][name] = start_services({name: stack["urls"][name]}, stack["env"])[0]
    final = await until(client, job_id, len(pairs), timeout=300)
    assert during["done"] < len(pairs)  # the job did wait for the service
    assert final["state"] == "done" and final["done"] == len(pairs)
    records = JobStore.from_url(REDIS_URL, settings.storage_url).records(job_id)
    failed = [record.pair_id for record in records if record.rejection and "service" in record.rejection.reason]
    assert failed == []


async def test_a_flushed_redis_is_finished_from_the_store(setup) -> None:
    client, settings = setup
    pairs = many_pairs(20, "flush")
    job_id = (await client.post("/v1/jobs", json={"pairs": pairs}, headers=HEADERS)).json()["id"]
    await until(client, job_id, 3)
    store = JobStore.from_url(REDIS_URL, settings.storage_url)
    store.redis.flushdb()  # the queue and all progress are gone
    assert store.lost(job_id)
    midway = await status(client, job_id)  # still answered, from the store
    assert midway["total"] == len(pairs) and 3 <= midway["done"] <= len(pairs)
    restored = reconcile(store, create_celery(settings), settings).restored
    assert job_id in restored
    final = await until(client, job_id, len(pairs))
    assert final["state"] == "done" and final["done"] == len(pairs)
    assert_each_pair_once(store, job_id, len(pairs))


def png_b64(size: int) -> str:
    buffer = io.BytesIO()
    Image.effect_noise((size, size), 64).convert("RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def test_a_burst_of_ten_batches_gets_429s_bounded_memory_and_all_accepted_work_done(stack: dict) -> None:
    """Captioning with batches of 4 and 8 queued requests, hit by 40 requests at once."""
    url = f"http://127.0.0.1:{free_port()}"
    env = {**stack["env"], "SPOTDIFF_CAPTIONING__MAX_BATCH_SIZE": "4", "SPOTDIFF_CAPTIONING__MAX_QUEUE": "8"}
    (service,) = start_services({"captioning": url}, env)
    try:
        wait_ready({"captioning": url})
        process = psutil.Process(service.pid)
        body = {"image": png_b64(256), "prompt": "Describe the picture.", "max_new_tokens": 8}
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            info = (await http.get("/v1/info")).json()
            burst = 10 * info["max_batch_size"]
            baseline = process.memory_info().rss
            peak = baseline
            answers: dict[int, httpx.Response] = {}

            async def watch_memory() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, process.memory_info().rss)
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch_memory())
            pending = list(range(burst))
            refused = 0
            for _ in range(60):  # rounds: whatever was refused comes back after its Retry-After
                results = await asyncio.gather(*(http.post("/v1/captions", json=body) for _ in pending))
                waits = []
                for index, answer in zip(pending, results, strict=True):
                    if answer.status_code == 429:
                        waits.append(float(answer.headers["Retry-After"]))
                    else:
                        answers[index] = answer
                refused += len(waits)
                pending = [index for index in pending if index not in answers]
                if not pending:
                    break
                await asyncio.sleep(min(waits))
            watcher.cancel()
        assert refused > 0  # the burst was over the bound
        assert sorted(answers) == list(range(burst))  # and every request was done in the end
        assert all(answer.status_code == 200 and answer.json()["tokens"] >= 1 for answer in answers.values())
        assert peak - baseline < 512 * 2**20  # refusals cost no memory: a full queue decodes nothing
    finally:
        stop([service])
