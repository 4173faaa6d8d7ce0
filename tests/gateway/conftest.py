"""A real stack on this machine: Redis (database 15), the four services and a Celery worker as processes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from services.launch import free_port, start_services, stop, wait_ready, worker_command
from spotdiff.settings import SERVICE_NAMES

# another database for a second test run on the same machine at the same time
REDIS_URL = os.environ.get("SPOTDIFF_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
KEYS = {"alice": "alice-secret-key", "bob": "bob-secret-key", "carol": "carol-secret-key"}


@contextlib.contextmanager
def gateway_process(env: dict[str, str]) -> Iterator[str]:
    """A gateway as its own process (uvicorn, the app factory reads ``env``); yields its URL once it is ready."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "gateway.app:create_app", "--factory", "--port", str(port)]
    process = subprocess.Popen([*command, "--log-level", "warning"], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready({"gateway": url}, timeout=120)
        yield url
    finally:
        stop([process])


@pytest.fixture(scope="session")
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not answering on 127.0.0.1:6379 (.ci/run starts it)")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def stack(tiny_dir: Path, redis_db: redis.Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    storage = tmp_path_factory.mktemp("store")
    ports = {name: free_port() for name in SERVICE_NAMES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        **os.environ,
        "SPOTDIFF_PROFILE": "tiny",
        "SPOTDIFF_TINY_DIR": str(tiny_dir),
        "SPOTDIFF_REDIS_URL": REDIS_URL,
        "SPOTDIFF_STORAGE_URL": str(storage),
        "SPOTDIFF_WORKER__SERVICE_URLS": json.dumps(urls),
        "SPOTDIFF_WORKER__RETRY_BACKOFF_S": "0.5",
    }
    services = dict(zip(urls, start_services(urls, env), strict=True))
    worker = subprocess.Popen(worker_command(2), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # a test may stop and restart a service: it replaces the process here, and teardown stops what is current
    running = {"services": services, "worker": worker, "env": env, "urls": urls, "storage": storage}
    try:
        try:
            wait_ready(urls)
        except TimeoutError as exc:
            pytest.fail(str(exc))
        yield running
    finally:
        stop([*running["services"].values(), running["worker"]])


@pytest.fixture(scope="module")
def gateway_url(stack: dict) -> Iterator[str]:
    """A gateway process on the stack's Redis and storage (keys of alice and bob), so the stack's worker runs
    what it accepts."""
    from gateway.deps import hash_key

    env = {
        **stack["env"],
        "SPOTDIFF_STORAGE_URL": str(stack["storage"]),
        "SPOTDIFF_GATEWAY__API_KEYS": json.dumps([hash_key(KEYS["alice"]), hash_key(KEYS["bob"])]),
    }
    with gateway_process(env) as url:
        yield url
