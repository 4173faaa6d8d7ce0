"""Jobs: a batch of caption pairs submitted to the gateway and worked through by the Celery workers."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spotdiff.protocol.records import CaptionPair


class JobRequest(BaseModel):
    """What a client submits: caption pairs and, optionally, pipeline settings for this job only."""

    model_config = ConfigDict(extra="forbid")

    pairs: list[CaptionPair] = Field(min_length=1)
    settings: dict[str, Any] = Field(
        default_factory=dict, description='pipeline settings to override for this job, e.g. {"semantics": "dj"}'
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> JobRequest:
        seen: set[str] = set()
        for pair in self.pairs:
            if pair.id in seen:
                raise ValueError(f"pair id {pair.id!r} appears twice")
            seen.add(pair.id)
        return self

    def fingerprint(self) -> str:
        """Equal bodies give equal fingerprints: what makes PUT idempotent."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class JobManifest(BaseModel):
    """The durable truth of a job, kept in the artifact store (Redis only caches progress)."""

    id: str
    owner: str = Field(description="sha256 of the API key that created the job")
    request: JobRequest
    fingerprint: str
    created: float


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


class JobStatus(BaseModel):
    id: str
    state: JobState
    total: int
    done: int
    accepted: int
    rejected: int
    funnel: dict[str, int] = Field(description="finished pairs: rejections by stage:reason, and accepted")
    stages: dict[str, int] = Field(
        default_factory=dict, description="unfinished pairs by the step they wait for or run (generate ...)"
    )
    created: float
    updated: float


class JobCreated(BaseModel):
    id: str
    state: JobState
    total: int
