"""Rewriting routes: ``POST /v1/rewrites`` rewrites a caption with one object replaced."""

from __future__ import annotations

from services.kit import RuntimeDep, ServiceSpec
from services.rewriting.serving import RewritingServing
from spotdiff.protocol.rewriting import RewriteRequest, RewriteResponse

SERVICE = ServiceSpec("rewriting", [RewritingServing])


@SERVICE.router.post(
    "/v1/rewrites", response_model=RewriteResponse, summary="a caption with one object replaced (seeded sampling)"
)
async def rewrite(request: RewriteRequest, runtime: RuntimeDep) -> RewriteResponse:
    return await runtime.call(RewritingServing, request)
