"""Regions routes: automatic-mask proposals (``POST /v1/proposals``) and prompted masks (``POST /v1/prompted``)."""

from __future__ import annotations

from services.kit import RuntimeDep, ServiceSpec
from services.regions.serving import PromptedServing, ProposalsServing
from spotdiff.protocol.regions import PromptedRequest, PromptedResponse, ProposeRequest, ProposeResponse

SERVICE = ServiceSpec("regions", (ProposalsServing, PromptedServing))


@SERVICE.router.post(
    "/v1/proposals", response_model=ProposeResponse, summary="region proposals (automatic masks) as xyxy boxes"
)
async def proposals(request: ProposeRequest, runtime: RuntimeDep) -> ProposeResponse:
    return await runtime.call(ProposalsServing, request)


@SERVICE.router.post(
    "/v1/prompted",
    response_model=PromptedResponse,
    summary="one mask per box or point prompt, from one image embedding",
)
async def prompted(request: PromptedRequest, runtime: RuntimeDep) -> PromptedResponse:
    return await runtime.call(PromptedServing, request)
