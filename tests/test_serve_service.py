"""Each service started alone as a process: /readyz is 503 while it loads and warms up, then 200."""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.launch import free_port, service_command
from spotdiff.clients import RewritingClient, SimilarityClient
from spotdiff.protocol.rewriting import RewriteRequest
from spotdiff.protocol.similarity import CosineRequest, Operand, ScorePair
from spotdiff.settings import SERVICE_NAMES


def test_each_service_serves_alone(tiny_dir: Path) -> None:
    env = {**os.environ, "SPOTDIFF_TINY_DIR": str(tiny_dir), "SPOTDIFF_PROFILE": "tiny"}
    ports = {name: free_port() for name in SERVICE_NAMES}
    processes = {
        name: subprocess.Popen(
            service_command(name, port),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, port in ports.items()
    }
    try:
        readiness: dict[str, list[int]] = {name: [] for name in SERVICE_NAMES}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not all(200 in codes for codes in readiness.values()):
            for name, port in ports.items():
                if 200 in readiness[name]:
                    continue
                assert processes[name].poll() is None, processes[name].stderr.read().decode()  # type: ignore[union-attr]
                with contextlib.suppress(httpx.TransportError):
                    readiness[name].append(httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code)
            time.sleep(0.05)
        for name, port in ports.items():
            codes = readiness[name]
            assert codes and codes[0] == 503 and codes[-1] == 200, (name, codes)  # not ready, then ready
            assert set(codes) <= {200, 503}
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
            assert f'spotdiff_ready{{service="{name}"}} 1.0' in metrics.text
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "ok"}
        # the typed client works over the network as it does in-process
        request = CosineRequest(pairs=[ScorePair(a=Operand(text="a dog"), b=Operand(text="a dog"))])
        client = SimilarityClient(f"http://127.0.0.1:{ports['similarity']}")
        assert asyncio.run(client.cosine(request)).scores[0] > 0.999
        rewriting = RewritingClient(f"http://127.0.0.1:{ports['rewriting']}")
        asks = [RewriteRequest(caption="A dog on the grass", seed=seed) for seed in (3, 3, 4)]

        async def rewrite_each() -> list:
            return [await rewriting.rewrite(ask) for ask in asks]

        first, again, other = asyncio.run(rewrite_each())
        assert first == again and first.model_id.endswith("llama") and first.tokens >= 1
        assert other.answer != first.answer or other.tokens != first.tokens
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(timeout=30)


def test_a_service_process_waits_for_work_passively_unless_told_otherwise(monkeypatch) -> None:
    """OpenMP threads spinning in four service processes on the same cores cost 6x (docs/performance.md)."""
    from spotdiff.cli import _share_the_cpu_politely

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    _share_the_cpu_politely()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    _share_the_cpu_politely()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_gateway_serves_alone_and_logs_json_lines(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SPOTDIFF_REDIS_URL": "redis://127.0.0.1:6379/9",
        "SPOTDIFF_STORAGE_URL": str(tmp_path / "store"),
        "SPOTDIFF_LOG_JSON": "true",
    }
    log = tmp_path / "gateway.log"
    command = [sys.executable, "-m", "spotdiff.cli", "serve-gateway", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline and server.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and all(line["service"] == "gateway" and line["level"] for line in lines)
