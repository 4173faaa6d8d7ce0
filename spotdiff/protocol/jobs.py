"""Jobs: a batch of caption pairs submitted to the gateway and worked through by the Celery workers."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic.fields import FieldInfo

from spotdiff.protocol.ids import JobId, SubmittedPairId
from spotdiff.protocol.records import Caption, CaptionPair, SampleRecord
from spotdiff.settings import DEPLOYMENT_ONLY, PipelineSettings

LOCAL_OWNER = "local"  # who owns a job when the gateway has no API keys, and every embedded run
MAX_REWRITES = 20  # pairs made from one caption
MAX_PAIRS_PER_JOB = 100_000  # above any gateway's own limit (GatewaySettings.max_pairs_per_job)
MAX_BUDGET_SECONDS = 30 * 86400.0


def _optional(field: FieldInfo) -> tuple[Any, FieldInfo]:
    """The same field with the same bounds, absent by default: a job overrides only what it names."""
    copied = FieldInfo.merge_field_infos(field, default=None)
    return Optional[field.annotation], copied  # noqa: UP045 (the annotation is a value here)


class _JobSettingsBase(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    def overrides(self) -> dict[str, Any]:
        """The settings this job names, for `PipelineSettings` over the deployment's own."""
        return self.model_dump(exclude_none=True)


if TYPE_CHECKING:
    JobSettings = _JobSettingsBase
else:
    #: Pipeline settings a job may override: each decision of `PipelineSettings`, with its bounds, none required.
    JobSettings = create_model(
        "JobSettings",
        __base__=_JobSettingsBase,
        __doc__="Pipeline settings for this job only; each one absent keeps the deployment's value.",
        **{
            name: _optional(field)
            for name, field in PipelineSettings.model_fields.items()
            if name not in DEPLOYMENT_ONLY
        },
    )


class SubmittedPair(CaptionPair):
    """A caption pair as a job submits it: its id leaves room for the names of its variations."""

    id: SubmittedPairId = Field(description="unique within the job; it names the pair's files in the store")


class JobRequest(BaseModel):
    """What a client submits: caption pairs and, optionally, pipeline settings for this job only."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "pairs": [
                        {"id": "dog-cat", "source": "A dog on the grass", "target": "A cat on the grass", "seed": 7},
                        {"id": "car-bus", "source": "A red car on a street", "target": "A red bus on a street"},
                    ]
                },
                {
                    "pairs": [{"id": "dog-cat", "source": "A dog on the grass", "target": "A cat on the grass"}],
                    "settings": {"semantics": "dj"},
                    "target_accepted": 20,
                    "budget_pairs": 200,
                },
            ]
        },
    )

    pairs: list[SubmittedPair] = Field(
        default_factory=list,
        max_length=MAX_PAIRS_PER_JOB,
        description="caption pairs, each with an id of its own (or captions in their place)",
    )
    captions: list[Caption] | None = Field(
        default=None,
        max_length=MAX_PAIRS_PER_JOB,
        description="single captions in place of pairs: each is rewritten into pairs (one of its objects replaced, "
        "by the deployment's rewriter: a language model or the weight-free lexicon), ids l<n>-r<k> for caption n's "
        "k-th rewrite",
    )
    rewrites_per_caption: int = Field(default=1, ge=1, le=MAX_REWRITES, description="pairs made from each caption")
    variation: Literal["seed", "rewrite"] = Field(
        default="seed",
        description="with target_accepted: how later rounds vary the job's pairs: new seeds of the same pairs, or "
        "(a job of captions) new rewrites of its captions, drawn up to the pair budget at submission",
    )
    settings: JobSettings = Field(
        default_factory=JobSettings,
        description='pipeline settings to override for this job, e.g. {"semantics": "dj"}',
    )
    target_accepted: int | None = Field(
        default=None,
        ge=1,
        le=MAX_PAIRS_PER_JOB,
        description="stop once this many samples are accepted: the job runs in rounds, sized from the yield so "
        "far, adding variations of the given pairs (new seeds) until it has them or a budget runs out",
    )
    budget_pairs: int | None = Field(
        default=None,
        ge=1,
        le=MAX_PAIRS_PER_JOB,
        description="with target_accepted: at most this many pairs in all (default: the gateway's max_pairs_per_job)",
    )
    budget_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_BUDGET_SECONDS,
        description="with target_accepted: no new round once the pairs have spent this many seconds in the "
        "model services (on a GPU deployment, about the GPU time)",
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> JobRequest:
        if not self.pairs and not self.captions:
            raise ValueError("a job has caption pairs, or captions to make them from")
        seen: set[str] = set()
        for pair in self.pairs:
            if pair.id in seen:
                raise ValueError(f"pair id {pair.id!r} appears twice")
            seen.add(pair.id)
        if self.target_accepted is None and (self.budget_pairs is not None or self.budget_seconds is not None):
            raise ValueError("budget_pairs and budget_seconds go with target_accepted")
        if self.variation == "rewrite" and (self.target_accepted is None or not self.captions):
            raise ValueError("variation 'rewrite' goes with captions and target_accepted: it draws new rewrites")
        return self

    def fingerprint(self) -> str:
        """Equal bodies give equal fingerprints: what makes PUT idempotent."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class JobManifest(BaseModel):
    """The durable truth of a job, kept in the artifact store (Redis only caches progress)."""

    id: JobId
    owner: str = Field(description="sha256 of the API key that created the job")
    request: JobRequest
    fingerprint: str
    created: float
    budget_pairs: int | None = Field(
        default=None, description="with a target: the pair budget in force (the request's, or the gateway's limit)"
    )
    rewrite_drops: list[SampleRecord] = Field(
        default_factory=list,
        description="a job of captions: the rejection records of the rewrites that gave no pair (stage rewrite), "
        "counted with the job's records from its start",
    )


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Nothing more will run: done, or cancelled."""
        return self in (JobState.DONE, JobState.CANCELLED)


FINAL_STATES = frozenset(state.value for state in JobState if state.final)  # as stored (Redis holds text)


class JobStatus(BaseModel):
    id: str
    state: JobState
    total: int
    done: int
    accepted: int
    rejected: int = Field(description="finished pairs that are no sample: rejected, failed, or a surplus")
    funnel: dict[str, int] = Field(
        description="finished pairs by outcome: accepted, surplus, and rejections by stage:reason"
    )
    stages: dict[str, int] = Field(
        default_factory=dict, description="unfinished pairs by the step they wait for or run (generate ...)"
    )
    target_accepted: int | None = None
    rounds: int = Field(default=1, description="rounds of pairs planned so far (more than 1 only with a target)")
    stopped: str | None = Field(
        default=None, description="why a job with a target stopped: target_reached, budget_pairs, budget_seconds"
    )
    created: float
    updated: float


class JobList(BaseModel):
    """A page of the caller's jobs, newest first."""

    items: list[JobStatus]
    total: int = Field(description="the caller's jobs that match, on every page")
    next_offset: int | None = Field(description="the offset of the next page; none on the last")


class JobCreated(BaseModel):
    id: str
    state: JobState
    total: int
