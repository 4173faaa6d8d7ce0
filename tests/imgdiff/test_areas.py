"""Each decision step of the difference-area stage, in both semantics, on hand-computed cases."""

from collections.abc import Sequence

import numpy as np
import pytest

from spotdiff.imgdiff.areas import (
    AreaScore,
    Candidate,
    Candidates,
    CropPair,
    CropText,
    area_decision,
    area_scores_needed,
    candidates,
    capped,
    crop_box,
    decide_areas,
    nms_survivors,
    pair_window,
    proposals_decision,
    text_match_crops,
    zero_size_decision,
)
from spotdiff.imgdiff.decision import Decision
from spotdiff.protocol import Box


def box(*xyxy: float) -> Box:
    return Box.from_list(list(xyxy))


def select_areas(
    crop_cosines: list[float], boxes: Sequence[Box], *, iou_threshold: float, max_boxes: int, semantics: str = "orig"
) -> list[int]:
    """NMS, then the cap: which boxes a pair keeps."""
    survivors = nms_survivors(crop_cosines, boxes, iou_threshold=iou_threshold, semantics=semantics)  # type: ignore[arg-type]
    return capped(survivors, max_boxes, semantics)  # type: ignore[arg-type]


class TestPairWindow:
    def test_orig_is_open_after_rounding_to_3_decimals(self) -> None:
        assert pair_window(0.95, 0.9, 0.98).keep
        assert pair_window(0.9, 0.9, 0.98).reason == "pair_too_different"
        assert pair_window(0.98, 0.9, 0.98).reason == "pair_too_similar"
        rounded = pair_window(0.97951, 0.9, 0.98)  # 0.980 after rounding
        assert not rounded.keep and rounded.numbers["pair_cosine"] == 0.98
        assert pair_window(0.90049, 0.9, 0.98).reason == "pair_too_different"  # 0.900

    def test_dj_is_closed_and_unrounded(self) -> None:
        assert pair_window(0.9, 0.9, 0.99, "dj").keep
        assert pair_window(0.99, 0.9, 0.99, "dj").keep
        assert pair_window(0.99001, 0.9, 0.99, "dj").reason == "pair_too_similar"
        assert pair_window(0.97951, 0.9, 0.98, "dj").keep  # no rounding: 0.97951 <= 0.98


class TestCandidates:
    def test_image_one_boxes_then_image_two_boxes_clipped_at_the_border(self) -> None:
        found = candidates([box(0, 0, 10, 10)], [box(5, 5, 500, 20), box(90, 95, 130, 140)], 100, 100)
        assert [(c.source_image, c.box.as_list()) for c in found.found] == [
            (1, [0, 0, 10, 10]),
            (2, [5, 5, 100, 20]),
            (2, [90, 95, 100, 100]),
        ]
        assert found.zero_size == 0

    def test_boxes_without_a_whole_pixel_are_counted(self) -> None:
        found = candidates([box(10.2, 10, 10.9, 20)], [box(200, 200, 300, 300)], 100, 100)
        assert found.found == [] and found.zero_size == 2

    def test_no_proposals(self) -> None:
        assert candidates([], [], 64, 64).found == []

    def test_crops_truncate_coordinates(self) -> None:
        assert crop_box(box(1.7, 2.2, 9.9, 3.5)) == box(1, 2, 9, 3)
        assert crop_box(box(4.1, 0, 4.9, 10)) is None

    def test_zero_size_drops_the_pair_in_orig_only(self) -> None:
        assert zero_size_decision(1, "orig").reason == "zero_size_crop"
        assert zero_size_decision(1, "dj").keep
        assert zero_size_decision(0, "orig").keep


class TestTextMatchCrops:
    def test_orig_pairs_the_boxs_own_image_with_the_source_objects(self) -> None:
        assert text_match_crops(Candidate(box(0, 0, 5, 5), 1), "orig") == (1, 2)
        assert text_match_crops(Candidate(box(0, 0, 5, 5), 2), "orig") == (2, 1)  # the reference's pairing

    def test_dj_always_pairs_image_one_with_the_source_objects(self) -> None:
        assert text_match_crops(Candidate(box(0, 0, 5, 5), 2), "dj") == (1, 2)


