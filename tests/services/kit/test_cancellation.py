import asyncio

import pytest

from httpkit.errors import ServiceError
from services.kit.cancellation import cancel_on_disconnect


class FakeRequest:
    """Only what cancel_on_disconnect reads: an ASGI receive that reports a disconnect after ``delay``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def receive(self) -> dict[str, str]:
        await asyncio.sleep(self.delay)
        return {"type": "http.disconnect"}


async def test_work_that_finishes_first_is_returned() -> None:
    async def work() -> int:
        return 7

    assert await cancel_on_disconnect(FakeRequest(10), work()) == 7  # type: ignore[arg-type]


async def test_a_disconnect_cancels_the_work() -> None:
    cancelled = asyncio.Event()

    async def work() -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    with pytest.raises(ServiceError) as caught:
        await cancel_on_disconnect(FakeRequest(0.01), work())  # type: ignore[arg-type]
    assert caught.value.status == 499 and cancelled.is_set()
