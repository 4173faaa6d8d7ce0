"""Wire models of the generation service (torch-free: clients import them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from spotdiff.protocol.records import MAX_CAPTION_CHARS


class PairRequest(BaseModel):
    """A caption pair and, optionally, the generation settings; absent settings take the service's defaults."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    source: str = Field(min_length=1, max_length=MAX_CAPTION_CHARS, examples=["A dog on the grass"])
    target: str = Field(min_length=1, max_length=MAX_CAPTION_CHARS, examples=["A cat on the grass"])
    seed: int | None = Field(default=None, ge=0, lt=2**63, description="random when absent; always returned")
    height: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    width: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    num_inference_steps: int | None = Field(default=None, ge=1)
    guidance_scale: float | None = Field(default=None, ge=0, le=50)


class GenerationParams(BaseModel):
    """The settings a pair was generated with, all resolved (hashable: equal params share a batch)."""

    model_config = ConfigDict(frozen=True)

    height: int
    width: int
    num_inference_steps: int
    guidance_scale: float


class PairResponse(BaseModel):
    source_image: str = Field(description="base64 PNG of the source caption's image")
    target_image: str = Field(description="base64 PNG of the target caption's image")
    seed: int
    params: GenerationParams
    model_id: str
    revision: str
    timings: dict[str, float] = Field(default_factory=dict)
