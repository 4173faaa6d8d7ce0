"""The gateway app: jobs, single-service calls, health, readiness (Redis and every service), metrics, one
error envelope, and the reconciler that finishes jobs whose progress Redis lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from gateway.deps import SettingsDep, StoreDep
from gateway.jobs import router as jobs_router
from gateway.metrics import PipelineStatsCollector
from gateway.services import ServiceGates
from gateway.services import router as services_router
from gateway.web import router as web_router
from services.kit.app import MetricsMiddleware, RequestLimitMiddleware
from services.kit.errors import install_error_handlers
from services.kit.metrics import ServiceMetrics
from spotdiff.settings import Settings
from workers.celery_app import create_celery
from workers.jobstore import JobStore
from workers.reconciler import reconcile_lost_jobs

log = logging.getLogger("spotdiff.gateway")

health = APIRouter()


@health.get("/healthz", summary="the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get(
    "/readyz",
    summary="Redis answers and every model service is ready",
    responses={503: {"description": "Redis or a service is not ready"}},
)
async def readyz(settings: SettingsDep, store: StoreDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(store.redis.ping)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"

    async def probe(name: str, url: str, client: httpx.AsyncClient) -> None:
        try:
            answer = await client.get(f"{url}/readyz", timeout=2)
            checks[name] = "ok" if answer.status_code == 200 else f"not ready ({answer.status_code})"
        except httpx.HTTPError as exc:
            checks[name] = f"unreachable: {type(exc).__name__}"

    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(probe(n, u, client) for n, u in settings.worker.service_urls.items()))
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503)


RECONCILE_LOCK = "spotdiff:reconciler"


async def reconcile_forever(app: FastAPI) -> None:
    """Every ``reconcile_interval_s``, restore the jobs Redis lost; one gateway at a time (a Redis lock)."""
    settings: Settings = app.state.settings
    store: JobStore = app.state.store
    interval = settings.gateway.reconcile_interval_s
    while True:
        await asyncio.sleep(interval)
        try:
            if await run_in_threadpool(store.redis.set, RECONCILE_LOCK, "1", nx=True, ex=max(1, int(interval))):
                await run_in_threadpool(reconcile_lost_jobs, store, app.state.celery)
        except Exception:  # Redis away: try again next round; the loop must outlive any one failure
            log.exception("reconciling lost jobs failed")


def create_app(settings: Settings | None = None, store: JobStore | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reconciler = asyncio.create_task(reconcile_forever(app))
        try:
            yield
        finally:
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler
            await app.state.service_gates.aclose()

    app = FastAPI(
        title="spotdiff",
        version="0.1.0",
        description="Img-Diff difference samples as a service: submit caption pairs, collect samples; or call "
        "one model service (generation, similarity, regions, captioning) directly.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store or JobStore.from_url(settings.redis_url, settings.storage_url)
    app.state.celery = create_celery(settings)  # a producer only: tasks go to this settings' Redis
    app.state.service_gates = ServiceGates(settings)
    metrics = ServiceMetrics("gateway")
    metrics.registry.register(PipelineStatsCollector.from_url(settings.redis_url))
    install_error_handlers(app)
    app.include_router(health)
    app.include_router(jobs_router)
    app.include_router(services_router)
    app.include_router(web_router)

    @app.get("/metrics", summary="Prometheus text format", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        # off the event loop: the pipeline's metrics are read from Redis at scrape time
        body = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestLimitMiddleware, max_bytes=settings.gateway.max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
