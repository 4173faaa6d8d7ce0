"""The reference's prompts, verbatim, and what else the semantics' steps send the models."""

from __future__ import annotations

from spotdiff.imgdiff.areas import Semantics
from spotdiff.imgdiff.boxes import normalised_box
from spotdiff.protocol.common import Box

REGION_LABEL_PROMPT = "Please provide a clear description for this region: {box}."
# Verbatim from the reference, doubled "the" included (`generate_final_data_new_edit.py`).
DIFFERENCE_CAPTION_PROMPT = (
    "Analyse the the left image and the right image (separated by the black vertical bar). The detail within the "
    "red bounding box in the left image is: {label_left}, while the detail within the red bounding box in the right "
    "image is: {label_right}. What is their difference? Answer with a few concise sentences."
)
DIFFERENCE_CAPTION_PROMPTS = {
    "reference": DIFFERENCE_CAPTION_PROMPT,
    "corrected": DIFFERENCE_CAPTION_PROMPT.replace("Analyse the the left", "Analyse the left"),
    # Data-Juicer's wording: one "the", and no "while"
    "dj": DIFFERENCE_CAPTION_PROMPT.replace("Analyse the the left", "Analyse the left").replace(
        ", while the detail", ", the detail"
    ),
}
# The question of the reference's training record (one per box), verbatim.
TRAINING_QUESTION = (
    "Analyse the the left image and the right image (separated by the black vertical bar). What is the difference "
    "between the red bounding box area in each image? Answer the question in a few concise sentences."
)

# spotdiff's wording of that question for two separate images (the multi-image exports): no bar to speak of.
MULTI_IMAGE_QUESTION = (
    "Each of the two images has a red bounding box. What is the difference between the red bounding box area in "
    "each image? Answer the question in a few concise sentences."
)


def region_label_prompt(box: Box, width: int, height: int, semantics: Semantics) -> str:
    """Stage 1's prompt for one box: its normalised coordinates as the semantics' reference computes them."""
    return REGION_LABEL_PROMPT.format(box=normalised_box(box, width, height, float32=semantics == "dj"))


#: Data-Juicer's Prompt-to-Prompt mapper always passes these replacement weights (they matter only when the
#: word is in a caption); ORIG passes none.
DJ_CROSS_REPLACE_WORDS: dict[str, float] = {"confetti": 0.8}


def cross_replace_words(semantics: Semantics) -> dict[str, float]:
    """The per-word cross-attention replacement weights the semantics' generation step passes."""
    return dict(DJ_CROSS_REPLACE_WORDS) if semantics == "dj" else {}


def difference_caption_prompt(label_left: str, label_right: str, wording: str = "reference") -> str:
    return DIFFERENCE_CAPTION_PROMPTS[wording].format(label_left=label_left, label_right=label_right)
