"""Server-sent events of long work: progress, then the result or the error envelope; leaving stops the work."""

import asyncio
import json

from pydantic import BaseModel

from httpkit.errors import ServiceError
from services.kit.streaming import progress_then_answer, sse


class Step(BaseModel):
    step: int


class Answer(BaseModel):
    value: int


def parse(event: str) -> tuple[str, dict]:
    name, data = event.strip().split("\n")
    return name.removeprefix("event: "), json.loads(data.removeprefix("data: "))


async def test_progress_events_then_the_result() -> None:
    progress: asyncio.Queue[BaseModel] = asyncio.Queue()

    async def work() -> Answer:
        for step in (1, 2):
            progress.put_nowait(Step(step=step))
        return Answer(value=3)

    events = [event async for event in progress_then_answer(work, progress)]
    assert events == [sse("progress", Step(step=1)), sse("progress", Step(step=2)), sse("result", Answer(value=3))]


async def test_a_failure_is_an_error_event_carrying_the_envelope() -> None:
    async def work() -> Answer:
        raise ServiceError(422, "replace_needs_equal_tokens", "unequal tokens", details={"source": 3})

    events = [parse(event) async for event in progress_then_answer(work, asyncio.Queue())]
    assert events == [
        (
            "error",
            {"error": {"code": "replace_needs_equal_tokens", "message": "unequal tokens", "details": {"source": 3}}},
        )
    ]


async def test_an_unexpected_failure_is_an_internal_error_event() -> None:
    async def work() -> Answer:
        raise RuntimeError("boom")

    ((name, body),) = [parse(event) async for event in progress_then_answer(work, asyncio.Queue())]
    assert name == "error" and body["error"]["code"] == "internal_error" and body["error"]["message"] == "boom"


async def test_leaving_the_stream_cancels_the_work() -> None:
    progress: asyncio.Queue[BaseModel] = asyncio.Queue()
    cancelled = asyncio.Event()

    async def work() -> Answer:
        progress.put_nowait(Step(step=1))
        try:
            await asyncio.Event().wait()  # never set: only cancellation ends it
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Answer(value=0)

    stream = progress_then_answer(work, progress)
    assert parse(await anext(stream)) == ("progress", {"step": 1})
    await stream.aclose()  # what the server does when the client goes
    assert cancelled.is_set()
