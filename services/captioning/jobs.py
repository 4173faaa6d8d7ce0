"""What the captioning serving hands the model: torch-free, so both sides import it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class CaptionJob:
    """One prompt on one image; jobs with equal ``max_new_tokens`` share a ``generate`` call."""

    image: Image.Image
    prompt: str
    max_new_tokens: int
