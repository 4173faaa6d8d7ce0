"""Wire models of the regions service (torch-free: clients import them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from spotdiff.protocol.common import Box


class ProposeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, description="base64 PNG/JPEG")


class Proposal(BaseModel):
    box: Box = Field(description="xyxy pixels")
    area: int = Field(description="mask area in pixels")
    predicted_iou: float
    stability_score: float


class ProposeResponse(BaseModel):
    proposals: list[Proposal]
    width: int
    height: int
    model_id: str
