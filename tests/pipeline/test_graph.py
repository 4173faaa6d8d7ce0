"""The step graph: the one order of a pair's steps, and where a pair resumes from what the store holds."""

from __future__ import annotations

import pytest

from spotdiff.pipeline.graph import FIRST_STEP, STEPS, last_stored, next_step, previous_step, resume_step
from spotdiff.protocol import Stage

ORDER = [
    Stage.GENERATE,
    Stage.PAIR_FILTER,
    Stage.PROPOSALS,
    Stage.DIFFERENCE_AREAS,
    Stage.REGION_LABELS,
    Stage.DIFFERENCE_CAPTION,
]


def test_the_steps_follow_the_references_stages_in_order() -> None:
    assert list(STEPS) == ORDER and FIRST_STEP is Stage.GENERATE
    assert [next_step(step) for step in ORDER] == [*ORDER[1:], None]
    assert [previous_step(step) for step in ORDER] == [None, *ORDER[:-1]]


def test_objects_is_no_step_of_its_own() -> None:
    """The object stage runs inside the first step: asking the graph about it is a mistake, said at once."""
    with pytest.raises(ValueError):
        next_step(Stage.OBJECTS)
    with pytest.raises(ValueError):
        previous_step(Stage.OBJECTS)


@pytest.mark.parametrize(
    ("stored", "latest", "resume"),
    [
        (set(), None, Stage.GENERATE),  # nothing kept: from the start
        ({Stage.GENERATE}, Stage.GENERATE, Stage.PAIR_FILTER),
        ({Stage.GENERATE, Stage.PAIR_FILTER, Stage.PROPOSALS}, Stage.PROPOSALS, Stage.DIFFERENCE_AREAS),
        ({Stage.GENERATE, Stage.REGION_LABELS}, Stage.REGION_LABELS, Stage.DIFFERENCE_CAPTION),  # the latest wins
        (
            set(ORDER),
            Stage.DIFFERENCE_CAPTION,
            Stage.DIFFERENCE_CAPTION,
        ),  # the last step again: its output is the record
    ],
)
def test_a_pair_resumes_after_the_latest_step_it_kept(stored: set[Stage], latest: Stage | None, resume: Stage) -> None:
    asked: list[Stage] = []

    def kept(step: Stage) -> bool:
        asked.append(step)
        return step in stored

    assert last_stored(kept) is latest
    assert asked[0] is Stage.DIFFERENCE_CAPTION  # from the last step back: the first kept one is the latest
    assert resume_step(lambda step: step in stored) is resume
