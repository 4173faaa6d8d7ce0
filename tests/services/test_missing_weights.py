"""A service whose configured weights are not there fails readiness with the setting and the path, before any
model library tries (and says something less useful)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from services.registry import create_app
from spotdiff.settings import Settings


@pytest.mark.parametrize(
    ("service", "override", "named"),
    [
        ("regions", {"regions": {"model": "/nowhere/sam_vit_h.pth"}}, "SPOTDIFF_REGIONS__MODEL=/nowhere/sam_vit_h.pth"),
        (
            "similarity",
            {"similarity": {"blip_model": "/nowhere/blip"}},
            "SPOTDIFF_SIMILARITY__BLIP_MODEL=/nowhere/blip",
        ),
    ],
)
async def test_missing_weights_fail_readiness_naming_the_setting(service: str, override: dict, named: str) -> None:
    app = create_app(service, Settings(profile="reference", **override))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            deadline = time.monotonic() + 30
            while (body := (await client.get("/readyz")).json())["status"] == "loading":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert body["status"] == "failed" and named in body["error"] and "no such file" in body["error"]


async def test_a_failed_load_makes_the_service_unhealthy() -> None:
    app = create_app("regions", Settings(profile="reference", regions={"model": "/nowhere/sam.pth"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            deadline = time.monotonic() + 30
            while (health := await client.get("/healthz")).status_code == 200:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert health.status_code == 503 and health.json()["status"] == "failed"
            assert "/nowhere/sam.pth" in health.json()["error"]


def test_a_service_process_whose_load_failed_exits_non_zero() -> None:
    """An orchestrator restarts what exits; a process that stays up unready forever is never restarted."""
    import os
    import subprocess

    from services.launch import free_port, service_command

    env = {**os.environ, "SPOTDIFF_PROFILE": "reference", "SPOTDIFF_REGIONS__MODEL": "/nowhere/sam.pth"}
    done = subprocess.run(service_command("regions", free_port()), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "failed to load" in done.stderr and "SPOTDIFF_REGIONS__MODEL=/nowhere/sam.pth" in done.stderr
