"""Session fixtures: tiny checkpoints built (or found) once, the four services started once, all in one process."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from spotdiff.clients import ServiceClients
from spotdiff.settings import Settings


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoints: the ones `make models` built (SPOTDIFF_TINY_DIR), else built here."""
    from services.tiny import build_all, is_complete

    configured = os.environ.get("SPOTDIFF_TINY_DIR")
    if configured and is_complete(Path(configured)):
        return Path(configured)
    directory = tmp_path_factory.mktemp("tiny")
    build_all(directory)
    return directory


@pytest.fixture(scope="session")
def settings(tiny_dir: Path) -> Settings:
    """The tiny profile; batches wait up to 50 ms so that concurrent test requests share them even on a busy CI."""
    patient = {"max_wait_ms": 50.0}
    return Settings(profile="tiny", tiny_dir=tiny_dir, generation=patient, similarity=patient, captioning=patient)


@pytest_asyncio.fixture(scope="session")
async def clients(settings: Settings) -> AsyncIterator[ServiceClients]:
    """The four services in this process, ready, behind their clients."""
    from services.registry import in_process

    async with in_process(settings) as started:
        yield started
