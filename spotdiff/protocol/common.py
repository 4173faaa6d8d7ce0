"""Small value types used on every wire: boxes and inline images."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

Coordinate = Annotated[float, Field(ge=0)]


class Box(BaseModel):
    """An axis-aligned box in pixels, xyxy, in image-1 space (both images of a pair share their size)."""

    model_config = ConfigDict(frozen=True)

    x1: Coordinate
    y1: Coordinate
    x2: Coordinate
    y2: Coordinate

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(f"box must have x2 > x1 and y2 > y1, got {self.as_list()}")
        return self

    @classmethod
    def from_list(cls, xyxy: list[float] | tuple[float, ...]) -> Box:
        x1, y1, x2, y2 = xyxy
        return cls(x1=x1, y1=y1, x2=x2, y2=y2)

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return self.width * self.height


class ModelInfo(BaseModel):
    """What `/v1/info` reports: enough to know exactly which model answered."""

    service: str
    model_id: str
    revision: str = Field(description="hub revision, or a checksum of the local files")
    dtype: str
    device: str
    max_batch_size: int
    max_wait_ms: float
    max_queue: int
    extra: dict[str, Any] = Field(default_factory=dict)
