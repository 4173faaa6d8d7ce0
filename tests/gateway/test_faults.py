"""Faults the stack must survive: workers killed mid-pair, Redis flushed mid-job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest_asyncio

from gateway.app import create_app
from gateway.deps import hash_key
from spotdiff.settings import Settings
from workers.celery_app import create_celery
from workers.jobstore import JobStore
from workers.reconciler import reconcile_lost_jobs

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
    raise AssertionError(f"job {job_id} stalled: {current}")


def assert_each_pair_once(store: JobStore, job_id: str, expected: int) -> None:
    records = store.records(job_id)
    assert len(records) == expected and len({record.pair_id for record in records}) == expected


async def test_killing_workers_mid_pair_loses_nothing_and_duplicates_nothing(setup, stack: dict) -> None:
    client, settings = setup
    pairs = many_pairs(30, "kill")
    job_id = (await client.post("/v1/jobs", json={"pairs": pairs}, headers=HEADERS)).json()["id"]
    worker = psutil.Process(stack["worker"].pid)
    kills = 0
    while kills < 6 and (await status(client, job_id))["done"] < len(pairs):
        children = worker.children()
        if children:
            os.kill(children[0].pid, signal.SIGKILL)  # a pool process, in the middle of whatever it runs
            kills += 1
        await asyncio.sleep(0.7)
    assert kills >= 3
    final = await until(client, job_id, len(pairs))
    assert final["state"] == "done" and final["done"] == len(pairs)
    assert final["accepted"] + final["rejected"] == len(pairs)
    assert_each_pair_once(JobStore.from_url(REDIS_URL, settings.storage_url), job_id, len(pairs))


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
    restored = reconcile_lost_jobs(store, create_celery(settings))
    assert job_id in restored
    final = await until(client, job_id, len(pairs))
    assert final["state"] == "done" and final["done"] == len(pairs)
    assert_each_pair_once(store, job_id, len(pairs))
