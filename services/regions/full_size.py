"""SAM ViT-H at its real size with seeded random weights, written as Meta's checkpoint file (a state dict)."""

from __future__ import annotations

from pathlib import Path

import torch
from segment_anything import sam_model_registry

from services.kit.checkpoints import seeded

CHECKPOINT = Path("checkpoints") / "sam_vit_h_4b8939.pth"  # where the hub repository keeps it


def build(out_dir: Path, seed: int = 0) -> Path:
    """Write ``out_dir/checkpoints/sam_vit_h_4b8939.pth`` (636 M parameters) and return its path."""
    with seeded(seed):
        sam = sam_model_registry["vit_h"]()
    path = out_dir / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam.state_dict(), path)
    return path
