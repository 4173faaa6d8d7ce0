"""Pydantic wire models shared by the gateway, workers, services and clients."""

from spotdiff.protocol.common import Box, ModelInfo
from spotdiff.protocol.records import (
    CaptionPair,
    ModelRef,
    Provenance,
    Region,
    Rejection,
    SampleRecord,
    SampleStatus,
    Stage,
)

__all__ = [
    "Box",
    "CaptionPair",
    "ModelInfo",
    "ModelRef",
    "Provenance",
    "Region",
    "Rejection",
    "SampleRecord",
    "SampleStatus",
    "Stage",
]
