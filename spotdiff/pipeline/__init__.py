"""A caption pair's way through the stages: the step graph (`graph`), the pair's state between steps
(`state`), the stages themselves over the service clients (`stages`) and the record it ends with (`record`)."""

from spotdiff.pipeline.graph import FIRST_STEP, STEP_SERVICES, STEPS, next_step, previous_step, resume_step
from spotdiff.pipeline.record import pair_record, service_models
from spotdiff.pipeline.stages import PairFailed, PairPipeline, Rejected
from spotdiff.pipeline.state import Area, PairRun, Pictures

__all__ = [
    "FIRST_STEP",
    "STEPS",
    "STEP_SERVICES",
    "Area",
    "PairFailed",
    "PairPipeline",
    "PairRun",
    "Pictures",
    "Rejected",
    "next_step",
    "pair_record",
    "previous_step",
    "resume_step",
    "service_models",
]
