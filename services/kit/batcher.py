"""A micro-batcher: many concurrent requests, one model call.

Requests queue (bounded: a full queue is a 429 with ``Retry-After``, never a hang); a batch starts when it
is full or when its oldest request has waited ``max_wait``; only requests with the same ``key`` share a batch
(for example the same image size), the rest keep their place for the next one. Model calls run on the
service's single model thread, so one pipeline serves the process.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from httpkit.errors import ServiceError
from httpkit.metrics import ServiceMetrics

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

BatchFn = Callable[[list[ItemT]], Sequence[ResultT | BaseException]]


@dataclass
class _Pending(Generic[ItemT, ResultT]):
    item: ItemT
    key: Hashable
    future: asyncio.Future[ResultT]
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher(Generic[ItemT, ResultT]):
    """Groups concurrent ``submit`` calls into calls of ``predict`` on a list of items.

    ``predict`` returns one result per item, in order; an exception in that list fails that request only.
    """

    def __init__(
        self,
        op: str,
        predict: BatchFn[ItemT, ResultT],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        executor: Executor,
        metrics: ServiceMetrics,
        key: Callable[[ItemT], Hashable] | None = None,
    ) -> None:
        self.op = op
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._predict = predict
        self._executor = executor
        self._metrics = metrics
        self._key = key or (lambda _item: None)
        self._queue: deque[_Pending[ItemT, ResultT]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._batch_seconds = 0.0  # moving average, for Retry-After

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"batcher-{self.op}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(ServiceError(503, "shutting_down", "the service is stopping"))
        self._set_depth()

    def retry_after_seconds(self) -> int:
        batches_ahead = math.ceil(len(self._queue) / self.max_batch_size)
        return max(1, math.ceil(batches_ahead * max(self._batch_seconds, 0.05)))

    async def submit(self, item: ItemT) -> ResultT:
        """Queue one item and wait for its result."""
        if self._wakeup is None:
            raise ServiceError(503, "not_ready", f"{self.op} is not serving yet")
        if len(self._queue) >= self.max_queue:
            self._metrics.rejected.labels(self._metrics.service, self.op).inc()
            retry = self.retry_after_seconds()
            raise ServiceError(
                429,
                "queue_full",
                f"{self.op}: {len(self._queue)} requests queued (limit {self.max_queue}); retry in {retry}s",
                headers={"Retry-After": str(retry)},
            )
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, self._key(item), future))
        self._set_depth()
        self._wakeup.set()
        return await future

    def _set_depth(self) -> None:
        self._metrics.queue_depth.labels(self._metrics.service, self.op).set(len(self._queue))

    def _take_batch(self) -> list[_Pending[ItemT, ResultT]]:
        """The oldest live request and up to ``max_batch_size - 1`` later ones with its key."""
        while self._queue and self._queue[0].future.done():  # cancelled by a client that left
            self._queue.popleft()
        if not self._queue:
            return []
        key = self._queue[0].key
        batch: list[_Pending[ItemT, ResultT]] = []
        kept: deque[_Pending[ItemT, ResultT]] = deque()
        for pending in self._queue:
            if pending.future.done():
                continue
            if len(batch) < self.max_batch_size and pending.key == key:
                batch.append(pending)
            else:
                kept.append(pending)
        self._queue = kept
        return batch

    def _compatible_waiting(self) -> int:
        key = self._queue[0].key
        return sum(1 for pending in self._queue if pending.key == key and not pending.future.done())

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            deadline = self._queue[0].enqueued + self.max_wait_s
            while self._queue and self._compatible_waiting() < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take_batch()
            self._set_depth()
            if not batch:
                continue
            started = time.monotonic()
            for pending in batch:
                self._metrics.queue_wait.labels(self._metrics.service, self.op).observe(started - pending.enqueued)
            self._metrics.batch_size.labels(self._metrics.service, self.op).observe(len(batch))
            items = [pending.item for pending in batch]
            try:
                results = await loop.run_in_executor(self._executor, self._predict, items)
                if len(results) != len(items):
                    raise RuntimeError(f"{self.op} returned {len(results)} results for {len(items)} items")
            except Exception as exc:  # the whole batch failed: every caller hears why
                results = [exc] * len(items)
            elapsed = time.monotonic() - started
            self._metrics.inference.labels(self._metrics.service, self.op).observe(elapsed)
            self._batch_seconds = elapsed if self._batch_seconds == 0 else 0.8 * self._batch_seconds + 0.2 * elapsed
            for pending, result in zip(batch, results, strict=True):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)
