"""Wire models of the generation service (torch-free: clients import them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from spotdiff.protocol.records import MAX_CAPTION_CHARS, MAX_SEED

Edit = Literal["refine", "replace", "none"]
Word = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class PairRequest(BaseModel):
    """A caption pair and, optionally, the generation settings; absent settings take the service's defaults."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    source: str = Field(min_length=1, max_length=MAX_CAPTION_CHARS, examples=["A dog on the grass"])
    target: str = Field(min_length=1, max_length=MAX_CAPTION_CHARS, examples=["A cat on the grass"])
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="random when absent; always returned")
    height: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    width: int | None = Field(default=None, ge=64, le=4096, multiple_of=8)
    num_inference_steps: int | None = Field(default=None, ge=1)
    guidance_scale: float | None = Field(default=None, ge=0, le=50)
    edit: Edit | None = Field(
        default=None,
        description="Prompt-to-Prompt edit: refine (aligned tokens, the reference), replace (word swap, equal "
        "token counts) or none (both images from the shared latent, no attention edit)",
    )
    cross_replace: float | None = Field(default=None, ge=0, le=1, description="fraction of steps with cross edits")
    cross_replace_words: dict[Word, Fraction] | None = Field(
        default=None,
        max_length=77,
        description='per-word fractions for words of the target prompt, e.g. {"confetti": 0.8}',
    )
    self_replace: float | None = Field(default=None, ge=0, le=1, description="fraction of steps with self edits")
    stream: bool = Field(default=False, description="answer with server-sent events: progress, then the result")


class GenerationParams(BaseModel):
    """The settings a pair was generated with, all resolved (hashable: equal params share a batch)."""

    model_config = ConfigDict(frozen=True)

    height: int
    width: int
    num_inference_steps: int
    guidance_scale: float
    edit: Edit
    cross_replace: float
    cross_replace_words: dict[str, float]
    self_replace: float

    def batch_key(self) -> tuple[int, int, int, float]:
        """Pairs share a UNet batch when these agree; the edit is per pair."""
        return (self.height, self.width, self.num_inference_steps, self.guidance_scale)


class PairResponse(BaseModel):
    source_image: str = Field(description="base64 PNG of the source caption's image")
    target_image: str = Field(description="base64 PNG of the target caption's image")
    seed: int
    params: GenerationParams
    model_id: str
    revision: str
    timings: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list, description="for example a prompt truncated to 77 tokens")


MAX_TOKENIZE_TEXTS = 256
Prompt = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CAPTION_CHARS)]


class TokenizeRequest(BaseModel):
    """Prompts to count with the text encoders' own tokenizers, before any image is made."""

    model_config = ConfigDict(extra="forbid")

    texts: list[Prompt] = Field(
        min_length=1, max_length=MAX_TOKENIZE_TEXTS, examples=[["A dog on the grass", "A cat on the grass"]]
    )


class TokenizeResponse(BaseModel):
    counts: list[int] = Field(
        description="each text's tokens, start and end included, before truncation (the larger count of the "
        "pipeline's tokenizers), in the order sent"
    )
    max_tokens: int = Field(description="what the text encoders read: a longer prompt is truncated to this")
    model_id: str
    revision: str


class PairProgress(BaseModel):
    """A streamed progress event: denoising step ``step`` of ``total`` done."""

    step: int
    total: int
