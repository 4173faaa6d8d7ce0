"""Stage 5: which boxes are labelled, where labels are checked, which labels stay, in both semantics."""

from spotdiff.imgdiff.decision import Decision
from spotdiff.imgdiff.labels import (
    LabelMatch,
    LabelPair,
    decide_labels,
    label_box_decision,
    label_crop_box,
    label_decision,
    label_scores_needed,
    select_label_boxes,
)
from spotdiff.protocol import Box

LIMITS = {"min_area_fraction": 1 / 400, "max_area_fraction": 1 / 10}


def box(*xyxy: float) -> Box:
    return Box.from_list(list(xyxy))


def test_orig_skips_small_boxes_and_dj_large_ones() -> None:
    # 1024² image: 1/400 is 2621.44 px², 1/10 is 104857.6 px²
    small, fits, large = box(0, 0, 51, 51), box(0, 0, 52, 52), box(0, 0, 400, 400)
    assert label_box_decision(small, 1024, 1024, **LIMITS).reason == "box_too_small"  # 2601 < 2621.44
    assert label_box_decision(fits, 1024, 1024, **LIMITS).keep  # 2704
    assert label_box_decision(large, 1024, 1024, **LIMITS).keep
    assert label_box_decision(small, 1024, 1024, **LIMITS, semantics="dj").keep
    assert label_box_decision(large, 1024, 1024, **LIMITS, semantics="dj").reason == "box_too_large"


def test_orig_stops_after_max_regions_in_order_dj_does_not() -> None:
    boxes = [box(0, 0, 60, 60), box(0, 0, 10, 10), *(box(i, 0, i + 60, 60) for i in range(100, 700, 100))]
    chosen, decisions = select_label_boxes(boxes, 1024, 1024, **LIMITS, max_regions=5)
    assert chosen == [0, 2, 3, 4, 5]
    assert decisions[1].reason == "box_too_small"
    assert decisions[6:] == [Decision(False, "enough_regions", {"max_regions": 5})] * 2  # one for every box past it
    chosen_dj, _ = select_label_boxes(boxes, 1024, 1024, **LIMITS, max_regions=5, semantics="dj")
    assert chosen_dj == list(range(len(boxes)))


def test_labels_are_checked_on_the_grown_box_in_orig_and_the_box_in_dj() -> None:
    assert label_crop_box(box(2, 10, 50, 60), 100, 62).as_list() == [0, 5, 55, 62]
    assert label_crop_box(box(2, 10, 50, 60), 100, 62, "dj").as_list() == [2, 10, 50, 60]


def test_orig_label_filters_are_strict() -> None:
    kept = label_decision("a dog", "a cat", 0.5, 0.4, 0.4, cosine_max=0.85, match_min=0.35)
    assert kept.keep and kept.reason == "labels_differ"
    assert label_decision("a dog", "a dog", 0.85, 0.4, 0.4, cosine_max=0.85, match_min=0.35).reason == "labels_alike"
    assert label_decision("a dog", "a cat", 0.5, 0.35, 0.4, cosine_max=0.85, match_min=0.35).reason == (
        "label_does_not_match_crop"
    )


def test_dj_label_filters_are_closed_and_actually_filter() -> None:
    assert label_decision("a", "b", 0.8, 0.4, 0.4, cosine_max=0.8, match_min=0.4, semantics="dj").keep
    assert label_decision("a", "b", 0.81, 0.4, 0.4, cosine_max=0.8, match_min=0.4, semantics="dj").reason == (
        "labels_alike"
    )
    assert label_decision("a", "b", 0.5, 0.39, 0.9, cosine_max=0.8, match_min=0.4, semantics="dj").reason == (
        "label_does_not_match_crop"
    )


def test_an_empty_label_is_scored_in_orig_and_passes_in_dj() -> None:
    # ORIG has no rule for it: its scores decide, as for any label
    assert label_decision("", "a cat", 0.1, 0.9, 0.9, cosine_max=0.85, match_min=0.35).reason == "labels_differ"
    assert label_decision("", "a cat", 0.1, 0.2, 0.9, cosine_max=0.85, match_min=0.35).reason == (
        "label_does_not_match_crop"
    )
    # DJ's text-pair filter gives an empty text empty stats, which pass; whatever the scores say
    dj = label_decision("", "a cat", 0.99, 0.0, 0.0, cosine_max=0.8, match_min=0.4, semantics="dj")
    assert dj.keep and dj.reason == "empty_label_passes"


def scores_for(*boxes: tuple[float, float, float]) -> dict:
    """Scores by name: (label cosine, match in image 1, match in image 2) per labelled box."""
    return {
        key: value
        for box, (cosine, match_1, match_2) in enumerate(boxes)
        for key, value in ((LabelPair(box), cosine), (LabelMatch(box, 1), match_1), (LabelMatch(box, 2), match_2))
    }


