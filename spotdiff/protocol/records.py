"""Caption pairs in, sample records out: the data a run reads and writes."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from spotdiff.protocol.common import Box
from spotdiff.protocol.ids import PairId

MAX_CAPTION_CHARS = 1000
MAX_SEED = 2**53 - 1  # the largest integer every JSON client (JavaScript's included) reads exactly
MAX_OBJECTS = 16
MAX_OBJECT_CHARS = 100
# At least one character that is not ASCII whitespace, spelt out: \S means other things in Python's, Rust's
# and ECMAScript's regular expressions, and the schema must say exactly what validation does.
ASCII_SPACE = " \t\n\r\f\v"
NOT_BLANK = r"[^ \t\n\r\f\v]"


def _strip(text: str) -> str:
    """Surrounding ASCII whitespace goes, after the checks (which the raw text passed: it is never empty)."""
    return text.strip(ASCII_SPACE)


Caption = Annotated[str, Field(min_length=1, max_length=MAX_CAPTION_CHARS, pattern=NOT_BLANK), AfterValidator(_strip)]
ObjectWord = Annotated[str, Field(min_length=1, max_length=MAX_OBJECT_CHARS, pattern=NOT_BLANK), AfterValidator(_strip)]


class Stage(StrEnum):
    """Pipeline stages in order; a rejection names the one that decided it."""

    REWRITE = "rewrite"  # stage (a): a caption's rewrite that gave no pair (before any pair or image exists)
    OBJECTS = "objects"
    GENERATE = "generate"
    PAIR_FILTER = "pair_filter"
    PROPOSALS = "proposals"
    DIFFERENCE_AREAS = "difference_areas"
    REGION_LABELS = "region_labels"
    DIFFERENCE_CAPTION = "difference_caption"


class RewriteOrigin(BaseModel):
    """Where a pair came from when spotdiff made it from a single caption (stage (a))."""

    caption: Caption = Field(description="the single caption; the pair's source")
    rewriter: str = Field(description="what rewrote it: lexicon (weight-free) or a language model's id")
    number: int = Field(ge=0, description="which rewrite of the caption this is")
    seed: int = Field(ge=0, description="the rewrite's seed: the same caption, number and seed, the same rewrite")
    replaced: str | None = Field(default=None, description="the object word the rewrite replaced")
    replacement: str | None = Field(default=None, description="the object word it put in its place")


class CaptionPair(BaseModel):
    """One request for a difference sample: a source caption and a target caption that differ in an object."""

    model_config = ConfigDict(extra="forbid")

    id: PairId = Field(description="unique within its job; it names the pair's files in the store")
    source: Caption
    target: Caption = Field(description="differs from the source (ignoring case)")
    source_objects: list[ObjectWord] | None = Field(
        default=None,
        max_length=MAX_OBJECTS,
        description="changed objects of the source side; derived from the captions when absent",
    )
    target_objects: list[ObjectWord] | None = Field(default=None, max_length=MAX_OBJECTS)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    rewrite: RewriteOrigin | None = Field(default=None, description="set when spotdiff made the pair from a caption")

    @model_validator(mode="after")
    def _captions_differ(self) -> CaptionPair:
        if self.source.casefold() == self.target.casefold():
            raise ValueError("source and target captions are identical: there is no object to replace")
        return self


class ModelRef(BaseModel):
    """Which model produced something: id (path or hub id) and revision or checksum."""

    id: str
    revision: str


class Provenance(BaseModel):
    """Everything needed to reproduce a sample."""

    seed: int | None = Field(
        default=None, description="the generation seed; none when the pair stopped before generation"
    )
    models: dict[str, ModelRef] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    profile: str
    spotdiff_version: str
    rewrite: RewriteOrigin | None = Field(default=None, description="the caption the pair was rewritten from")
    warnings: list[str] = Field(
        default_factory=list, description="what the services said of this pair, e.g. a prompt truncated to 77 tokens"
    )


class Rejection(BaseModel):
    """Why a pair produced no sample: the stage, a stable reason code and the numbers that decided it."""

    stage: Stage
    reason: str
    message: str
    numbers: dict[str, Any] = Field(default_factory=dict)


class Region(BaseModel):
    """One kept difference area with what each stage said about it."""

    box: Box
    box_normalised: str = Field(description="the box divided by W and H, as the reference writes it")
    source_image: Literal[1, 2] = Field(description="which image's proposal the box came from")
    crop_cosine: float
    text_match: float = Field(description="best image-text score of the crops against the changed objects")
    source_text_scores: dict[str, float] = Field(
        default_factory=dict, description="each source object against the crop the semantics pairs it with"
    )
    target_text_scores: dict[str, float] = Field(default_factory=dict)
    label_source: str | None = None
    label_target: str | None = None
    label_cosine: float | None = None
    difference_caption: str | None = None
    boxed_image_source: str | None = Field(default=None, description="storage key of image 1 with the red box")
    boxed_image_target: str | None = None


class SampleStatus(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SURPLUS = "surplus"  # passed every stage after its job already had its target_accepted: kept, not a sample


class SampleRecord(BaseModel):
    """One record per caption pair: an accepted sample with its regions, or a rejection with its reason."""

    pair_id: PairId
    status: SampleStatus
    source: str
    target: str
    source_objects: list[str]
    target_objects: list[str]
    image_source: str | None = Field(default=None, description="storage key of image 1")
    image_target: str | None = None
    width: int | None = None
    height: int | None = None
    pair_cosine: float | None = None
    proposals: int | None = None
    regions: list[Region] = Field(default_factory=list)
    rejection: Rejection | None = None
    provenance: Provenance
    timings: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _status_consistent(self) -> SampleRecord:
        if self.status is not SampleStatus.REJECTED and (self.rejection is not None or not self.regions):
            raise ValueError("an accepted (or surplus) sample has regions and no rejection")
        if self.status is SampleStatus.REJECTED and self.rejection is None:
            raise ValueError("a rejected sample names its rejection")
        return self

    @property
    def outcome(self) -> str:
        """``accepted``, ``surplus`` or ``<stage>:<reason>``: what funnels, reports and metrics count by."""
        if self.rejection is None:
            return self.status.value
        return f"{self.rejection.stage.value}:{self.rejection.reason}"
