"""`spotdiff serve`, then the README's curl commands, word for word (ports moved to free ones)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
import redis

from services.launch import free_port

ROOT = Path(__file__).parents[2]


def readme_serve_commands() -> str:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- serve-example -->", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line for line in block.strip().splitlines() if "spotdiff serve" not in line]
    return "\n".join(lines)


SERVE_REDIS = "redis://127.0.0.1:6379/14"


def test_serve_then_the_readme_curls(tiny_dir: Path, tmp_path: Path) -> None:
    redis.Redis.from_url(SERVE_REDIS).flushdb()
    port, services_port = free_port(), free_port()
    while any(services_port + i == port for i in range(4)):
        services_port = free_port()
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
            assert time.monotonic() < deadline and server.poll() is None, "spotdiff serve did not become ready"
            time.sleep(0.3)
        script = readme_serve_commands().replace("localhost:8000", f"localhost:{port}")
        # run the README's lines, waiting for the job between the status line and the export
        submit, status, export = re.split(r"\n(?=curl )", script)
        job = subprocess.run(
            ["bash", "-c", submit + "\necho $JOB"], cwd=ROOT, capture_output=True, text=True, check=True, env=env
        ).stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{32}", job), job
        for _ in range(240):
            state = subprocess.run(
                ["bash", "-c", f"JOB={job}\n{status}"], capture_output=True, text=True, check=True
            ).stdout
            if '"state":"done"' in state:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the job did not finish: {state}")
        subprocess.run(["bash", "-c", f"JOB={job}\n{export}"], cwd=tmp_path, check=True)
        with zipfile.ZipFile(tmp_path / "llava.zip") as archive:
            assert "llava.json" in archive.namelist() and any(name.endswith("_0.jpg") for name in archive.namelist())
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        redis.Redis.from_url(SERVE_REDIS).flushdb()
