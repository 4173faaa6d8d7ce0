"""The app factory every service uses: lifecycle, readiness, metrics, limits, auth, errors.

Loading happens in the background after the server starts listening, so `/healthz` answers at once and
`/readyz` says 503 until the weights are loaded *and* a warm-up inference has passed (Triton's rule).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import spotdiff
from httpkit.auth import require_bearer
from httpkit.docs import install_docs
from httpkit.errors import install_error_handlers
from httpkit.middleware import MetricsMiddleware, RequestLimitMiddleware
from services.kit.runner import ModelInfo
from services.kit.runtime import ServiceRuntime, ServiceSpec
from services.kit.serving import RunnerT, SettingsT


def get_runtime(request: Request) -> ServiceRuntime[Any, Any]:
    """The app's runtime; a route's serving carries the types, so the runtime here need not."""
    runtime: ServiceRuntime[Any, Any] = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ServiceRuntime[Any, Any], Depends(get_runtime)]


async def verify_token(request: Request, runtime: RuntimeDep) -> None:
    """The internal bearer token, when one is configured; health and metrics stay open for probes."""
    require_bearer(request, runtime.settings.token, "missing or wrong bearer token")


def _health_router() -> APIRouter:
    router = APIRouter()

    @router.get(
        "/healthz",
        summary="the process is up, and its model did not fail to load",
        responses={503: {"description": "the model failed to load: restart the service"}},
    )
    async def healthz(runtime: RuntimeDep) -> JSONResponse:
        if runtime.state.value == "failed":  # a load that failed never recovers by waiting: an orchestrator restarts
            return JSONResponse({"status": "failed", "error": runtime.error}, status_code=503)
        return JSONResponse({"status": "ok"})

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


def create_service_app(spec: ServiceSpec[SettingsT, RunnerT], settings: SettingsT) -> FastAPI:
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

    app = FastAPI(
        title=f"spotdiff {spec.name}", version=spotdiff.__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    install_docs(app)
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
