"""Writing a checkpoint in the transformers layout, shared by the tiny builders (torch-free: it only calls
the objects' own ``save_pretrained``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_pretrained(model: Any, processor: Any, out_dir: Path) -> Path:
    """Model weights as safetensors and the processor beside them, as the real checkpoints ship; ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return out_dir
