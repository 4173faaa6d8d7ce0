"""The interface a service implements, once per batched operation (LitServe's setup / decode / predict /
encode split; Triton's python backend): the kit runs decode, batching, predict and encode around it, so a
service writes only what is its own.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel

from services.kit.runner import ModelInfo, ModelRunner
from spotdiff.settings import ServiceSettings

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
RunnerT = TypeVar("RunnerT", bound=ModelRunner)
RequestT = TypeVar("RequestT", bound=BaseModel)
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
ResponseT = TypeVar("ResponseT", bound=BaseModel)


class Call(Generic[SettingsT]):
    """One request on its way through the kit: what ``decode`` and ``encode`` may need besides the request,
    and the request's line back from the model thread (progress out, whether anyone still waits)."""

    def __init__(
        self,
        settings: SettingsT,
        describe_model: Callable[[], ModelInfo],
        progress: asyncio.Queue[BaseModel] | None = None,
    ) -> None:
        self.settings = settings
        self.predict_s = 0.0  # from queueing the item to its result, once known
        self._describe_model = describe_model
        self._progress = progress
        self._loop = asyncio.get_running_loop()
        self._finished = threading.Event()

    @property
    def model(self) -> ModelInfo:
        """The loaded model, for the provenance an answer carries."""
        return self._describe_model()

    def report(self, progress: BaseModel) -> None:
        """Send a progress event to a streaming client: safe from the model thread, a no-op when nobody streams."""
        if self._progress is not None:
            self._loop.call_soon_threadsafe(self._progress.put_nowait, progress)

    def cancelled(self) -> bool:
        """Whether nobody waits for the result any more (the client left, or it has its answer): work may stop."""
        return self._finished.is_set()

    def finish(self) -> None:
        self._finished.set()


class Serving(ABC, Generic[SettingsT, RunnerT, RequestT, ItemT, ResultT, ResponseT]):
    """One batched operation of a service, and how the service gets its model.

    ``decode`` and ``encode`` run in the thread pool, one request at a time; ``predict`` runs on the service's
    single model thread with every item of a batch. A service with several operations gives their servings a
    common base that implements ``setup``: they share one runner.
    """

    op: ClassVar[str]  # the operation's batcher, as metrics label it

    @abstractmethod
    def setup(self, settings: SettingsT) -> RunnerT:
        """The runner, not yet loaded; its module (torch) is imported here, so that the app starts without it."""

    @abstractmethod
    def decode(self, request: RequestT, call: Call[SettingsT]) -> ItemT:
        """The request as a model item; a 4xx `ServiceError` for what the schema alone cannot check."""

    @abstractmethod
    def predict(self, runner: RunnerT, items: list[ItemT]) -> Sequence[ResultT | BaseException]:
        """One result per item, in order; an exception in the list fails that item's request only."""

    @abstractmethod
    def encode(self, result: ResultT, item: ItemT, call: Call[SettingsT]) -> ResponseT:
        """The answer to one request."""

    def batch_key(self, item: ItemT) -> Hashable:
        """Items share a batch only when their keys are equal; by default any may."""
        return None
