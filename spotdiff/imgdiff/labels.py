"""Region labels (stage 5): which boxes get labelled, on which crop a label is checked, and which labels stay.

ORIG (`generate_final_data_new_edit.py`, the default) and DJ (Data-Juicer's caption operator) differ:

- which boxes: ORIG skips boxes smaller than ``W*H*min_area_fraction`` (1/400) and stops after
  ``max_regions`` (its ``qa_turns``, 5); DJ skips boxes larger than ``W*H*max_area_fraction`` (1/10) and has no cap.
- the crop a label is checked on: ORIG grows the box by 5 px (clamped); DJ uses the box as it is.
- labels too alike: ORIG keeps ``cos < max``; DJ keeps ``0 <= cos <= max``.
- label against its crop: ORIG keeps when both scores are ``> min``; DJ's operator means ``>= min`` on both, but
  never applies it (its samples lack the image token, so every box passes). spotdiff applies it: a filter that
  cannot reject is a defect, not a behaviour to copy (a deliberate deviation).
- an empty label: ORIG scores it like any other text (nothing in the script sets it apart); DJ's text-pair
  filter gives it empty stats, which pass, and its crop check (spotdiff's) has nothing to match, so it passes.
- which boxes stay: ORIG decides each box alone; DJ keeps a box when its first label is among the first labels
  of the boxes that passed and its second label among their second labels (membership across boxes), so a box
  that failed may stay because another box has the same labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from spotdiff.imgdiff.areas import BoxDecision, ImageSide, Semantics
from spotdiff.imgdiff.boxes import grown
from spotdiff.imgdiff.decision import Decision
from spotdiff.imgdiff.render import RED_BOX_GROWTH
from spotdiff.protocol.common import Box


def label_box_decision(
    box: Box,
    width: int,
    height: int,
    *,
    min_area_fraction: float,
    max_area_fraction: float,
    semantics: Semantics = "orig",
) -> Decision:
    """Is this box labelled at all? ORIG drops small boxes, DJ large ones."""
    image_area = width * height
    numbers = {"area": box.area, "min_area": image_area * min_area_fraction, "max_area": image_area * max_area_fraction}
    if semantics == "orig" and box.area < image_area * min_area_fraction:
        return Decision(False, "box_too_small", numbers)
    if semantics == "dj" and box.area > image_area * max_area_fraction:
        return Decision(False, "box_too_large", numbers)
    return Decision(True, "box_labelled", numbers)


def select_label_boxes(
    boxes: Sequence[Box],
    width: int,
    height: int,
    *,
    min_area_fraction: float,
    max_area_fraction: float,
    max_regions: int,
    semantics: Semantics = "orig",
) -> tuple[list[int], list[Decision]]:
    """Indices of the boxes to label, in order, and the decision about every box."""
    chosen: list[int] = []
    decisions: list[Decision] = []
    for index, box in enumerate(boxes):
        if semantics == "orig" and len(chosen) >= max_regions:
            decisions.append(Decision(False, "enough_regions", {"max_regions": max_regions}))
            continue
        decision = label_box_decision(
            box,
            width,
            height,
            min_area_fraction=min_area_fraction,
            max_area_fraction=max_area_fraction,
            semantics=semantics,
        )
        decisions.append(decision)
        if decision:
            chosen.append(index)
    return chosen, decisions


def label_crop_box(box: Box, width: int, height: int, semantics: Semantics = "orig") -> Box:
    """Where a label is checked against the image: ORIG's grown box, DJ's plain one."""
    return grown(box, RED_BOX_GROWTH, width, height) if semantics == "orig" else box


def label_decision(
    label_source: str,
    label_target: str,
    label_cosine: float,
    match_1: float,
    match_2: float,
    *,
    cosine_max: float,
    match_min: float,
    semantics: Semantics = "orig",
) -> Decision:
    """One labelled box alone: its two labels differ and each label matches its own crop."""
    numbers = {
        "label_cosine": label_cosine,
        "label_match_1": match_1,
        "label_match_2": match_2,
        "cosine_max": cosine_max,
        "match_min": match_min,
    }
    if semantics == "dj" and (not label_source or not label_target):
        return Decision(True, "empty_label_passes", numbers)
    alike = label_cosine >= cosine_max if semantics == "orig" else not 0 <= label_cosine <= cosine_max
    if alike:
        return Decision(False, "labels_alike", numbers)
    matches = (
        (match_1 > match_min and match_2 > match_min)
        if semantics == "orig"
        else (match_1 >= match_min and match_2 >= match_min)
    )
    if not matches:
        return Decision(False, "label_does_not_match_crop", numbers)
    return Decision(True, "labels_differ", numbers)


@dataclass(frozen=True)
class LabelPair:
    """What is scored: the text cosine of labelled box ``box``'s two labels."""

    box: int


@dataclass(frozen=True)
class LabelMatch:
    """What is scored: image ``image``'s crop of labelled box ``box`` (`label_crop_box`) against its label."""

    box: int
    image: ImageSide


LabelScore = LabelPair | LabelMatch


def label_scores_needed(count: int) -> list[LabelScore]:
    """Every score `decide_labels` reads for ``count`` labelled boxes, by name."""
    return [key for box in range(count) for key in (LabelPair(box), LabelMatch(box, 1), LabelMatch(box, 2))]


def decide_labels(
    labels: Sequence[tuple[str, str]],
    scores: Mapping[LabelScore, float],
    *,
    cosine_max: float,
    match_min: float,
    semantics: Semantics = "orig",
) -> list[BoxDecision]:
    """Stage 5 for every labelled box (its labels in image 1 and image 2, its scores by name): one decision
    each, in order. ORIG decides each box alone; DJ keeps the boxes whose labels are among the passing ones."""
    alone = [
        label_decision(
            first,
            second,
            scores[LabelPair(box)],
            scores[LabelMatch(box, 1)],
            scores[LabelMatch(box, 2)],
            cosine_max=cosine_max,
            match_min=match_min,
            semantics=semantics,
        )
        for box, (first, second) in enumerate(labels)
    ]
    if semantics == "orig":
        return [BoxDecision(box, decision) for box, decision in enumerate(alone)]
    firsts = {labels[box][0] for box, decision in enumerate(alone) if decision}
    seconds = {labels[box][1] for box, decision in enumerate(alone) if decision}
    decided = []
    for box, decision in enumerate(alone):
        first, second = labels[box]
        if not decision and first in firsts and second in seconds:
            decision = Decision(True, "labels_among_passing", {**decision.numbers, "failed_alone": decision.reason})
        decided.append(BoxDecision(box, decision))
    return decided
