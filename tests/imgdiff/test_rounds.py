"""Rounds of a job that asks for N accepted samples: sizes from the observed yield, budgets, variations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from spotdiff.imgdiff.decision import Decision
from spotdiff.imgdiff.rounds import next_round, round_pairs, variation_seed
from spotdiff.protocol import CaptionPair
from spotdiff.protocol.jobs import JobRequest
from spotdiff.protocol.records import MAX_SEED

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
        (  # a budget spent to the second is spent
            {"accepted": 3, "finished": 10, "planned": 10, "spent_seconds": 60.0, "budget_seconds": 60.0},
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


def test_a_round_decision_carries_what_it_was_decided_from() -> None:
    state = {"target": 20, "accepted": 10, "finished": 20, "planned": 20, "budget_pairs": 1000}
    decision = next_round(**state, spent_seconds=12.34567, budget_seconds=None)
    assert decision == Decision(
        True, "more_needed", {**state, "spent_seconds": 12.346, "budget_seconds": None, "yield": 0.5, "size": 24}
    )
    done = next_round(**{**state, "accepted": 20}, spent_seconds=1.0, budget_seconds=30.0)
    assert done == Decision(
        False, "target_reached", {**state, "accepted": 20, "spent_seconds": 1.0, "budget_seconds": 30.0}
    )
    spent = next_round(**state, spent_seconds=30.0, budget_seconds=30.0)
    assert spent == Decision(False, "budget_seconds", {**state, "spent_seconds": 30.0, "budget_seconds": 30.0})
    over = next_round(**{**state, "planned": 1000}, spent_seconds=0.0, budget_seconds=None)
    assert over == Decision(
        False, "budget_pairs", {**state, "planned": 1000, "spent_seconds": 0.0, "budget_seconds": None}
    )
    assert next_round(**state, spent_seconds=0.0, budget_seconds=None).numbers["yield"] == 0.5
    third = next_round(**{**state, "accepted": 1, "finished": 3}, spent_seconds=0.0, budget_seconds=None)
    assert third.numbers["yield"] == 0.3333  # the yield as the round saw it, to 4 decimals


def test_the_last_pair_of_a_budget_is_a_round_of_one() -> None:
    decision = plan(accepted=0, finished=999, planned=999, budget_pairs=1000)
    assert decision and decision.numbers["size"] == 1


def test_variation_seeds_use_the_whole_seed_range() -> None:
    seeds = [variation_seed("job-1", index) for index in range(256)]
    assert all(0 <= seed <= MAX_SEED for seed in seeds)
    assert max(seeds).bit_length() == MAX_SEED.bit_length()  # all 53 bits: 2**-256 that none has the top one
