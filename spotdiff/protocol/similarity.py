"""Wire models of the similarity service (torch-free: clients import them).

Images are sent once, by name; an operand names an image (optionally a box on it, so crops need not travel)
or carries a text. One request scores any mix of image-image, image-text and text-text pairs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from spotdiff.protocol.common import Box


class Operand(BaseModel):
    """Either ``image`` (a name from the request's ``images``, with an optional crop ``box``) or ``text``."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = None
    box: Box | None = None
    text: str | None = Field(default=None, max_length=1000, description="may be empty: an empty label is scored too")

    @model_validator(mode="after")
    def _one_kind(self) -> Operand:
        if (self.image is None) == (self.text is None):
            raise ValueError("an operand has exactly one of image or text")
        if self.box is not None and self.image is None:
            raise ValueError("box goes with image")
        return self


class ScorePair(BaseModel):
    a: Operand
    b: Operand


class CosineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    images: dict[str, Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=dict, description="name -> base64 PNG/JPEG"
    )
    pairs: list[ScorePair] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_exist(self) -> CosineRequest:
        for index, pair in enumerate(self.pairs):
            for side, operand in (("a", pair.a), ("b", pair.b)):
                if operand.image is not None and operand.image not in self.images:
                    raise ValueError(f"pairs[{index}].{side}: no image named {operand.image!r}")
        return self


class CosineResponse(BaseModel):
    scores: list[float] = Field(description="cosine of each pair, in request order")
    model_id: str
    image_text_scorer: str = Field(description="clip, or blip: BLIP's ITC cosine scores the image-text pairs")
