"""The services by name: how to build each app from the settings, and how to run them in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from importlib import import_module
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI

from services.kit import ServiceSpec, create_service_app
from spotdiff.clients import ServiceClient, ServiceClients
from spotdiff.settings import PIPELINE_SERVICES, Settings

ClientT = TypeVar("ClientT", bound=ServiceClient)


def create_app(name: str, settings: Settings) -> FastAPI:
    """The FastAPI app of service ``name`` with its block of ``settings`` (its routes module declares its spec)."""
    block = settings.service(name)  # refuses an unknown name
    # looked up by name, so its settings type is only known at run time: ``block`` is that service's own
    spec: ServiceSpec[Any, Any] = import_module(f"services.{name}.api_router").SERVICE
    return create_service_app(spec, block)


@asynccontextmanager
async def in_process(settings: Settings, *, ready_timeout: float = 600.0) -> AsyncIterator[ServiceClients]:
    """The pipeline's four services in this process, behind the same clients the network uses (ASGI transport).

    Each app's lifespan runs as a server would run it; the clients are handed out once every service is ready.
    """
    async with AsyncExitStack() as stack:
        apps = {name: create_app(name, settings) for name in PIPELINE_SERVICES}
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))

        clients = ServiceClients.over_transports({name: httpx.ASGITransport(app=app) for name, app in apps.items()})
        stack.push_async_callback(clients.aclose)
        await clients.wait_ready(ready_timeout)
        yield clients


@asynccontextmanager
async def service_in_process(
    name: str, client_type: type[ClientT], settings: Settings, *, ready_timeout: float = 600.0
) -> AsyncIterator[ClientT]:
    """One service in this process, behind its network client, once ready: a run's rewrites (rewriting), or the
    token counts of rewrites made outside a run (generation)."""
    app = create_app(name, settings)
    async with app.router.lifespan_context(app):
        timeout = settings.service(name).request_timeout_s
        client = client_type(transport=httpx.ASGITransport(app=app), timeout=timeout)
        try:
            await client.wait_ready(ready_timeout)
            yield client
        finally:
            await client.aclose()
