"""Similarity serving: cosine scores for any mix of image-image, image-text and text-text pairs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.kit import Call, ServiceError, Serving
from services.kit.codec import decode_image
from services.similarity.jobs import CosineJob
from spotdiff.protocol.similarity import CosineRequest, CosineResponse
from spotdiff.settings import SimilaritySettings

if TYPE_CHECKING:
    from services.similarity.model import SimilarityModel


class SimilarityServing(
    Serving[SimilaritySettings, "SimilarityModel", CosineRequest, CosineJob, list[float], CosineResponse]
):
    """One request's pairs are one item: a batch embeds every distinct crop and text of its items once."""

    op = "cosine"

    def setup(self, settings: SimilaritySettings) -> SimilarityModel:
        from services.similarity.model import SimilarityModel

        return SimilarityModel(settings)

    def decode(self, request: CosineRequest, call: Call[SimilaritySettings]) -> CosineJob:
        """The images decoded under the pixel limit, with every box inside its image."""
        limits = call.settings
        operands = 2 * len(request.pairs)
        if operands > limits.max_items_per_request:
            raise ServiceError(
                422, "too_many_items", f"{operands} operands is over the limit of {limits.max_items_per_request}"
            )
        images = {
            name: decode_image(data, max_pixels=limits.max_image_pixels, field=f"images.{name}")
            for name, data in request.images.items()
        }
        for index, pair in enumerate(request.pairs):
            for side, operand in (("a", pair.a), ("b", pair.b)):
                if operand.box is None or operand.image is None:
                    continue
                width, height = images[operand.image].size
                if operand.box.x1 >= width or operand.box.y1 >= height:
                    raise ServiceError(
                        422,
                        "box_outside_image",
                        f"pairs[{index}].{side}.box {operand.box.as_list()} lies outside the {width}x{height} image",
                    )
        return CosineJob(images, list(request.pairs))

    def predict(self, runner: SimilarityModel, items: list[CosineJob]) -> list[list[float]]:
        return runner.cosine(items)

    def encode(self, result: list[float], item: CosineJob, call: Call[SimilaritySettings]) -> CosineResponse:
        scorer = call.model.extra["image_text_scorer"]
        return CosineResponse(scores=result, model_id=call.settings.model, image_text_scorer=scorer)
