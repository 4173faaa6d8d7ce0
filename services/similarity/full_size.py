"""The similarity service's two reference models at their real sizes with seeded random weights: open_clip's
ViT-B-32 (QuickGELU, as OpenAI's weights) as the hub's ``open_clip_model.safetensors``, and BLIP ITM large
(Salesforce/blip-itm-large-coco's configuration) in transformers' layout."""

from __future__ import annotations

from pathlib import Path

import open_clip
from safetensors.torch import save_file
from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

from services.kit.checkpoints import save_pretrained, seeded
from services.similarity.tiny import WEIGHTS_FILE, build_blip_tokenizer

CLIP_MODEL = "ViT-B-32-quickgelu"
BLIP_IMAGE_SIZE = 384


def build_clip(out_dir: Path, seed: int = 0) -> Path:
    """Write ``out_dir/open_clip_model.safetensors``: the state dict ``pretrained=<file>`` loads."""
    with seeded(seed):
        model = open_clip.create_model(CLIP_MODEL)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dict = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state_dict, str(out_dir / WEIGHTS_FILE))
    return out_dir / WEIGHTS_FILE


def blip_config(tokenizer_size: int) -> BlipConfig:
    """blip-itm-large-coco: a ViT-L/16 at 384 px and a BERT-base text encoder (30524 ids)."""
    return BlipConfig(
        vision_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": BLIP_IMAGE_SIZE,
            "patch_size": 16,
        },
        text_config={
            "vocab_size": max(30524, tokenizer_size),
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 512,
            "encoder_hidden_size": 1024,
        },
        image_text_hidden_size=256,
    )


def build_blip(out_dir: Path, seed: int = 0) -> Path:
    """Save the full-size BLIP (its tokenizer the tiny word list: a smaller vocabulary than the embedding's)."""
    tokenizer = build_blip_tokenizer()
    config = blip_config(len(tokenizer))
    text = config.get_text_config()
    text.pad_token_id, text.bos_token_id = tokenizer.pad_token_id, tokenizer.cls_token_id
    text.sep_token_id = tokenizer.sep_token_id
    with seeded(seed):
        model = BlipForImageTextRetrieval(config).eval()
    image_processor = BlipImageProcessor(size={"height": BLIP_IMAGE_SIZE, "width": BLIP_IMAGE_SIZE})
    return save_pretrained(model, BlipProcessor(image_processor=image_processor, tokenizer=tokenizer), out_dir)
