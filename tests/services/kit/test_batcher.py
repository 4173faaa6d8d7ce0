import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from httpkit.errors import ServiceError
from httpkit.metrics import ServiceMetrics
from services.kit.batcher import MicroBatcher

from .waiting import until


def make_batcher(predict, **overrides) -> MicroBatcher:
    options = {"max_batch_size": 4, "max_wait_s": 0.05, "max_queue": 16}
    options.update(overrides)
    return MicroBatcher(
        "op", predict, executor=ThreadPoolExecutor(max_workers=1), metrics=ServiceMetrics("test"), **options
    )


async def test_concurrent_requests_share_batches_and_keep_their_results() -> None:
    batches: list[list[int]] = []

    def predict(items: list[int]) -> list[int]:
        batches.append(list(items))
        return [item * 10 for item in items]

    batcher = make_batcher(predict)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(number) for number in range(10)))
    await batcher.stop()
    assert results == [number * 10 for number in range(10)]
    assert max(len(batch) for batch in batches) == 4
    assert len(batches) == 3  # 4 + 4 + 2


async def test_only_items_with_the_same_key_share_a_batch() -> None:
    batches: list[list[str]] = []

    def predict(items: list[str]) -> list[str]:
        batches.append(list(items))
        return [item.upper() for item in items]

    batcher = make_batcher(predict, key=lambda item: item[0])
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(word) for word in ["a1", "b1", "a2", "b2", "a3"]))
    await batcher.stop()
    assert results == ["A1", "B1", "A2", "B2", "A3"]
    assert all(len({item[0] for item in batch}) == 1 for batch in batches)


async def test_a_failing_item_fails_only_its_request() -> None:
    def predict(items: list[int]) -> list[int | BaseException]:
        return [ValueError("odd") if item % 2 else item for item in items]

    batcher = make_batcher(predict)
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(n) for n in range(4)), return_exceptions=True)
    await batcher.stop()
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError) and isinstance(results[3], ValueError)


async def test_full_queue_answers_429_with_retry_after() -> None:
    entered, release = threading.Event(), threading.Event()

    def predict(items: list[int]) -> list[int]:
        entered.set()
        release.wait(5)
        return items

    batcher = make_batcher(predict, max_batch_size=1, max_wait_s=0, max_queue=2)
    batcher.start()
    running = asyncio.ensure_future(batcher.submit(0))
    await until(entered.is_set, what="item 0 in the model")  # the queue is empty again
    queued = [asyncio.ensure_future(batcher.submit(n)) for n in (1, 2)]
    await until(lambda: batcher.depth == 2, what="two items queued")
    with pytest.raises(ServiceError) as caught:
        await batcher.submit(3)
    assert caught.value.status == 429
    assert int(caught.value.headers["Retry-After"]) >= 1
    release.set()
    assert await asyncio.gather(running, *queued) == [0, 1, 2]  # nothing accepted is lost
    await batcher.stop()


async def test_cancelled_requests_are_skipped() -> None:
    seen: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def predict(items: list[int]) -> list[int]:
        entered.set()
        release.wait(5)
        seen.extend(items)
        return items

    batcher = make_batcher(predict, max_batch_size=1, max_wait_s=0)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(0))
    await until(entered.is_set, what="item 0 in the model")
    abandoned = asyncio.ensure_future(batcher.submit(1))
    kept = asyncio.ensure_future(batcher.submit(2))
    await until(lambda: batcher.depth == 2, what="two items queued")
    abandoned.cancel()
    release.set()
    assert await first == 0 and await kept == 2
    await batcher.stop()
    assert seen == [0, 2]
