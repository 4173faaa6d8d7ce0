"""Regions routes: automatic-mask proposals (``POST /v1/proposals``) and prompted masks (``POST /v1/prompted``)."""

from __future__ import annotations

from fastapi import FastAPI

from services.kit import RuntimeDep, ServiceSpec, create_service_app, service_router
from services.regions.serving import PromptedServing, ProposalsServing
from spotdiff.protocol.regions import PromptedRequest, PromptedResponse, ProposeRequest, ProposeResponse
from spotdiff.settings import RegionsSettings, Settings

PROPOSALS, PROMPTED = ProposalsServing(), PromptedServing()

router = service_router("regions")


@router.post(
    "/v1/proposals", response_model=ProposeResponse, summary="region proposals (automatic masks) as xyxy boxes"
)
async def proposals(request: ProposeRequest, runtime: RuntimeDep) -> ProposeResponse:
    return await runtime.call(PROPOSALS, request)


@router.post(
    "/v1/prompted",
    response_model=PromptedResponse,
    summary="one mask per box or point prompt, from one image embedding",
)
async def prompted(request: PromptedRequest, runtime: RuntimeDep) -> PromptedResponse:
    return await runtime.call(PROMPTED, request)


def create_app(settings: RegionsSettings | None = None) -> FastAPI:
    return create_service_app(ServiceSpec("regions", router, (PROPOSALS, PROMPTED)), settings or Settings().regions)
