from spotdiff.imgdiff.areas import (
    area_decision,
    candidates,
    label_box_decision,
    label_decision,
    pair_window,
    select_areas,
)
from spotdiff.protocol import Box


def test_pair_window_is_open_on_both_ends_after_rounding() -> None:
    assert pair_window(0.95, 0.9, 0.98).keep
    assert pair_window(0.9, 0.9, 0.98).reason == "pair_too_different"
    assert pair_window(0.98, 0.9, 0.98).reason == "pair_too_similar"
    too_similar = pair_window(0.97951, 0.9, 0.98)  # rounds to 0.98, as the reference stores it
    assert not too_similar.keep and too_similar.numbers["pair_cosine"] == 0.98


def test_candidates_are_image_one_boxes_then_image_two_boxes_clipped() -> None:
    found = candidates(
        [Box.from_list([0, 0, 10, 10])], [Box.from_list([5, 5, 500, 20]), Box.from_list([300, 300, 400, 400])], 100, 100
    )
    assert [(c.source_image, c.box.as_list()) for c in found] == [(1, [0, 0, 10, 10]), (2, [5, 5, 100, 20])]


def test_area_needs_a_text_match_on_either_side_and_different_crops() -> None:
    kept = area_decision(0.5, [0.1, 0.4], [], text_min=0.35, crop_max=0.85)
    assert kept.keep and kept.numbers["text_match"] == 0.4
    assert area_decision(0.5, [0.1], [0.36], text_min=0.35, crop_max=0.85).keep  # OR over the two images
    assert area_decision(0.5, [0.35], [0.2], text_min=0.35, crop_max=0.85).reason == "no_text_match"
    assert area_decision(0.85, [0.9], [0.9], text_min=0.35, crop_max=0.85).reason == "crops_alike"
    assert area_decision(0.5, [], [], text_min=0.35, crop_max=0.85).reason == "no_text_match"


def test_select_areas_prefers_the_most_different_and_caps() -> None:
    boxes = [Box.from_list([0, 0, 10, 10]), Box.from_list([1, 1, 10, 10]), Box.from_list([50, 50, 60, 60])]
    # box 1 is more different than box 0 and overlaps it: box 1 wins
    assert select_areas([0.8, 0.2, 0.5], boxes, iou_threshold=0.5, max_boxes=10) == [1, 2]
    assert select_areas([0.8, 0.2, 0.5], boxes, iou_threshold=0.5, max_boxes=1) == [1]


def test_small_boxes_are_not_labelled() -> None:
    assert not label_box_decision(Box.from_list([0, 0, 10, 10]), 1024, 1024, min_area_fraction=1 / 400).keep
    assert label_box_decision(Box.from_list([0, 0, 60, 60]), 1024, 1024, min_area_fraction=1 / 400).keep


def test_labels_must_differ_and_match_their_crops() -> None:
    assert label_decision(0.5, 0.4, 0.4, cosine_max=0.85, match_min=0.35).keep
    assert label_decision(0.9, 0.4, 0.4, cosine_max=0.85, match_min=0.35).reason == "labels_alike"
    assert label_decision(0.5, 0.4, 0.3, cosine_max=0.85, match_min=0.35).reason == "label_does_not_match_crop"
