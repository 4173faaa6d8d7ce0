"""Start the services and Celery workers as processes, and wait for them: for `spotdiff serve`, the
integration tests and the benchmarks, which all need the same stack (torch-free: it only spawns)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Mapping
from typing import IO

import httpx


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_block(count: int, avoid: Collection[int] = ()) -> int:
    """The first of ``count`` consecutive ports nothing listens on right now (none of them in ``avoid``)."""
    for _ in range(100):
        first = free_port()
        block = range(first, first + count)
        if any(port in avoid for port in block) or block.stop > 65536:
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in block:
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise RuntimeError(f"found no {count} consecutive free ports")


def worker_command(concurrency: int, loglevel: str = "warning") -> list[str]:
    """A Celery worker on every step queue (the app reads its broker from SPOTDIFF_REDIS_URL)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def service_command(name: str, port: int, log_level: str = "warning") -> list[str]:
    """``spotdiff serve-service`` for one service on ``port``."""
    return [sys.executable, "-m", "spotdiff.cli", "serve-service", name, "--port", str(port), "--log-level", log_level]


def start_services(
    urls: Mapping[str, str], env: Mapping[str, str], log: int | IO[bytes] = subprocess.DEVNULL
) -> list[subprocess.Popen[bytes]]:
    """One ``spotdiff serve-service`` process per service, each on its URL's port."""
    return [
        subprocess.Popen(
            service_command(name, int(url.rsplit(":", 1)[1])),
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        for name, url in urls.items()
    ]


def wait_ready(urls: Mapping[str, str], timeout: float = 180.0) -> None:
    """Block until every URL's ``/readyz`` answers 200; raise with the laggards after ``timeout``."""
    deadline = time.monotonic() + timeout
    waiting = dict(urls)
    while waiting:
        for name, url in list(waiting.items()):
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    del waiting[name]
            except httpx.TransportError:
                pass
        if waiting and time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(waiting)}")
        if waiting:
            time.sleep(0.2)


def stop(processes: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM to each, ``timeout`` seconds to exit, then SIGKILL; each reaped."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
