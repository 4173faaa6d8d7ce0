"""Region labels (stage 5): which boxes get labelled, on which crop a label is checked, and which labels stay.

ORIG (`generate_final_data_new_edit.py`, the default) and DJ (Data-Juicer's caption operator) differ:

- which boxes: ORIG skips boxes smaller than ``W*H*min_area_fraction`` (1/400) and stops after
  ``max_regions`` (its ``qa_turns``, 5); DJ skips boxes larger than ``W*H*max_area_fraction`` (1/10) and has no cap.
- the crop a label is checked on: ORIG grows the box by 5 px (clamped); DJ uses the box as it is.
- labels too alike: ORIG keeps ``cos < max``; DJ keeps ``0 <= cos <= max``.
- label against its crop: ORIG keeps when both scores are ``> min``; DJ's operator means ``>= min`` on both, but
  never applies it (its samples lack the image token, so every box passes). spotdiff applies it: a filter that
  cannot reject is a defect, not a behaviour to copy.
An empty label never passes.
"""

from __future__ import annotations

from collections.abc import Sequence

from spotdiff.imgdiff.areas import Semantics
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
    """Keep a labelled box when its two labels differ and each label matches its own crop."""
    numbers = {
        "label_cosine": label_cosine,
        "label_match_1": match_1,
        "label_match_2": match_2,
        "cosine_max": cosine_max,
        "match_min": match_min,
    }
    if not label_source.strip() or not label_target.strip():
        return Decision(False, "empty_label", numbers)
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
