"""Stage 5: which boxes are labelled, where labels are checked, which labels stay, in both semantics."""

from spotdiff.imgdiff.labels import label_box_decision, label_crop_box, label_decision, select_label_boxes
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
    assert decisions[1].reason == "box_too_small" and decisions[-1].reason == "enough_regions"
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


def test_an_empty_label_never_passes() -> None:
    assert label_decision("", "a cat", 0.1, 0.9, 0.9, cosine_max=0.85, match_min=0.35).reason == "empty_label"
