"""Server-sent events for long operations: ``progress`` events while the work runs, then its ``result`` or an
``error`` event whose data is the error envelope every other failure answers with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from pydantic import BaseModel

from httpkit.errors import ServiceError
from spotdiff.protocol.errors import ErrorBody, ErrorResponse


def sse(event: str, body: BaseModel) -> str:
    return f"event: {event}\ndata: {body.model_dump_json()}\n\n"


def error_envelope(error: BaseException) -> ErrorResponse:
    """The envelope of a failure that happens after the stream's 200 went out."""
    if isinstance(error, ServiceError):
        return ErrorResponse(error=ErrorBody(code=error.code, message=error.message, details=error.details))
    return ErrorResponse(error=ErrorBody(code="internal_error", message=str(error)))


async def progress_then_answer(
    work: Callable[[], Awaitable[BaseModel]], progress: asyncio.Queue[BaseModel]
) -> AsyncIterator[str]:
    """Run ``work``, streaming what arrives on ``progress`` meanwhile; stop the work when the client leaves."""
    running = asyncio.ensure_future(work())
    try:
        while not running.done():
            waiting = asyncio.ensure_future(progress.get())
            await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                yield sse("progress", waiting.result())
            else:
                waiting.cancel()
        while not progress.empty():
            yield sse("progress", progress.get_nowait())
        error = running.exception()
        yield sse("error", error_envelope(error)) if error is not None else sse("result", running.result())
    finally:  # the client left (or the stream ended): stop the work
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
