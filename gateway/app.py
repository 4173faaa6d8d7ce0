"""The gateway app: jobs, single-service calls, health, readiness (Redis, the store and every service), metrics,
and one error envelope (a missing dependency is a 503 with Retry-After, never a bare 500). It only sends work:
the workers run it, and their reconciler finishes jobs whatever died on the way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import redis
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, start_http_server
from starlette.concurrency import run_in_threadpool

import spotdiff
from gateway.deps import SettingsDep, StoreDep
from gateway.jobs import build_router as build_jobs_router
from gateway.metrics import PipelineStatsCollector
from gateway.services import ServiceGates
from gateway.services import router as services_router
from gateway.web import router as web_router
from httpkit.auth import require_bearer
from httpkit.docs import install_docs
from httpkit.errors import error_response, install_error_handlers
from httpkit.metrics import ServiceMetrics
from httpkit.middleware import MetricsMiddleware, RequestLimitMiddleware
from spotdiff.jobs.queues import create_celery
from spotdiff.jobs.store import JobStore
from spotdiff.settings import Settings

log = logging.getLogger("spotdiff.gateway")

health = APIRouter()


@health.get("/healthz", summary="the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get(
    "/readyz",
    summary="Redis answers, the artifact store is reachable and every model service is ready",
    responses={503: {"description": "Redis, the store or a service is not ready: `checks` says which"}},
)
async def readyz(settings: SettingsDep, store: StoreDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(store.redis.ping)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}: {exc}"
    try:
        await run_in_threadpool(store.storage.names, "jobs")
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"unreachable: {type(exc).__name__}: {exc}"

    async def probe(name: str, url: str | None, client: httpx.AsyncClient) -> None:
        if url is None:
            checks[name] = "not configured: no URL in worker.service_urls"
            return
        try:
            answer = await client.get(f"{url}/readyz", timeout=2)
            checks[name] = "ok" if answer.status_code == 200 else f"not ready ({answer.status_code})"
        except httpx.HTTPError as exc:
            checks[name] = f"unreachable: {type(exc).__name__}"

    async with httpx.AsyncClient() as client:
        urls = settings.worker.service_urls
        await asyncio.gather(*(probe(name, urls.get(name), client) for name in settings.services_in_use()))
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503)


DEPENDENCY_RETRY_AFTER = "5"


def install_dependency_handlers(app: FastAPI) -> None:
    """Redis or the artifact store out of reach: a 503 that says which, with Retry-After."""

    def unavailable(code: str, what: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            message = f"{what} is unreachable ({type(exc).__name__}); try again"
            return error_response(503, code, message, headers={"Retry-After": DEPENDENCY_RETRY_AFTER})

        return handler

    app.add_exception_handler(redis.exceptions.ConnectionError, unavailable("redis_unavailable", "Redis"))
    app.add_exception_handler(redis.exceptions.TimeoutError, unavailable("redis_unavailable", "Redis"))
    app.add_exception_handler(OSError, unavailable("store_unavailable", "the artifact store"))


def metrics_route(app: FastAPI, registry: CollectorRegistry, settings: Settings) -> None:
    """/metrics on the API's port (behind a bearer token when one is set), or on a port of its own."""
    gateway = settings.gateway
    if gateway.metrics_port is not None:
        return  # served by prometheus_client's own server, started in the lifespan
    token = gateway.metrics_token

    @app.get("/metrics", summary="Prometheus text format", response_class=PlainTextResponse)
    async def prometheus(request: Request) -> Response:
        require_bearer(request, token, "/metrics needs its token")
        # off the event loop: the pipeline's metrics are read from Redis at scrape time
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings | None = None, store: JobStore | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics_server = None
        if settings.gateway.metrics_port is not None:
            metrics_server, _ = start_http_server(settings.gateway.metrics_port, registry=metrics.registry)
        try:
            yield
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
            await app.state.service_gates.aclose()

    app = FastAPI(
        title="spotdiff",
        version=spotdiff.__version__,
        description="Img-Diff difference samples as a service: submit caption pairs, collect samples; or call "
        "one model service (generation, similarity, regions, captioning) directly.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)  # offline: the assets are in the package
    app.state.settings = settings
    app.state.store = store or JobStore.from_url(settings.redis_url, settings.storage_url)
    app.state.celery = create_celery(settings)  # a producer only: tasks go to this settings' Redis
    app.state.service_gates = ServiceGates(settings)
    metrics = ServiceMetrics("gateway")
    metrics.registry.register(PipelineStatsCollector.from_url(settings.redis_url))
    install_error_handlers(app)
    install_dependency_handlers(app)
    app.include_router(health)
    app.include_router(build_jobs_router(settings))
    app.include_router(services_router)
    app.include_router(web_router)
    metrics_route(app, metrics.registry, settings)

    app.add_middleware(RequestLimitMiddleware, max_bytes=settings.gateway.max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
