"""Rounds of a job that asks for N accepted samples: sizes from the observed yield, budgets, variations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from spotdiff.imgdiff.rounds import next_round, round_pairs, variation_seed
from spotdiff.protocol import CaptionPair
from spotdiff.protocol.jobs import JobRequest

GIVEN = [
    CaptionPair(id="a", source="A dog on the grass", target="A cat on the grass", seed=1),
    CaptionPair(id="b", source="A red car", target="A red bus"),
]


def plan(**overrides: object) -> object:
    values: dict = {
        "target": 20,
        "accepted": 0,
        "finished": 0,
        "planned": 0,
        "budget_pairs": 1000,
        "spent_seconds": 0.0,
        "budget_seconds": None,
    }
    return next_round(**{**values, **overrides})


def test_the_first_round_assumes_every_pair_is_accepted() -> None:
    decision = plan()
    assert decision and decision.numbers["size"] == 20


def test_later_rounds_follow_the_observed_yield_with_headroom() -> None:
    decision = plan(accepted=10, finished=20, planned=20)  # yield 0.5, 10 to go: 20 pairs, +20 %
    assert decision and decision.numbers["size"] == 24 and decision.numbers["yield"] == 0.5


def test_a_job_that_accepts_nothing_is_bounded_by_its_budget() -> None:
    decision = plan(accepted=0, finished=20, planned=20, budget_pairs=100)
    assert decision and decision.numbers["size"] == 80


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"accepted": 20, "finished": 30, "planned": 30}, "target_reached"),
        ({"accepted": 3, "finished": 10, "planned": 10, "budget_pairs": 10}, "budget_pairs"),
        (
            {"accepted": 3, "finished": 10, "planned": 10, "spent_seconds": 61.0, "budget_seconds": 60.0},
            "budget_seconds",
        ),
    ],
)
def test_no_round_past_the_target_or_a_budget(overrides: dict, reason: str) -> None:
    decision = plan(**overrides)
    assert not decision and decision.reason == reason


def test_round_pairs_cycle_the_given_pairs_then_vary_their_seeds() -> None:
    pairs = round_pairs("job-1", GIVEN, 0, 5)
    assert [pair.id for pair in pairs] == ["a", "b", "a--v1", "b--v1", "a--v2"]
    assert pairs[0] == GIVEN[0] and pairs[2].source == GIVEN[0].source and pairs[2].target == GIVEN[0].target
    assert pairs[2].seed == variation_seed("job-1", 2) != variation_seed("job-2", 2)
    assert round_pairs("job-1", GIVEN, 3, 2) == pairs[3:]  # a later round continues the same sequence
    assert len({pair.seed for pair in pairs[2:]}) == 3
    for pair in pairs:  # variations are valid pairs
        assert CaptionPair.model_validate_json(pair.model_dump_json()) == pair


def test_submitted_ids_keep_room_for_variation_ids() -> None:
    """The same rule with or without a target, so that the schema can say it (no rule across fields)."""
    for given in ("x--v1", "x" * 101):
        pairs = [{"id": given, "source": "A dog", "target": "A cat"}]
        for extra in ({"target_accepted": 5}, {}):
            with pytest.raises(ValidationError, match="not allowed in a job"):
                JobRequest.model_validate({"pairs": pairs, **extra})
    with pytest.raises(ValidationError):
        JobRequest.model_validate({"pairs": [{"id": "y", "source": "A dog", "target": "A cat"}], "budget_pairs": 9})
