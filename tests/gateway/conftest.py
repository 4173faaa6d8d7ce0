"""A real stack on this machine: Redis (database 15), the four services and a Celery worker as processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from spotdiff.settings import SERVICE_NAMES

REDIS_URL = "redis://127.0.0.1:6379/15"
KEYS = {"alice": "alice-secret-key", "bob": "bob-secret-key"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "spotdiff.cli",
                "serve-service",
                name,
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, port in ports.items()
    ]
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "worker",
            "--concurrency",
            "2",
            "--loglevel",
            "warning",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes.append(worker)
    try:
        deadline = time.monotonic() + 180
        for url in urls.values():
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"{url} never became ready")
                time.sleep(0.2)
        yield {"env": env, "urls": urls, "storage": storage, "worker": worker}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
