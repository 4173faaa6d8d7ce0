"""What the captioning serving hands the model: torch-free, so both sides import it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from PIL import Image


@dataclass(frozen=True)
class CaptionJob:
    """One prompt on one image; jobs with equal ``max_new_tokens`` share a ``generate`` call."""

    image: Image.Image
    prompt: str
    max_new_tokens: int


class Caption(NamedTuple):
    """One answer: its text, the new tokens it took, and the prompt positions its image took (LLaVA-NeXT's anyres
    tiles make that depend on the image's size)."""

    text: str
    tokens: int
    image_tokens: int
