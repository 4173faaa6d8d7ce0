"""The model lifecycle every service implements (LitServe's load / predict split)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from spotdiff.protocol.common import ModelInfo

__all__ = ["ModelInfo", "ModelRunner"]


class ModelRunner(ABC):
    """Loads once, warms up once, then answers batched calls from the service's single model thread.

    The only classes that import torch implement this; the kit never does.
    """

    @abstractmethod
    def load(self) -> None:
        """Load weights from a local directory or hub id through the family's own loading code."""

    @abstractmethod
    def warmup(self) -> None:
        """Run one real inference so that readiness means the model answers, not just that it loaded."""

    @abstractmethod
    def info(self) -> ModelInfo:
        """Describe the loaded model."""
