"""Stop work whose client has gone (vLLM's ``with_cancellation``: race the handler against the disconnect).

``request.is_disconnected()`` does not work behind middleware; listening on ``receive`` does. Cancelling the
handler cancels its queued request in the batcher, and a running batch whose callers have all gone stops at
its next step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from httpkit.errors import ServiceError

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it and answer 499 to nobody."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ServiceError(499, "client_closed_request", "the client disconnected; its work was cancelled")
