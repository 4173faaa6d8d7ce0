"""The model lifecycle every service implements (LitServe's load / predict split)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from spotdiff.protocol.common import ModelInfo
from spotdiff.settings import ServiceSettings

__all__ = ["ModelInfo", "ModelRunner", "model_info"]


def model_info(
    service: str, settings: ServiceSettings, *, revision: str, dtype: str, device: str, extra: dict[str, Any]
) -> ModelInfo:
    """`/v1/info` for a service: what its settings say about limits, plus what only the loaded model knows."""
    return ModelInfo(
        service=service,
        model_id=settings.model,
        revision=revision,
        dtype=dtype,
        device=device,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        extra=extra,
    )


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
