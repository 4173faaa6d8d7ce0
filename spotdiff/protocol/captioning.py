"""Wire models of the captioning service (torch-free: clients import them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CaptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, description="base64 PNG/JPEG")
    prompt: str = Field(min_length=1, max_length=4000)
    max_new_tokens: int = Field(default=64, ge=1)


class CaptionResponse(BaseModel):
    text: str
    tokens: int = Field(description="new tokens generated")
    image_tokens: int = Field(
        default=0, description="prompt positions the image took (LLaVA-NeXT: the base tile, the anyres tiles, newlines)"
    )
    model_id: str