def test_dj_keeps_a_box_whose_labels_are_among_the_passing_ones_orig_decides_each_alone() -> None:
    labels = [("a dog", "a cat"), ("a dog", "a cat"), ("a cup", "a mug")]
    scores = scores_for((0.5, 0.9, 0.9), (0.95, 0.9, 0.9), (0.95, 0.9, 0.9))  # box 1 and 2: labels too alike
    orig = decide_labels(labels, scores, cosine_max=0.85, match_min=0.35)
    assert [d.reason for d in orig] == ["labels_differ", "labels_alike", "labels_alike"]
    dj = decide_labels(labels, scores, cosine_max=0.85, match_min=0.35, semantics="dj")
    assert [d.reason for d in dj] == ["labels_differ", "labels_among_passing", "labels_alike"]
    assert dj[1].keep and dj[1].decision.numbers["failed_alone"] == "labels_alike"
    # membership is per side: the first label must be among the first labels, the second among the second
    crossed = [("a dog", "a cat"), ("a dog", "a mug")]
    mixed = decide_labels(
        crossed, scores_for((0.5, 0.9, 0.9), (0.95, 0.9, 0.9)), cosine_max=0.85, match_min=0.35, semantics="dj"
    )
    assert [d.keep for d in mixed] == [True, False]


def test_label_decisions_read_each_score_by_name() -> None:
    labels = [("a dog", "a cat"), ("a cup", "a mug")]
    scores = scores_for((0.5, 0.9, 0.1), (0.5, 0.1, 0.9))  # box 0 fails in image 2, box 1 in image 1
    decided = decide_labels(labels, scores, cosine_max=0.85, match_min=0.35)
    assert [(d.index, d.reason) for d in decided] == [
        (0, "label_does_not_match_crop"),
        (1, "label_does_not_match_crop"),
    ]
    assert decided[0].decision.numbers["label_match_2"] == 0.1 and decided[1].decision.numbers["label_match_1"] == 0.1
    assert label_scores_needed(2) == list(scores)


def test_the_area_rules_keep_a_box_of_exactly_the_limit() -> None:
    # 400 x 400: ORIG's smallest box is 400 / 400 = 400 px (kept at 400), DJ's largest 16000 px (kept at 16000)
    limits = {"min_area_fraction": 1 / 400, "max_area_fraction": 1 / 10}
    assert label_box_decision(Box(x1=0, y1=0, x2=20, y2=20), 400, 400, **limits).keep
    assert not label_box_decision(Box(x1=0, y1=0, x2=20, y2=19.9), 400, 400, **limits).keep
    assert label_box_decision(Box(x1=0, y1=0, x2=160, y2=100), 400, 400, **limits, semantics="dj").keep
    assert not label_box_decision(Box(x1=0, y1=0, x2=160, y2=100.1), 400, 400, **limits, semantics="dj").keep


def test_label_box_decisions_carry_the_areas_they_compared() -> None:
    numbers = {"min_area": 1024 * 1024 / 400, "max_area": 1024 * 1024 / 10}
    assert label_box_decision(box(0, 0, 51, 51), 1024, 1024, **LIMITS) == Decision(
        False, "box_too_small", {"area": 2601, **numbers}
    )
    assert label_box_decision(box(0, 0, 400, 400), 1024, 1024, **LIMITS, semantics="dj") == Decision(
        False, "box_too_large", {"area": 160000, **numbers}
    )
    assert label_box_decision(box(0, 0, 52, 52), 1024, 1024, **LIMITS) == Decision(
        True, "box_labelled", {"area": 2704, **numbers}
    )


def test_label_decisions_carry_their_scores_and_limits() -> None:
    limits = {"cosine_max": 0.85, "match_min": 0.35}
    scores = {"label_cosine": 0.5, "label_match_1": 0.4, "label_match_2": 0.6}
    assert label_decision("a dog", "a cat", 0.5, 0.4, 0.6, **limits) == Decision(True, "labels_differ", scores | limits)
    alike = {**scores, "label_cosine": 0.9}
    assert label_decision("a dog", "a dog", 0.9, 0.4, 0.6, **limits) == Decision(False, "labels_alike", alike | limits)
    assert label_decision("", "a cat", 0.5, 0.4, 0.6, **limits, semantics="dj") == Decision(
        True, "empty_label_passes", scores | limits
    )


def test_the_label_rules_at_their_bounds() -> None:
    limits = {"cosine_max": 0.85, "match_min": 0.35}
    # ORIG: each label must match its crop strictly above the minimum, on either image
    assert label_decision("a", "b", 0.5, 0.4, 0.35, **limits).reason == "label_does_not_match_crop"
    assert label_decision("a", "b", 0.5, 0.35, 0.4, **limits).reason == "label_does_not_match_crop"
    # DJ: the label cosine's window is closed at 0 and at the maximum
    assert label_decision("a", "b", 0.0, 0.4, 0.4, **limits, semantics="dj").reason == "labels_differ"
    assert label_decision("a", "b", -0.01, 0.4, 0.4, **limits, semantics="dj").reason == "labels_alike"
    assert label_decision("a", "b", 0.85, 0.35, 0.35, **limits, semantics="dj").reason == "labels_differ"


def test_decide_labels_applies_each_semantics_rule_to_each_box() -> None:
    """Two labels at exactly the cosine maximum: ORIG finds them alike, DJ's closed window keeps them."""
    labels, scores = [("a dog", "a cat")], scores_for((0.85, 0.9, 0.9))
    assert decide_labels(labels, scores, cosine_max=0.85, match_min=0.35)[0].reason == "labels_alike"
    assert decide_labels(labels, scores, cosine_max=0.85, match_min=0.35, semantics="dj")[0].reason == "labels_differ"
