"""A service's model at run time: loading in the background, readiness, one batcher per operation, and the one
pipeline every request takes (decode in the thread pool, batch on the model thread, encode in the thread pool).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from httpkit.errors import ERROR_RESPONSES, ServiceError
from httpkit.metrics import ServiceMetrics
from services.kit.batcher import MicroBatcher
from services.kit.cancellation import cancel_on_disconnect
from services.kit.placement import limit_device_memory
from services.kit.runner import ModelInfo
from services.kit.serving import Call, ItemT, RequestT, ResponseT, ResultT, RunnerT, Serving, SettingsT
from services.kit.streaming import progress_then_answer
from spotdiff.settings import ServiceSettings

log = logging.getLogger("spotdiff.service")

# Model libraries load under process-global state (diffusers and transformers build modules on torch's "meta"
# device through a context that other threads see too), so services sharing a process load one at a time.
_LOADING = threading.Lock()


WEIGHT_FIELDS = ("model", "pretrained", "blip_model")  # the settings that may name files of weights


def check_weights(service: str, settings: ServiceSettings) -> None:
    """Refuse to load when a setting names a local path that is not there, saying which setting and what to do
    (the model library's own error would name neither)."""
    for field in WEIGHT_FIELDS:
        value = getattr(settings, field, None)
        if not isinstance(value, str):
            continue
        path = value.removeprefix("local-dir:")
        if path.startswith(("/", "./", "../", "~")) and not Path(path).expanduser().exists():
            raise FileNotFoundError(
                f"SPOTDIFF_{service.upper()}__{field.upper()}={value}: no such file or directory; mount the "
                "weights there (the models volume), point the setting at them, or use SPOTDIFF_PROFILE=tiny"
            )


AnyServing = Serving[SettingsT, RunnerT, Any, Any, Any, Any]  # one of a service's operations, whatever its types


class ServiceSpec(Generic[SettingsT, RunnerT]):
    """What a service contributes to the kit: its name, its serving classes, and a router for the routes that
    call them (every route on it may answer the error envelope, and the OpenAPI schema says so).

    Each app makes one instance of each serving; they share one runner, which the first one's ``setup`` makes.
    """

    def __init__(self, name: str, servings: Sequence[type[AnyServing[SettingsT, RunnerT]]]) -> None:
        self.name = name
        self.servings = tuple(servings)
        self.router = APIRouter(tags=[name], responses=ERROR_RESPONSES)


class State(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class ServiceRuntime(Generic[SettingsT, RunnerT]):
    """A loaded (or loading) model with its batchers and metrics; one per app."""

    def __init__(self, spec: ServiceSpec[SettingsT, RunnerT], settings: SettingsT) -> None:
        self.spec = spec
        self.settings = settings
        self.metrics = ServiceMetrics(spec.name, gpu_memory=True)
        self.state = State.LOADING
        self.error: str | None = None
        self.runner: RunnerT | None = None
        self.started = time.monotonic()
        self.failed = asyncio.Event()  # set when the load failed: `spotdiff serve-service` then exits non-zero
        # One model thread per service: batches run one at a time, as one pipeline per process wants.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{spec.name}-model")
        self._servings: dict[type[AnyServing[SettingsT, RunnerT]], AnyServing[SettingsT, RunnerT]] = {
            kind: kind() for kind in spec.servings
        }
        self.batchers: dict[str, MicroBatcher[Any, Any]] = {
            serving.op: MicroBatcher(
                serving.op,
                functools.partial(self._predict, serving),
                max_batch_size=settings.max_batch_size,
                max_wait_s=settings.max_wait_ms / 1000,
                max_queue=settings.max_queue,
                executor=self._executor,
                metrics=self.metrics,
                key=serving.batch_key,
            )
            for serving in self._servings.values()
        }

    def _predict(
        self, serving: Serving[SettingsT, RunnerT, Any, ItemT, ResultT, Any], items: list[ItemT]
    ) -> Sequence[ResultT | BaseException]:
        assert self.runner is not None  # batchers are refused until the runner is ready
        return serving.predict(self.runner, items)

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    async def start(self) -> None:
        """Start the batchers, then load and warm up the model on the model thread."""
        for batcher in self.batchers.values():
            batcher.start()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._load_and_warm)
        except Exception as exc:
            self.state = State.FAILED
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("%s failed to load", self.spec.name)
            self.failed.set()
            return
        self.state = State.READY
        self.metrics.ready.labels(self.spec.name).set(1)
        log.info("%s ready in %.1fs", self.spec.name, time.monotonic() - self.started)

    def _load_and_warm(self) -> None:
        check_weights(self.spec.name, self.settings)
        limit_device_memory(self.settings.device, self.settings.gpu_memory_fraction)
        with _LOADING:
            runner = self._servings[self.spec.servings[0]].setup(self.settings)
            runner.load()
            self.runner = runner
            runner.warmup()

    async def stop(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def require_ready(self) -> None:
        if self.state is not State.READY:
            raise ServiceError(
                503,
                "not_ready",
                f"{self.spec.name} is {self.state.value}",
                details=self.error,
                headers={"Retry-After": "5"},
            )

    def info(self) -> ModelInfo:
        self.require_ready()
        assert self.runner is not None
        return self.runner.info()

    def serving(
        self, kind: type[Serving[SettingsT, RunnerT, RequestT, ItemT, ResultT, ResponseT]]
    ) -> Serving[SettingsT, RunnerT, RequestT, ItemT, ResultT, ResponseT]:
        """This app's instance of a serving class its spec lists."""
        return cast(Serving[SettingsT, RunnerT, RequestT, ItemT, ResultT, ResponseT], self._servings[kind])

    async def call(
        self, kind: type[Serving[SettingsT, RunnerT, RequestT, ItemT, ResultT, ResponseT]], request: RequestT
    ) -> ResponseT:
        """The answer to one request: 503 until ready, 429 when the operation's queue is full."""
        serving = self.serving(kind)
        call = self._begin()
        item = await run_in_threadpool(serving.decode, request, call)
        return await self._answer(serving, item, call)

    async def respond(
        self,
        kind: type[Serving[SettingsT, RunnerT, RequestT, ItemT, ResultT, ResponseT]],
        request: RequestT,
        http: Request,
        *,
        stream: bool,
    ) -> Response:
        """``call`` for long work: cancelled when the client disconnects, or streamed as server-sent events
        (progress that ``Call.report`` sends, then the result or the error envelope) when ``stream`` is set.

        Refusals (not ready, invalid) come before the stream starts, as plain error answers.
        """
        if not stream:
            answer = await cancel_on_disconnect(http, self.call(kind, request))
            return JSONResponse(answer.model_dump(mode="json"))
        serving = self.serving(kind)
        progress: asyncio.Queue[BaseModel] = asyncio.Queue()
        call = self._begin(progress)
        item = await run_in_threadpool(serving.decode, request, call)
        events = progress_then_answer(lambda: self._answer(serving, item, call), progress)
        return StreamingResponse(events, media_type="text/event-stream")

    def _begin(self, progress: asyncio.Queue[BaseModel] | None = None) -> Call[SettingsT]:
        self.require_ready()
        return Call(self.settings, self.info, progress)

    async def _answer(
        self, serving: Serving[SettingsT, RunnerT, Any, ItemT, ResultT, ResponseT], item: ItemT, call: Call[SettingsT]
    ) -> ResponseT:
        started = time.perf_counter()
        try:
            result: ResultT = await self.batchers[serving.op].submit(item)
        finally:  # answered, failed or abandoned: a batch whose callers have all gone may stop
            call.finish()
        call.predict_s = time.perf_counter() - started
        return await run_in_threadpool(serving.encode, result, item, call)
