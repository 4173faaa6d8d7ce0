"""What the rewriting serving hands the model: torch-free, so both sides import it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RewriteJob:
    """One caption and the seed of its sampling; any jobs share a ``generate`` call, each with its own generator."""

    caption: str
    seed: int


@dataclass(frozen=True)
class Answer:
    """What the model said (new tokens only, decoded without special tokens), its prompt and its length."""

    text: str
    prompt: str
    tokens: int
