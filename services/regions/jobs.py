"""What the regions serving hands the model: torch-free, so both sides import it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from spotdiff.protocol.regions import AmgOptions, Prompt


@dataclass(frozen=True)
class ProposeJob:
    """One image for the automatic mask generator; jobs with equal ``options`` share a batch."""

    image: Image.Image
    options: AmgOptions
    return_masks: bool


@dataclass(frozen=True)
class PromptedJob:
    """One image and the prompts that each ask for one mask of it."""

    image: Image.Image
    prompts: list[Prompt]
    multimask: bool
    return_masks: bool
