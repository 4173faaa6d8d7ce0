"""The reference's prompts, verbatim."""

from __future__ import annotations

from spotdiff.imgdiff.boxes import normalised_box
from spotdiff.protocol.common import Box

REGION_LABEL_PROMPT = "Please provide a clear description for this region: {box}."
# Verbatim from the reference, doubled "the" included (`generate_final_data_new_edit.py`).
DIFFERENCE_CAPTION_PROMPT = (
    "Analyse the the left image and the right image (separated by the black vertical bar). The detail within the "
    "red bounding box in the left image is: {label_left}, while the detail within the red bounding box in the right "
    "image is: {label_right}. What is their difference? Answer with a few concise sentences."
)


def region_label_prompt(box: Box, width: int, height: int) -> str:
    return REGION_LABEL_PROMPT.format(box=normalised_box(box, width, height))


def difference_caption_prompt(label_left: str, label_right: str) -> str:
    return DIFFERENCE_CAPTION_PROMPT.format(label_left=label_left, label_right=label_right)
