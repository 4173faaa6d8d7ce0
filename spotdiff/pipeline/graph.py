"""The step graph: the one place that knows the order of a pair's steps.

A distributed run gives each step its own task and queue; the embedded run takes a pair through them in one
process. Every transition (the first step of a round, the step after another, where a pair resumes from what
the store holds) is a function here; nothing else spells the order. The first step also finds the changed
objects: that stage is pure and takes microseconds, not worth a queue of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from spotdiff.protocol import Stage

STEPS: tuple[Stage, ...] = (
    Stage.GENERATE,
    Stage.PAIR_FILTER,
    Stage.PROPOSALS,
    Stage.DIFFERENCE_AREAS,
    Stage.REGION_LABELS,
    Stage.DIFFERENCE_CAPTION,
)

#: Where every pair of a round starts.
FIRST_STEP: Stage = STEPS[0]

#: The services each step calls, one after the other (a step's calls to one service run concurrently): what
#: its deadline is made of (`spotdiff.jobs.deadlines`).
STEP_SERVICES: dict[Stage, tuple[str, ...]] = {
    Stage.GENERATE: ("generation",),
    Stage.PAIR_FILTER: ("similarity",),
    Stage.PROPOSALS: ("regions",),
    Stage.DIFFERENCE_AREAS: ("similarity",),
    Stage.REGION_LABELS: ("captioning", "similarity"),
    Stage.DIFFERENCE_CAPTION: ("captioning",),
}


def next_step(step: Stage) -> Stage | None:
    """The step after ``step``, or None after the last (the pair's record is written there)."""
    index = STEPS.index(step)
    return STEPS[index + 1] if index + 1 < len(STEPS) else None


def previous_step(step: Stage) -> Stage | None:
    """The step whose stored output ``step`` starts from, or None for the first (it starts from the pair)."""
    index = STEPS.index(step)
    return STEPS[index - 1] if index > 0 else None


def last_stored(stored: Callable[[Stage], bool]) -> Stage | None:
    """The latest step whose output ``stored`` says is kept, or None when none is."""
    return next((step for step in reversed(STEPS) if stored(step)), None)


def resume_step(stored: Callable[[Stage], bool]) -> Stage:
    """Where an unfinished pair goes on: after the latest step whose output is kept (that step again if it
    was the last, whose output is the record), or at the first step."""
    last = last_stored(stored)
    if last is None:
        return FIRST_STEP
    return next_step(last) or last
