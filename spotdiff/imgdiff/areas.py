"""Difference areas (stages 2-4): the pair window, two-way crop candidates, the per-box test, NMS and cap.

Two reference variants disagree; ``semantics`` picks one (``orig``, `generate_bbox.py`, is the default;
``dj`` is Data-Juicer's operators) and every difference is named here (docs/semantics.md lists them all):

- pair window: ORIG rounds the cosine to 3 decimals and keeps ``min < cos < max``; DJ keeps
  ``min <= cos <= max``.
- text match, which crops: ORIG scores the box's own image's crop against the source objects and the other
  image's crop against the target objects, so for an image-2 box image 2 meets the source objects, as the
  reference does; DJ scores image 1's crop against the source objects and image 2's against the target's.
- text match, rule: ORIG keeps a box with any score ``> min`` on either side (OR); DJ needs some score
  ``>= min`` on both sides (AND), so an empty object list passes nothing.
- crop pair differs: ORIG ``cos < max``; DJ ``0 <= cos <= max``.
- a crop of zero pixels (after truncating to whole pixels: a sliver narrower than a pixel may still take one
  column): ORIG drops the whole pair (the reference's CLIP processor fails on it); DJ raises
  (``cv2.imwrite`` of an empty image), where spotdiff drops the box instead: a deliberate deviation.
- NMS order: ORIG most different (lowest crop cosine) first, ties as numpy's default argsort leaves them;
  DJ input order.
- cap: ORIG keeps at most ``max_boxes``; DJ has none.

Both use IoU on +1-pixel areas and keep a box whose IoU with every kept box is ``<= nms_iou``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from spotdiff.imgdiff.boxes import clipped, nms
from spotdiff.imgdiff.decision import Decision
from spotdiff.protocol.common import Box

Semantics = Literal["orig", "dj"]
ImageSide = Literal[1, 2]


def pair_window(cosine: float, low: float, high: float, semantics: Semantics = "orig") -> Decision:
    """Keep a pair whose images are alike but not identical."""
    if semantics == "orig":
        cosine = round(cosine, 3)  # as the reference's cos_filter.py stores it
        too_different, too_similar = cosine <= low, cosine >= high
    else:
        too_different, too_similar = cosine < low, cosine > high
    numbers = {"pair_cosine": cosine, "min": low, "max": high, "semantics": semantics}
    if too_different:
        return Decision(False, "pair_too_different", numbers)
    if too_similar:
        return Decision(False, "pair_too_similar", numbers)
    return Decision(True, "pair_in_window", numbers)


@dataclass(frozen=True)
class Candidate:
    """A proposal of one image, to be cropped from both images at the same place."""

    box: Box
    source_image: ImageSide


def crop_box(box: Box) -> Box | None:
    """The pixels a crop takes: coordinates truncated to integers as the reference does (None if empty)."""
    x1, y1, x2, y2 = (math.floor(value) for value in box.as_list())
    if x2 <= x1 or y2 <= y1:
        return None
    return Box(x1=x1, y1=y1, x2=x2, y2=y2)


@dataclass(frozen=True)
class Candidates:
    found: list[Candidate]
    zero_size: int = 0


def candidates(proposals_1: Sequence[Box], proposals_2: Sequence[Box], width: int, height: int) -> Candidates:
    """Image 1's boxes then image 2's, clipped to the image; boxes with no whole pixel inside are counted apart."""
    found: list[Candidate] = []
    zero_size = 0
    sides: tuple[tuple[ImageSide, Sequence[Box]], ...] = ((1, proposals_1), (2, proposals_2))
    for source_image, boxes in sides:
        for box in boxes:
            inside = clipped(box, width, height)
            if inside is None or crop_box(inside) is None:
                zero_size += 1
            else:
                found.append(Candidate(inside, source_image))
    return Candidates(found, zero_size)


def zero_size_decision(zero_size: int, semantics: Semantics) -> Decision:
    """ORIG drops the whole pair when any crop is empty; DJ only drops the box."""
    if zero_size and semantics == "orig":
        return Decision(False, "zero_size_crop", {"zero_size_boxes": zero_size})
    return Decision(True, "crops_have_pixels", {"zero_size_boxes": zero_size})


def proposals_decision(proposals: Candidates, semantics: Semantics) -> Decision:
    """Are there candidates to test? A crop with no pixels under ORIG drops the whole pair (``zero_size_crop``);
    no proposal with a pixel, or none at all, is ``no_proposals`` (the reference skips a pair with no boxes)."""
    numbers = {"candidates": len(proposals.found), "zero_size_boxes": proposals.zero_size}
    crops = zero_size_decision(proposals.zero_size, semantics)
    if not crops:
        return crops
    if not proposals.found:
        return Decision(False, "no_proposals", numbers)
    return Decision(True, "candidates", numbers)


def text_match_crops(candidate: Candidate, semantics: Semantics) -> tuple[ImageSide, ImageSide]:
    """Which image's crop is scored against the source objects, and which against the target objects."""
    if semantics == "dj":
        return 1, 2
    other: ImageSide = 2 if candidate.source_image == 1 else 1
    return candidate.source_image, other


