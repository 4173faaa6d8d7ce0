"""Regions serving: automatic-mask proposals and prompted masks, both from one SAM runner."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from PIL import Image

from services.kit import Call, ServiceError, Serving
from services.kit.codec import decode_image
from services.kit.serving import ItemT, RequestT, ResponseT, ResultT
from services.regions.jobs import PromptedJob, ProposeJob
from spotdiff.protocol.regions import (
    AmgOptions,
    PromptedRegion,
    PromptedRequest,
    PromptedResponse,
    Proposal,
    ProposeRequest,
    ProposeResponse,
)
from spotdiff.settings import RegionsSettings

if TYPE_CHECKING:
    from services.regions.model import RegionsModel


class RegionsServing(Serving[RegionsSettings, "RegionsModel", RequestT, ItemT, ResultT, ResponseT]):
    """What both operations share: the runner, and the image decoded under the service's pixel limit."""

    def setup(self, settings: RegionsSettings) -> RegionsModel:
        from services.regions.model import RegionsModel

        return RegionsModel(settings)

    @staticmethod
    def image(data: str, call: Call[RegionsSettings]) -> Image.Image:
        return decode_image(data, max_pixels=call.settings.max_image_pixels)


class ProposalsServing(RegionsServing[ProposeRequest, ProposeJob, list[Proposal], ProposeResponse]):
    """Images whose mask-generator options are equal share a batch (one generator serves them)."""

    op = "proposals"

    def decode(self, request: ProposeRequest, call: Call[RegionsSettings]) -> ProposeJob:
        return ProposeJob(self.image(request.image, call), request.options or AmgOptions(), request.return_masks)

    def batch_key(self, item: ProposeJob) -> Hashable:
        return item.options

    def predict(self, runner: RegionsModel, items: list[ProposeJob]) -> list[list[Proposal]]:
        return runner.propose(items)

    def encode(self, result: list[Proposal], item: ProposeJob, call: Call[RegionsSettings]) -> ProposeResponse:
        width, height = item.image.size
        return ProposeResponse(proposals=result, width=width, height=height, model_id=call.settings.model)


class PromptedServing(RegionsServing[PromptedRequest, PromptedJob, list[PromptedRegion], PromptedResponse]):
    """Every prompt of a request reuses its image's one embedding."""

    op = "prompted"

    def decode(self, request: PromptedRequest, call: Call[RegionsSettings]) -> PromptedJob:
        """The image, with every prompt's points and box corner inside it."""
        image = self.image(request.image, call)
        for index, prompt in enumerate(request.prompts):
            points = [*(prompt.points or []), *([] if prompt.box is None else [(prompt.box.x1, prompt.box.y1)])]
            if any(x >= image.width or y >= image.height for x, y in points):
                raise ServiceError(
                    422, "prompt_outside_image", f"prompts[{index}] lies outside the {image.width}x{image.height} image"
                )
        return PromptedJob(image, request.prompts, request.multimask, request.return_masks)

    def predict(self, runner: RegionsModel, items: list[PromptedJob]) -> list[list[PromptedRegion]]:
        return runner.prompted(items)

    def encode(self, result: list[PromptedRegion], item: PromptedJob, call: Call[RegionsSettings]) -> PromptedResponse:
        return PromptedResponse(
            regions=result, width=item.image.width, height=item.image.height, model_id=call.settings.model
        )
