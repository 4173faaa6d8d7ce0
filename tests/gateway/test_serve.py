"""`spotdiff serve`, then every README example marked ``serve`` or ``serve-python``, word for word and in
order (the port moved to a free one)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import redis

from services.launch import free_port, free_port_block, stop
from tests.test_docs import examples

ROOT = Path(__file__).parents[2]


SERVE_REDIS = "redis://127.0.0.1:6379/14"


def test_serve_then_the_readme_curls(tiny_dir: Path, tmp_path: Path) -> None:
    redis.Redis.from_url(SERVE_REDIS).flushdb()
    port = free_port()
    services_port = free_port_block(4, avoid={port})  # serve puts the four services on consecutive ports
    env = {
        **os.environ,
        "SPOTDIFF_TINY_DIR": str(tiny_dir),
        "SPOTDIFF_STORAGE_URL": str(tmp_path / "store"),
        "SPOTDIFF_REDIS_URL": SERVE_REDIS,
        "SPOTDIFF_PROFILE": "tiny",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "spotdiff.cli", "serve", "--port", str(port), "--services-port", str(services_port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            log = (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline and server.poll() is None, f"spotdiff serve did not start:\n{log}"
            time.sleep(0.3)
        blocks = [example for example in examples() if example.kind in ("serve", "serve-python")]
        assert len(blocks) >= 4
        (tmp_path / "examples").symlink_to(ROOT / "examples")
        for example in blocks:
            code = example.code.replace("localhost:8000", f"localhost:{port}")
            if example.kind == "serve":
                code = "\n".join(line for line in code.splitlines() if "spotdiff serve" not in line)
                command = ["bash", "-euo", "pipefail", "-c", code]
            else:
                command = [sys.executable, "-c", code]
            done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
            assert done.returncode == 0, f"{code}\n---\n{done.stdout[-1000:]}\n{done.stderr[-2000:]}"
        with zipfile.ZipFile(tmp_path / "llava.zip") as archive:
            assert "llava.json" in archive.namelist() and any(
                name.startswith("images/") and name.endswith(".jpg") for name in archive.namelist()
            )
    finally:
        stop([server], timeout=60)
        redis.Redis.from_url(SERVE_REDIS).flushdb()
