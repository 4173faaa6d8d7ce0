"""llava-v1.6-vicuna-7b at full width with seeded random weights: the whole CLIP ViT-L/14-336 vision tower and
projector, the real anyres pinpoints at 336 px, and fewer of the language model's 32 layers (``layers``); fp16 as
the hub ships it. The tokenizer is the tiny word-level one (a smaller vocabulary than the 32064-row embedding)."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    CLIPVisionConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
)

from services.captioning import tiny
from services.captioning.tiny import IMAGE
from services.kit.checkpoints import save_pretrained, seeded
from services.rewriting.full_size import LAYERS, vicuna_7b_config

IMAGE_SIZE, PATCH_SIZE = 336, 14
PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]  # llava-v1.6's (height, width)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_processor() -> LlavaNextProcessor:
    return tiny.build_processor(IMAGE_SIZE, PINPOINTS, PATCH_SIZE, image_mean=CLIP_MEAN, image_std=CLIP_STD)


def llava_next_config(image_token: int, layers: int = LAYERS) -> LlavaNextConfig:
    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=768,
    )
    return LlavaNextConfig(
        vision_config=vision,
        text_config=vicuna_7b_config(layers, vocab_size=32064),
        image_token_index=image_token,
        image_grid_pinpoints=PINPOINTS,
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
    )


def build(out_dir: Path, seed: int = 0, layers: int = LAYERS) -> Path:
    processor = build_processor()
    tokenizer = processor.tokenizer
    config = llava_next_config(tokenizer.convert_tokens_to_ids(IMAGE), layers)
    text = config.get_text_config()
    text.bos_token_id, text.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    text.pad_token_id = tokenizer.pad_token_id
    with seeded(seed):
        model = LlavaNextForConditionalGeneration(config).eval()
    generation = model.generation_config
    generation.bos_token_id, generation.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    return save_pretrained(model.half(), processor, out_dir)
