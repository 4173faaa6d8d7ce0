"""What is known about one pair between its steps: plain JSON in the store for a distributed run, in memory
for the embedded one. Its images travel as content keys of the store and are decoded again where a step
needs them."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from PIL import Image
from pydantic import BaseModel, Field, PrivateAttr

from spotdiff.imgdiff.areas import Candidate
from spotdiff.protocol import CaptionPair, Region, Stage
from spotdiff.protocol.generation import GenerationParams


@dataclass
class Area:
    """A difference area kept by stage 4, on its way through the labelling stages."""

    candidate: Candidate
    crop_cosine: float
    text_match: float
    source_text_scores: dict[str, float] = field(default_factory=dict)
    target_text_scores: dict[str, float] = field(default_factory=dict)
    label_source: str | None = None
    label_target: str | None = None
    label_cosine: float | None = None


@dataclass
class Pictures:
    """A pair's two images, decoded (for the weight-free stages and rendering) and as base64 PNG (for services)."""

    images: tuple[Image.Image, Image.Image]
    encoded: tuple[str, str]

    @classmethod
    def from_png(cls, source: bytes, target: bytes) -> Pictures:
        decoded = (Image.open(io.BytesIO(source)).convert("RGB"), Image.open(io.BytesIO(target)).convert("RGB"))
        if decoded[0].size != decoded[1].size:
            raise ValueError(f"the pair's images differ in size: {decoded[0].size} and {decoded[1].size}")
        encoded = (base64.b64encode(source).decode(), base64.b64encode(target).decode())
        return cls(decoded, encoded)

    @property
    def size(self) -> tuple[int, int]:
        """Width and height, which both images share."""
        return self.images[0].size  # pragma: no mutate (equivalent: from_png checked that both are this size)


class PairRun(BaseModel):
    """What is known about one pair so far: JSON between the steps of a distributed run, and turned into a
    `SampleRecord` at the end, whatever happened."""

    pair: CaptionPair
    stage: Stage = Stage.OBJECTS
    source_objects: list[str] = Field(default_factory=list)
    target_objects: list[str] = Field(default_factory=list)
    seed: int | None = None
    params: GenerationParams | None = None
    image_keys: tuple[str, str] | None = None
    size: tuple[int, int] | None = None
    pair_cosine: float | None = None
    proposals: int | None = None
    candidates: list[Candidate] = Field(default_factory=list)
    areas: list[Area] = Field(default_factory=list)
    regions: list[Region] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    _pictures: Pictures | None = PrivateAttr(default=None)

    @contextmanager
    def timed(self, stage: Stage) -> Iterator[None]:
        self.stage = stage
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[f"{stage.value}_s"] = round(time.perf_counter() - started, 4)
