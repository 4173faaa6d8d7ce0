"""A tiny, seeded, random-weight segment-anything model, loadable through `sam_model_registry`.

segment-anything has no config file: an architecture is a builder function in `sam_model_registry`
that takes `checkpoint=` (a `torch.save`d state dict). `register()` adds the tiny architecture under
`TINY_MODEL_TYPE`, so the regions service loads tiny and real models with the same
`sam_model_registry[model_type](checkpoint=path)` call.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from services.kit.checkpoints import seeded

TINY_MODEL_TYPE = "spotdiff_tiny"
CHECKPOINT_FILE = "sam_tiny.pth"

IMAGE_SIZE = 256  # SamPredictor / SamAutomaticMaskGenerator read it from the image encoder
PATCH_SIZE = 16
ENCODER_DIM = 64
ENCODER_DEPTH = 2
ENCODER_HEADS = 2
PROMPT_DIM = 32


def build_tiny_sam(checkpoint: str | os.PathLike[str] | None = None) -> Sam:
    """Build the tiny SAM in eval mode, like segment_anything's `build_sam_vit_*(checkpoint=None)`.

    With `checkpoint`, load the state dict written by `build` (weights only: no pickled code runs).
    """
    embedding_side = IMAGE_SIZE // PATCH_SIZE
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=ENCODER_DEPTH,
            embed_dim=ENCODER_DIM,
            img_size=IMAGE_SIZE,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=ENCODER_HEADS,
            patch_size=PATCH_SIZE,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=[ENCODER_DEPTH - 1],  # real SAM: windowed blocks, the last of each group global
            window_size=14,
            out_chans=PROMPT_DIM,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_DIM,
            image_embedding_size=(embedding_side, embedding_side),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=64, num_heads=2),
            transformer_dim=PROMPT_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    sam.eval()
    if checkpoint is not None:
        state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
        sam.load_state_dict(state_dict)
    return sam


def register() -> None:
    """Make `sam_model_registry[TINY_MODEL_TYPE](checkpoint=...)` build the tiny model (idempotent)."""
    sam_model_registry[TINY_MODEL_TYPE] = build_tiny_sam


def build_model(seed: int = 0) -> Sam:
    """Build the tiny SAM in memory with seeded random weights; the same seed gives identical weights."""
    with seeded(seed):
        return build_tiny_sam()


def build(out_dir: Path, seed: int = 0) -> Path:
    """Write the seeded state dict to `out_dir / "sam_tiny.pth"` and return that file's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHECKPOINT_FILE
    torch.save(build_model(seed).state_dict(), path)
    return path