class TestAreaDecision:
    def test_orig_needs_one_side_strictly_above(self) -> None:
        kept = area_decision(0.5, [0.1, 0.4], [], text_min=0.35, crop_max=0.85)
        assert kept.keep and kept.numbers["text_match"] == 0.4
        assert area_decision(0.5, [0.1], [0.36], text_min=0.35, crop_max=0.85).keep
        assert area_decision(0.5, [0.35], [0.35], text_min=0.35, crop_max=0.85).reason == "no_text_match"  # tie
        assert area_decision(0.5, [], [], text_min=0.35, crop_max=0.85).reason == "no_text_match"

    def test_orig_crops_must_be_strictly_below(self) -> None:
        assert area_decision(0.85, [0.9], [0.9], text_min=0.35, crop_max=0.85).reason == "crops_alike"  # tie
        assert area_decision(0.8499, [0.9], [], text_min=0.35, crop_max=0.85).keep
        assert area_decision(-0.2, [0.9], [], text_min=0.35, crop_max=0.85).keep

    def test_dj_needs_both_sides_at_or_above(self) -> None:
        assert area_decision(0.5, [0.4], [0.4], text_min=0.4, crop_max=0.85, semantics="dj").keep  # ties pass
        assert area_decision(0.5, [0.9], [0.39], text_min=0.4, crop_max=0.85, semantics="dj").reason == "no_text_match"
        assert area_decision(0.5, [0.9], [], text_min=0.4, crop_max=0.85, semantics="dj").reason == "no_text_match"

    def test_dj_crop_window_is_closed_from_zero(self) -> None:
        assert area_decision(0.85, [0.9], [0.9], text_min=0.4, crop_max=0.85, semantics="dj").keep
        assert area_decision(-0.01, [0.9], [0.9], text_min=0.4, crop_max=0.85, semantics="dj").reason == "crops_alike"
        assert area_decision(0.0, [0.9], [0.9], text_min=0.4, crop_max=0.85, semantics="dj").keep  # closed at 0


class TestSelectAreas:
    boxes = (box(0, 0, 10, 10), box(1, 1, 10, 10), box(50, 50, 60, 60))

    def test_orig_prefers_the_most_different_then_caps(self) -> None:
        # box 1 is more different than box 0 and overlaps it (IoU 100/121 > 0.5): box 1 wins
        assert select_areas([0.8, 0.2, 0.5], self.boxes, iou_threshold=0.5, max_boxes=10) == [1, 2]
        assert select_areas([0.8, 0.2, 0.5], self.boxes, iou_threshold=0.5, max_boxes=1) == [1]

    def test_orig_ties_keep_input_order_among_few_boxes(self) -> None:
        assert select_areas([0.5, 0.5, 0.5], self.boxes, iou_threshold=0.5, max_boxes=10) == [0, 2]

    def test_orig_ties_among_many_boxes_come_out_as_numpy_argsort_orders_them(self) -> None:
        # 20 apart boxes, a third at 0.4 and the rest tied at 0.5: the script's np.argsort is no stable sort
        cosines = [0.5 if index % 3 else 0.4 for index in range(20)]
        apart = [box(30 * index, 0, 30 * index + 20, 20) for index in range(20)]
        kept = select_areas(cosines, apart, iou_threshold=0.5, max_boxes=10)
        stable = sorted(range(20), key=lambda index: cosines[index])[:10]
        assert kept == [int(index) for index in np.argsort(np.asarray(cosines))][:10]
        assert kept != stable and set(kept) != set(stable)  # the cap keeps other boxes than a stable sort would

    def test_dj_keeps_input_order_and_no_cap(self) -> None:
        assert select_areas([0.8, 0.2, 0.5], self.boxes, iou_threshold=0.5, max_boxes=1, semantics="dj") == [0, 2]

    def test_iou_exactly_at_the_threshold_is_kept(self) -> None:
        # 10x10 pixels (0..9) and the half 0..4 x 0..9 overlap in 50 of 100 + 50 - 50 = 100: IoU 0.5
        pair = [box(0, 0, 9, 9), box(0, 0, 4, 9)]
        assert select_areas([0.1, 0.2], pair, iou_threshold=0.5, max_boxes=10) == [0, 1]

    def test_nothing_to_select(self) -> None:
        assert select_areas([], [], iou_threshold=0.5, max_boxes=10) == []


@pytest.mark.parametrize("semantics", ["orig", "dj"])
def test_every_decision_names_its_numbers(semantics: str) -> None:
    decision = area_decision(0.9, [0.1], [0.2], text_min=0.35, crop_max=0.85, semantics=semantics)  # type: ignore[arg-type]
    assert set(decision.numbers) >= {"crop_cosine", "text_match", "text_min", "crop_max"}


