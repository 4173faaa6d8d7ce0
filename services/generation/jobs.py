"""What the generation serving hands the model and gets back: torch-free, so both sides import it
without a cycle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from spotdiff.protocol.generation import GenerationParams


@dataclass(frozen=True)
class PairJob:
    """One pair for the batcher; pairs whose params share ``batch_key()`` share a UNet batch.

    ``on_step`` and ``cancelled`` are the caller's line back from the model thread: progress out, and whether
    anyone still waits for the pair.
    """

    source: str
    target: str
    seed: int
    params: GenerationParams
    on_step: Callable[[int, int], None] | None = field(default=None, compare=False)
    cancelled: Callable[[], bool] = field(default=lambda: False, compare=False)


@dataclass(frozen=True)
class PairImages:
    source: Image.Image
    target: Image.Image
    warnings: list[str]
