"""The app factory every service uses: lifecycle, readiness, metrics, limits, auth, errors.

Loading happens in the background after the server starts listening, so `/healthz` answers at once and
`/readyz` says 503 until the weights are loaded *and* a warm-up inference has passed (Triton's rule).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from httpkit.auth import require_bearer
from httpkit.errors import ServiceError, install_error_handlers
from httpkit.metrics import ServiceMetrics
from httpkit.middleware import MetricsMiddleware, RequestLimitMiddleware
from services.kit.batcher import MicroBatcher
from services.kit.runner import ModelInfo, ModelRunner
from spotdiff.settings import ServiceSettings

log = logging.getLogger("spotdiff.service")

# Model libraries load under process-global state (diffusers and transformers build modules on torch's "meta"
# device through a context that other threads see too), so services sharing a process load one at a time.
_LOADING = threading.Lock()


@dataclass(frozen=True)
class BatchedOp:
    """One batched operation of a service: ``predict(runner, items)`` returns one result per item."""

    predict: Callable[[Any, list[Any]], Sequence[Any]]
    key: Callable[[Any], Hashable] | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """What a service contributes to the kit: its name, how to load its runner, its routes and ops."""

    name: str
    load_runner: Callable[[Any], ModelRunner]
    router: APIRouter
    ops: dict[str, BatchedOp] = field(default_factory=dict)


class State(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class ServiceRuntime:
    """A loaded (or loading) model with its batchers and metrics; one per app."""

    def __init__(self, spec: ServiceSpec, settings: ServiceSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.metrics = ServiceMetrics(spec.name, gpu_memory=True)
        self.state = State.LOADING
        self.error: str | None = None
        self.runner: ModelRunner | None = None
        self.started = time.monotonic()
        # One model thread per service: batches run one at a time, as one pipeline per process wants.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{spec.name}-model")
        self.batchers: dict[str, MicroBatcher[Any, Any]] = {
            op: MicroBatcher(
                op,
                self._bind(batched.predict),
                max_batch_size=settings.max_batch_size,
                max_wait_s=settings.max_wait_ms / 1000,
                max_queue=settings.max_queue,
                executor=self._executor,
                metrics=self.metrics,
                key=batched.key,
            )
            for op, batched in spec.ops.items()
        }

    def _bind(self, predict: Callable[[Any, list[Any]], Sequence[Any]]) -> Callable[[list[Any]], Sequence[Any]]:
        def call(items: list[Any]) -> Sequence[Any]:
            assert self.runner is not None
            return predict(self.runner, items)

        return call

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
            return
        self.state = State.READY
        self.metrics.ready.labels(self.spec.name).set(1)
        log.info("%s ready in %.1fs", self.spec.name, time.monotonic() - self.started)

    def _load_and_warm(self) -> None:
        with _LOADING:
            runner = self.spec.load_runner(self.settings)
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

    async def submit(self, op: str, item: Any) -> Any:
        """Queue one item on an operation's batcher (503 until ready, 429 when full)."""
        self.require_ready()
        return await self.batchers[op].submit(item)

    def info(self) -> ModelInfo:
        self.require_ready()
        assert self.runner is not None
        return self.runner.info()


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]


async def verify_token(request: Request, runtime: RuntimeDep) -> None:
    """The internal bearer token, when one is configured; health and metrics stay open for probes."""
    require_bearer(request, runtime.settings.token, "missing or wrong bearer token")


def _health_router() -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", summary="the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz", summary="weights loaded and warm-up passed", responses={503: {"description": "still loading"}}
    )
    async def readyz(runtime: RuntimeDep) -> JSONResponse:
        body = {"status": runtime.state.value, "service": runtime.spec.name}
        if runtime.error:
            body["error"] = runtime.error
        headers = None if runtime.ready else {"Retry-After": "5"}
        return JSONResponse(body, status_code=200 if runtime.ready else 503, headers=headers)

    @router.get("/metrics", summary="Prometheus text format", response_class=PlainTextResponse)
    async def metrics(runtime: RuntimeDep) -> Response:
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def create_service_app(
    spec: ServiceSpec,
    settings: ServiceSettings,
) -> FastAPI:
    """Build a service's FastAPI app: its routes behind auth, plus health, readiness, info and metrics."""
    runtime = ServiceRuntime(spec, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(runtime.start(), name=f"{spec.name}-load")
        try:
            yield
        finally:
            if not loading.done():
                loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await runtime.stop()

    app = FastAPI(title=f"spotdiff {spec.name}", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(_health_router())

    info_router = APIRouter(dependencies=[Depends(verify_token)])

    @info_router.get("/v1/info", response_model=ModelInfo, summary="which model answers, and its limits")
    async def info(runtime: RuntimeDep) -> ModelInfo:
        return runtime.info()

    app.include_router(info_router)
    app.include_router(spec.router, dependencies=[Depends(verify_token)])
    app.add_middleware(RequestLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
    return app