def test_a_sliver_narrower_than_a_pixel_still_crops_one_column() -> None:
    # x1 = 216.75, x2 = 217.25 truncate to 216..217: the reference crops that column and goes on
    found = candidates([box(216.75, 10, 217.25, 40)], [], 512, 512)
    assert found.zero_size == 0 and crop_box(found.found[0].box) == box(216, 10, 217, 40)
    # a sliver inside one pixel column truncates to nothing: zero-size, as before
    assert candidates([box(216.25, 10, 216.75, 40)], [], 512, 512).zero_size == 1


def scores_by_name(found: list[Candidate], crop: list[float], text: dict[tuple[int, int, str], float]) -> dict:
    scores: dict[AreaScore, float] = {CropPair(index): value for index, value in enumerate(crop)}
    scores.update({CropText(index, image, word): value for (index, image, word), value in text.items()})
    return scores


@pytest.mark.parametrize("semantics", ["orig", "dj"])
def test_area_decisions_read_each_score_by_name_and_say_which_rule_decided(semantics: str) -> None:
    found = [Candidate(box(0, 0, 10, 10), 1), Candidate(box(1, 1, 10, 10), 1), Candidate(box(50, 50, 60, 60), 2)]
    needed = area_scores_needed(found, ["dog"], ["cat"], semantics)  # type: ignore[arg-type]
    text = {}
    for key in needed:
        if isinstance(key, CropText):
            # only the crop a semantics pairs with each object shows it: a swapped pairing fails every box
            shown = (key.image, key.word) in {
                (text_match_crops(found[key.candidate], semantics)[0], "dog"),  # type: ignore[arg-type]
                (text_match_crops(found[key.candidate], semantics)[1], "cat"),
            }  # type: ignore[arg-type]
            text[(key.candidate, key.image, key.word)] = 0.9 if shown else 0.1
    scores = scores_by_name(found, [0.5, 0.3, 0.95], text)
    selection = decide_areas(
        found, ["dog"], ["cat"], scores, text_min=0.35, crop_max=0.85, nms_iou=0.5, max_boxes=10, semantics=semantics
    )  # type: ignore[arg-type]
    reasons = [decided.reason for decided in selection.decisions]
    if semantics == "orig":  # box 1 is more different and wins the overlap
        assert selection.kept == [1] and reasons == ["overlaps_a_kept_box", "difference_area", "crops_alike"]
    else:  # input order: box 0 wins
        assert selection.kept == [0] and reasons == ["difference_area", "overlaps_a_kept_box", "crops_alike"]
    assert set(scores) == set(needed)


def test_the_cap_is_a_reason_of_its_own() -> None:
    found = [Candidate(box(30 * index, 0, 30 * index + 20, 20), 1) for index in range(3)]
    scores = scores_by_name(found, [0.3, 0.1, 0.2], {(index, 1, "dog"): 0.9 for index in range(3)})
    scores.update({CropText(index, 2, "cat"): 0.1 for index in range(3)})
    selection = decide_areas(found, ["dog"], ["cat"], scores, text_min=0.35, crop_max=0.85, nms_iou=0.5, max_boxes=2)
    assert selection.kept == [1, 2] and selection.decisions[0].reason == "over_max_boxes"


@pytest.mark.parametrize(
    ("found", "zero", "semantics", "reason"),
    [
        (0, 0, "orig", "no_proposals"),
        (2, 1, "orig", "zero_size_crop"),
        (2, 1, "dj", "candidates"),
        (0, 1, "dj", "no_proposals"),
        (2, 0, "orig", "candidates"),
    ],
)
def test_whether_there_are_candidates_to_test(found: int, zero: int, semantics: str, reason: str) -> None:
    proposals = Candidates([Candidate(box(0, 0, 10, 10), 1)] * found, zero)
    numbers = {"candidates": found, "zero_size_boxes": zero}
    if reason == "zero_size_crop":
        numbers = {"zero_size_boxes": zero}
    assert proposals_decision(proposals, semantics) == Decision(reason == "candidates", reason, numbers)  # type: ignore[arg-type]


