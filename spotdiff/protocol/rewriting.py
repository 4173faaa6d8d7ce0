"""Wire models of the rewriting service (torch-free: clients import them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from spotdiff.protocol.records import Caption

MAX_REWRITE_SEED = 2**31 - 1  # what `spotdiff.imgdiff.rewrite.rewrite_seed` draws from


class RewriteRequest(BaseModel):
    """One caption to rewrite with one object replaced; the seed makes the sampling repeatable."""

    model_config = ConfigDict(extra="forbid")

    caption: Caption
    seed: int = Field(default=0, ge=0, le=MAX_REWRITE_SEED)


class RewriteResponse(BaseModel):
    """The model's answer, and the sentence the post-filters kept from it (none, with the reason, when dropped)."""

    text: str | None = Field(description="the rewritten caption, or none when the post-filters dropped the answer")
    reason: str = Field(description="rewritten, or why the answer was dropped (mentions_replac, empty_answer, ...)")
    answer: str = Field(description="what the model said, decoded without special tokens")
    tokens: int = Field(description="new tokens generated")
    model_id: str