def area_decision(
    crop_cosine: float,
    source_scores: Sequence[float],
    target_scores: Sequence[float],
    *,
    text_min: float,
    crop_max: float,
    semantics: Semantics = "orig",
) -> Decision:
    """One candidate: does a crop show a changed object, and do its two crops differ?

    ``source_scores`` are the scores of the crop chosen by `text_match_crops` against each source object,
    ``target_scores`` the other crop against each target object.
    """
    best = max([*source_scores, *target_scores], default=None)  # None: no object to match
    numbers = {"crop_cosine": crop_cosine, "text_match": best, "text_min": text_min, "crop_max": crop_max}
    if semantics == "orig":
        text_ok = any(s > text_min for s in source_scores) or any(s > text_min for s in target_scores)
        crops_differ = crop_cosine < crop_max
    else:
        text_ok = any(s >= text_min for s in source_scores) and any(s >= text_min for s in target_scores)
        crops_differ = 0 <= crop_cosine <= crop_max
    if not text_ok:
        return Decision(False, "no_text_match", numbers)
    if not crops_differ:
        return Decision(False, "crops_alike", numbers)
    return Decision(True, "difference_area", numbers)


@dataclass(frozen=True)
class CropPair:
    """What is scored: the cosine of candidate ``candidate``'s two crops (image 1's and image 2's, one place)."""

    candidate: int


@dataclass(frozen=True)
class CropText:
    """What is scored: image ``image``'s crop of candidate ``candidate`` against the object word ``word``."""

    candidate: int
    image: ImageSide
    word: str


AreaScore = CropPair | CropText


def area_scores_needed(
    found: Sequence[Candidate], source_objects: Sequence[str], target_objects: Sequence[str], semantics: Semantics
) -> list[AreaScore]:
    """Every score `decide_areas` reads, by name: each candidate's crop pair, and the crops `text_match_crops`
    picks against each source and each target object."""
    needed: list[AreaScore] = []
    for index, candidate in enumerate(found):
        source_side, target_side = text_match_crops(candidate, semantics)
        needed.append(CropPair(index))
        needed += [CropText(index, source_side, word) for word in source_objects]
        needed += [CropText(index, target_side, word) for word in target_objects]
    return needed


@dataclass(frozen=True)
class BoxDecision:
    """What became of one candidate (by its index), and why."""

    index: int
    decision: Decision

    @property
    def keep(self) -> bool:
        return self.decision.keep

    @property
    def reason(self) -> str:
        return self.decision.reason


@dataclass(frozen=True)
class AreaSelection:
    decisions: list[BoxDecision]  # one per candidate, in the candidates' order
    kept: list[int]  # the kept candidates' indices, in the order the boxes come out


def nms_order(crop_cosines: Sequence[float], semantics: Semantics) -> list[int]:
    """The order in which NMS visits boxes. ORIG: ascending crop cosine by numpy's default ``argsort`` on the
    float64 values, as ``iou_filter`` sorts (not a stable sort: tied boxes come out as numpy orders them);
    DJ: input order."""
    if semantics == "dj":
        return list(range(len(crop_cosines)))
    cosines = np.asarray(crop_cosines, dtype=np.float64)  # pragma: no mutate (equivalent for Python floats)
    return [int(index) for index in np.argsort(cosines)]


def nms_survivors(
    crop_cosines: Sequence[float], boxes: Sequence[Box], *, iou_threshold: float, semantics: Semantics
) -> list[int]:
    """Indices of the boxes NMS keeps, in `nms_order` (ORIG: most different first; DJ: input order)."""
    order = nms_order(crop_cosines, semantics)
    return [order[position] for position in nms([boxes[index] for index in order], iou_threshold)]


def capped(indices: Sequence[int], max_boxes: int, semantics: Semantics) -> list[int]:
    """ORIG keeps the first ``max_boxes`` of the boxes NMS kept; DJ keeps them all."""
    return list(indices) if semantics == "dj" else list(indices[:max_boxes])


def decide_areas(
    found: Sequence[Candidate],
    source_objects: Sequence[str],
    target_objects: Sequence[str],
    scores: Mapping[AreaScore, float],
    *,
    text_min: float,
    crop_max: float,
    nms_iou: float,
    max_boxes: int,
    semantics: Semantics = "orig",
) -> AreaSelection:
    """Stage 4 for every candidate, from its scores by name (`area_scores_needed`): the per-box test, then NMS
    and the cap over the boxes that passed. Each candidate's decision says which rule decided it."""
    decisions: dict[int, Decision] = {}
    passed: list[int] = []
    for index, candidate in enumerate(found):
        source_side, target_side = text_match_crops(candidate, semantics)
        decision = area_decision(
            scores[CropPair(index)],
            [scores[CropText(index, source_side, word)] for word in source_objects],
            [scores[CropText(index, target_side, word)] for word in target_objects],
            text_min=text_min,
            crop_max=crop_max,
            semantics=semantics,
        )
        decisions[index] = decision
        if decision:
            passed.append(index)
    survivors = nms_survivors(
        [scores[CropPair(index)] for index in passed],
        [found[index].box for index in passed],
        iou_threshold=nms_iou,
        semantics=semantics,
    )
    after_nms = [passed[position] for position in survivors]
    kept = capped(after_nms, max_boxes, semantics)
    for index in passed:
        numbers = decisions[index].numbers
        if index in kept:
            continue
        if index in after_nms:
            decisions[index] = Decision(False, "over_max_boxes", {**numbers, "max_boxes": max_boxes})
        else:
            decisions[index] = Decision(False, "overlaps_a_kept_box", {**numbers, "nms_iou": nms_iou})
    return AreaSelection([BoxDecision(index, decisions[index]) for index in range(len(found))], kept)
