"""Similarity routes: ``POST /v1/cosine`` scores any mix of image-image, image-text and text-text pairs."""

from __future__ import annotations

from services.kit import RuntimeDep, ServiceSpec
from services.similarity.serving import SimilarityServing
from spotdiff.protocol.similarity import CosineRequest, CosineResponse

SERVICE = ServiceSpec("similarity", [SimilarityServing])


@SERVICE.router.post(
    "/v1/cosine", response_model=CosineResponse, summary="cosine similarity of CLIP embeddings for each pair"
)
async def cosine(request: CosineRequest, runtime: RuntimeDep) -> CosineResponse:
    return await runtime.call(SimilarityServing, request)
