"""Similarity routes: ``POST /v1/cosine`` scores any mix of image-image, image-text and text-text pairs."""

from __future__ import annotations

from fastapi import FastAPI

from services.kit import RuntimeDep, ServiceSpec, create_service_app, service_router
from services.similarity.serving import SimilarityServing
from spotdiff.protocol.similarity import CosineRequest, CosineResponse
from spotdiff.settings import Settings, SimilaritySettings

COSINE = SimilarityServing()

router = service_router("similarity")


@router.post("/v1/cosine", response_model=CosineResponse, summary="cosine similarity of CLIP embeddings for each pair")
async def cosine(request: CosineRequest, runtime: RuntimeDep) -> CosineResponse:
    return await runtime.call(COSINE, request)


def create_app(settings: SimilaritySettings | None = None) -> FastAPI:
    return create_service_app(ServiceSpec("similarity", router, [COSINE]), settings or Settings().similarity)