class TestWholeDecisions:
    """Each rule's decision as a record carries it: keep, reason and the numbers a rejection shows."""

    def test_pair_window(self) -> None:
        window = {"min": 0.9, "max": 0.98}
        assert pair_window(0.95, 0.9, 0.98) == Decision(
            True, "pair_in_window", {"pair_cosine": 0.95, **window, "semantics": "orig"}
        )
        assert pair_window(0.9, 0.9, 0.98) == Decision(
            False, "pair_too_different", {"pair_cosine": 0.9, **window, "semantics": "orig"}
        )
        assert pair_window(0.97951, 0.9, 0.98) == Decision(
            False, "pair_too_similar", {"pair_cosine": 0.98, **window, "semantics": "orig"}
        )
        assert pair_window(0.99, 0.9, 0.98, "dj") == Decision(
            False, "pair_too_similar", {"pair_cosine": 0.99, **window, "semantics": "dj"}
        )

    def test_zero_size(self) -> None:
        assert zero_size_decision(1, "orig") == Decision(False, "zero_size_crop", {"zero_size_boxes": 1})
        assert zero_size_decision(2, "dj") == Decision(True, "crops_have_pixels", {"zero_size_boxes": 2})

    def test_area(self) -> None:
        limits = {"text_min": 0.35, "crop_max": 0.85}
        assert area_decision(0.9, [0.4], [0.1], **limits) == Decision(
            False, "crops_alike", {"crop_cosine": 0.9, "text_match": 0.4, **limits}
        )
        assert area_decision(0.5, [0.1], [0.6], **limits) == Decision(
            True, "difference_area", {"crop_cosine": 0.5, "text_match": 0.6, **limits}
        )
        # no object on either side: no score at all (None, which JSON writes), never a made-up one
        assert area_decision(0.5, [], [], **limits) == Decision(
            False, "no_text_match", {"crop_cosine": 0.5, "text_match": None, **limits}
        )


def test_a_crop_one_row_high_truncates_to_nothing_too() -> None:
    assert crop_box(box(0, 4.1, 10, 4.9)) is None
    assert crop_box(box(0, 4.9, 10, 5.1)) == box(0, 4, 10, 5)


def apart_boxes(count: int, source_image: int = 1) -> list[Candidate]:
    return [Candidate(box(30 * index, 0, 30 * index + 20, 20), source_image) for index in range(count)]  # type: ignore[arg-type]


def test_decide_areas_applies_each_semantics_rule_to_each_box() -> None:
    """One candidate whose crop shows the source object and not the target: ORIG's OR keeps it, DJ's AND does not."""
    found = apart_boxes(1)
    scores = scores_by_name(found, [0.5], {(0, 1, "dog"): 0.9, (0, 2, "cat"): 0.1})
    limits = {"text_min": 0.35, "crop_max": 0.85, "nms_iou": 0.5, "max_boxes": 5}
    orig = decide_areas(found, ["dog"], ["cat"], scores, **limits)  # type: ignore[arg-type]
    dj = decide_areas(found, ["dog"], ["cat"], scores, **limits, semantics="dj")  # type: ignore[arg-type]
    assert (orig.kept, orig.decisions[0].reason) == ([0], "difference_area")
    assert (dj.kept, dj.decisions[0].reason) == ([], "no_text_match")


def test_decide_areas_caps_orig_only_and_says_which_rule_dropped_each_box() -> None:
    found = [*apart_boxes(3), Candidate(box(1, 1, 20, 20), 1)]  # the last overlaps box 0 (IoU 400/441)
    text = {(index, 1, "dog"): 0.9 for index in range(4)} | {(index, 2, "cat"): 0.1 for index in range(4)}
    scores = scores_by_name(found, [0.3, 0.1, 0.2, 0.05], text)
    limits = {"text_min": 0.35, "crop_max": 0.85, "nms_iou": 0.5, "max_boxes": 2}
    orig = decide_areas(found, ["dog"], ["cat"], scores, **limits)  # type: ignore[arg-type]
    # most different first: 3 (0.05) then 1 (0.1); 2 is cut by the cap, 0 overlaps the kept 3
    assert orig.kept == [3, 1]
    assert [decided.index for decided in orig.decisions] == [0, 1, 2, 3]
    numbers = {"text_match": 0.9, "text_min": 0.35, "crop_max": 0.85}
    assert orig.decisions[0].decision == Decision(
        False, "overlaps_a_kept_box", {"crop_cosine": 0.3, **numbers, "nms_iou": 0.5}
    )
    assert orig.decisions[2].decision == Decision(
        False, "over_max_boxes", {"crop_cosine": 0.2, **numbers, "max_boxes": 2}
    )
    assert orig.decisions[1].decision == Decision(True, "difference_area", {"crop_cosine": 0.1, **numbers})
    text_dj = {(index, image, word): 0.9 for index in range(4) for image, word in ((1, "dog"), (2, "cat"))}
    scores_dj = scores_by_name(found, [0.3, 0.1, 0.2, 0.05], text_dj)
    dj = decide_areas(found, ["dog"], ["cat"], scores_dj, **limits, semantics="dj")  # type: ignore[arg-type]
    assert dj.kept == [0, 1, 2]  # input order, no cap; 3 overlaps 0
    assert [decided.reason for decided in dj.decisions] == ["difference_area"] * 3 + ["overlaps_a_kept_box"]
