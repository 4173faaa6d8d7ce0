"""The synthetic ground truth is what it claims, its metrics count right, and the oracle path scores well."""

import numpy as np
import pytest

from bench.synthetic.dataset import TIERS, make_pair
from bench.synthetic.metrics import matches, score
from bench.synthetic.oracle import oracle_path, prior_path
from spotdiff.protocol import Box


def test_pairs_are_seeded() -> None:
    first, second = make_pair("nuisance", 3), make_pair("nuisance", 3)
    assert np.array_equal(np.asarray(first.image_2), np.asarray(second.image_2))
    assert first.source == second.source and first.target != first.source


@pytest.mark.parametrize("index", range(4))
def test_in_the_clean_tier_only_the_swapped_sprite_changes(index: int) -> None:
    pair = make_pair("clean", index)
    union = pair.truth[0][2]
    difference = np.abs(np.asarray(pair.image_1, dtype=int) - np.asarray(pair.image_2, dtype=int)).sum(axis=2)
    rows, cols = np.nonzero(difference)
    assert rows.size > 0
    assert union.x1 <= cols.min() and cols.max() < union.x2 and union.y1 <= rows.min() and rows.max() < union.y2
    assert pair.source_objects != pair.target_objects
    assert pair.source_objects[0] in pair.source and pair.target_objects[0] in pair.target


def test_distractor_pairs_change_no_object_and_claim_one() -> None:
    pair = make_pair("distractor", 0)
    assert pair.truth == [] and pair.source_objects == pair.target_objects


def test_every_tier_builds() -> None:
    for tier in TIERS:
        pair = make_pair(tier, 1)
        assert pair.image_1.size == pair.image_2.size == (512, 512)


def test_matching_is_one_to_one() -> None:
    change = (Box.from_list([0, 0, 10, 10]),)
    # two predictions on one change: one hit; one prediction for two changes: one hit
    assert matches([Box.from_list([0, 0, 10, 10]), Box.from_list([1, 1, 10, 10])], [change], 0.5) == 1
    assert matches([Box.from_list([0, 0, 10, 10])], [change, change], 0.5) == 1
    assert matches([Box.from_list([20, 20, 30, 30])], [change], 0.3) == 0


def test_scores_of_a_hand_made_case() -> None:
    change = (Box.from_list([0, 0, 10, 10]),)
    result = score([([Box.from_list([0, 0, 10, 10]), Box.from_list([50, 50, 60, 60])], [change]), ([], [])])
    assert result.precision[0.5] == 0.5 and result.recall[0.5] == 1.0 and result.f1[0.5] == pytest.approx(2 / 3)
    assert result.mean_best_iou == 1.0 and result.false_alarms_per_pair == 0.0


@pytest.mark.parametrize("tier", ["clean", "nuisance", "nuisance_objects"])
def test_the_decision_logic_finds_the_swap_with_oracle_scores(tier: str) -> None:
    pairs = [make_pair(tier, index) for index in range(10)]
    assert score([(oracle_path(pair), pair.truth) for pair in pairs]).f1[0.5] >= 0.95


def test_unchanged_pairs_raise_few_false_alarms() -> None:
    pairs = [make_pair("distractor", index) for index in range(10)]
    for path in (oracle_path, prior_path):
        assert score([(path(pair), pair.truth) for pair in pairs]).false_alarms_per_pair <= 0.1
