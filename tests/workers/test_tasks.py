"""The step task's own guards, without a broker: the deadline around a step's work."""

from __future__ import annotations

import asyncio

import pytest

from workers.tasks import StepTimedOut, WorkerProcess


def test_a_step_past_its_deadline_is_stopped_and_the_loop_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTDIFF_REDIS_URL", "redis://127.0.0.1:6379/9")
    worker = WorkerProcess()
    cancelled = []

    async def hangs() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(StepTimedOut, match="deadline"):
        worker.within(hangs(), 0.1)
    assert cancelled == [True]  # the step's work was cancelled, not left running on the loop

    async def quick() -> int:
        return 7

    assert worker.within(quick(), 1.0) == 7
