"""The reference profile on full-size random-weight checkpoints (`make test-full`, marker ``slow``).

Each service runs as a real process, started by bash from the README's "Real weights" block as written, with
``/models`` pointing at the full-size directory (``SPOTDIFF_FULL_DIR``, which `make test-full` builds with
`spotdiff models full-size`) and a reduced workload (256 px pairs). One service at a time, so the machine holds
one model. Readiness time, peak memory and request times go into ``out/test-full/report.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.full_size import is_complete
from services.launch import free_port, stop
from tests.test_docs import ROOT, examples

FULL_DIR = Path(os.environ.get("SPOTDIFF_FULL_DIR", Path.home() / ".cache" / "spotdiff" / "full"))
REPORT = ROOT / "out" / "test-full" / "report.json"
READY_TIMEOUT_S = 1800.0  # SDXL's 10 GB of float32 weights and a 1024-px SAM embedding, on two CPU cores
REDUCED_WORKLOAD = {"SPOTDIFF_GENERATION__HEIGHT": "256", "SPOTDIFF_GENERATION__WIDTH": "256"}


def reference_block() -> str:
    """The README's reference-weights settings, exactly as a user copies them."""
    (block,) = [e.code for e in examples() if e.kind == "shell" and "SPOTDIFF_PROFILE=reference" in e.code]
    return block


def peak_rss_mib(pid: int) -> float:
    """The process's high-water resident memory (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise LookupError("no VmHWM")


@dataclass
class ServiceProcess:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    ready_s: float
    measured: dict[str, Any] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/v1/info", timeout=30)
        answer.raise_for_status()
        info: dict[str, Any] = answer.json()
        return info

    def post(self, path: str, body: dict[str, Any], label: str | None = None) -> dict[str, Any]:
        """One request; its seconds go into the report as ``label`` (default: the operation's name)."""
        started = time.monotonic()
        answer = httpx.post(f"{self.url}{path}", json=body, timeout=1800)
        assert answer.status_code == 200, answer.text[:2000]
        self.measured[f"{label or path.rsplit('/', 1)[-1]}_s"] = round(time.monotonic() - started, 2)
        result: dict[str, Any] = answer.json()
        return result


class Report:
    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}

    def write(self) -> None:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps({"models": str(FULL_DIR), "services": self.services}, indent=2) + "\n")


@pytest.fixture(scope="session")
def full_dir() -> Path:
    if not is_complete(FULL_DIR):
        pytest.fail(f"no full-size models at {FULL_DIR}: `spotdiff models full-size --out {FULL_DIR}` builds them")
    return FULL_DIR


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    kept = Report()
    yield kept
    kept.write()


@contextlib.contextmanager
def serve(name: str, full_dir: Path, report: Report) -> Iterator[ServiceProcess]:
    """``spotdiff serve-service name`` from a shell that ran the README's block; ready, or the test fails."""
    port = free_port()
    reduced = "".join(f"export {key}={value}\n" for key, value in REDUCED_WORKLOAD.items())
    script = (
        reference_block().replace("/models/", f"{full_dir}/")
        + reduced
        + f"exec .venv/bin/python -m spotdiff.cli serve-service {name} --port {port} --log-level info\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("SPOTDIFF_")}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    log = (REPORT.parent / f"{name}.log").open("wb")
    process = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while True:
            assert process.poll() is None, f"{name} exited {process.returncode}: see {REPORT.parent / (name + '.log')}"
            with contextlib.suppress(httpx.TransportError):
                status = httpx.get(f"{url}/readyz", timeout=5)
                if status.status_code == 200:
                    break
                assert status.json().get("status") != "failed", status.text
            assert time.monotonic() - started < READY_TIMEOUT_S, f"{name} not ready in {READY_TIMEOUT_S} s"
            time.sleep(1)
        service = ServiceProcess(name, url, process, round(time.monotonic() - started, 1))
        yield service
        service.measured["peak_rss_mib"] = round(peak_rss_mib(process.pid), 1)
        report.services[name] = {"ready_s": service.ready_s, **service.measured}
    finally:
        stop([process], timeout=60)
        log.close()
