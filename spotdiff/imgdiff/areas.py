"""Difference areas (stages 2-4): the pair window, two-way crop candidates, the per-box test, NMS and cap.

ORIG semantics (`generate_bbox.py`): a box is kept when a crop matches a changed object above the text
threshold (OR over the two images) and the crop pair's cosine is below the difference threshold; survivors go
through NMS from the most different, at most ``max_boxes`` of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from spotdiff.imgdiff.boxes import clipped, nms
from spotdiff.imgdiff.decision import Decision
from spotdiff.protocol.common import Box


def pair_window(cosine: float, low: float, high: float) -> Decision:
    """Keep a pair whose images are alike but not identical: ``low < cos < high`` (open on both ends).

    The cosine is rounded to 3 decimals first, as the reference's ``cos_filter.py`` stores it.
    """
    cosine = round(cosine, 3)
    numbers = {"pair_cosine": cosine, "min": low, "max": high}
    if cosine <= low:
        return Decision(False, "pair_too_different", numbers)
    if cosine >= high:
        return Decision(False, "pair_too_similar", numbers)
    return Decision(True, "pair_in_window", numbers)


@dataclass(frozen=True)
class Candidate:
    """A proposal of one image, to be cropped from both images at the same place."""

    box: Box
    source_image: Literal[1, 2]


def candidates(proposals_1: Sequence[Box], proposals_2: Sequence[Box], width: int, height: int) -> list[Candidate]:
    """Image 1's boxes then image 2's, clipped to the image; boxes with nothing inside are dropped."""
    found: list[Candidate] = []
    for source_image, boxes in ((1, proposals_1), (2, proposals_2)):
        for box in boxes:
            inside = clipped(box, width, height)
            if inside is not None:
                found.append(Candidate(inside, source_image))  # type: ignore[arg-type]
    return found


def area_decision(
    crop_cosine: float,
    text_scores_1: Sequence[float],
    text_scores_2: Sequence[float],
    *,
    text_min: float,
    crop_max: float,
) -> Decision:
    """One candidate: does a crop show a changed object, and do its two crops differ?

    ``text_scores_1`` are image 1's crop against the source objects, ``text_scores_2`` image 2's crop against
    the target objects.
    """
    best = max([*text_scores_1, *text_scores_2], default=float("-inf"))
    numbers = {"crop_cosine": crop_cosine, "text_match": best, "text_min": text_min, "crop_max": crop_max}
    if not any(score > text_min for score in text_scores_1) and not any(score > text_min for score in text_scores_2):
        return Decision(False, "no_text_match", numbers)
    if crop_cosine >= crop_max:
        return Decision(False, "crops_alike", numbers)
    return Decision(True, "difference_area", numbers)


def select_areas(
    crop_cosines: Sequence[float], boxes: Sequence[Box], *, iou_threshold: float, max_boxes: int
) -> list[int]:
    """Indices of the kept boxes: most different first, overlaps removed, at most ``max_boxes``."""
    order = sorted(range(len(boxes)), key=lambda index: crop_cosines[index])
    kept = nms([boxes[index] for index in order], iou_threshold)
    return [order[position] for position in kept][:max_boxes]


def label_box_decision(box: Box, width: int, height: int, *, min_area_fraction: float) -> Decision:
    """Stage 5's size rule (ORIG): skip boxes smaller than ``W*H*min_area_fraction``."""
    minimum = width * height * min_area_fraction
    numbers = {"area": box.area, "min_area": minimum}
    if box.area < minimum:
        return Decision(False, "box_too_small", numbers)
    return Decision(True, "box_large_enough", numbers)


def label_decision(
    label_cosine: float, match_1: float, match_2: float, *, cosine_max: float, match_min: float
) -> Decision:
    """Keep a labelled box when its two labels differ and each label matches its own crop."""
    numbers = {
        "label_cosine": label_cosine,
        "label_match_1": match_1,
        "label_match_2": match_2,
        "cosine_max": cosine_max,
        "match_min": match_min,
    }
    if label_cosine >= cosine_max:
        return Decision(False, "labels_alike", numbers)
    if match_1 <= match_min or match_2 <= match_min:
        return Decision(False, "label_does_not_match_crop", numbers)
    return Decision(True, "labels_differ", numbers)
