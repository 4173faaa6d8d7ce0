"""What the similarity serving hands the model: torch-free, so both sides import it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from spotdiff.protocol.similarity import ScorePair


@dataclass(frozen=True)
class CosineJob:
    """A decoded request: its images by name and the pairs to score."""

    images: dict[str, Image.Image]
    pairs: list[ScorePair]
