"""Tiny, seeded, random-weight checkpoints of the similarity service: an open_clip CLIP written as an
open_clip `local-dir:` checkpoint, and a transformers BLIP image-text retrieval model (the reference's text
matcher).

The similarity service loads it with `open_clip.create_model_and_transforms("local-dir:" + path)` and
`open_clip.get_tokenizer("local-dir:" + path)`, the same calls that load a real hub/local CLIP. The
text side keeps CLIP's real 49408-token vocabulary and 77-token context, because open_clip's shipped
SimpleTokenizer emits ids up to 49407; the towers are only a few layers of width 64.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import open_clip
from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForImageTextRetrieval,
    BlipImageProcessor,
    BlipProcessor,
)

from services.kit.checkpoints import save_pretrained, seeded

# open_clip's `model_cfg` schema: what `open_clip.CLIP(**cfg)` takes.
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "head_width": 32, "layers": 2},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

# What open_clip's own `save_config_for_hf` records; the loader merges it over its defaults.
TINY_CLIP_PREPROCESS: dict[str, Any] = {
    "mean": list(OPENAI_DATASET_MEAN),
    "std": list(OPENAI_DATASET_STD),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}

CONFIG_FILE = HF_CONFIG_NAME  # "open_clip_config.json": the file `local-dir:` requires
WEIGHTS_FILE = HF_SAFE_WEIGHTS_NAME  # "open_clip_model.safetensors": first in `local-dir:`'s preference order


def build_model(seed: int = 0) -> open_clip.CLIP:
    """Build the tiny CLIP in memory, in eval mode; the same seed gives bit-identical weights."""
    with seeded(seed):
        model = open_clip.CLIP(**copy.deepcopy(TINY_CLIP_CONFIG))
    return model.eval()


def build(out_dir: Path, seed: int = 0) -> Path:
    """Write `open_clip_config.json` + `open_clip_model.safetensors` into `out_dir` and return it."""
    model = build_model(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": TINY_CLIP_PREPROCESS}
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    # Clone so that tensors sharing storage (none today) cannot trip safetensors' shared-memory check.
    state_dict = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state_dict, str(out_dir / WEIGHTS_FILE))
    return out_dir


BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4


def build_blip_tokenizer() -> BertTokenizer:
    """BLIP's BERT tokenizer over a word list (the tiny captioner's words): WordPiece, built offline."""
    from services.captioning.tiny import vocabulary

    words = sorted({word for word in vocabulary() if not word.startswith("<")})
    vocab = {token: index for index, token in enumerate([*BERT_SPECIAL_TOKENS, *words])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return BertTokenizer(
        tokenizer_object=backend,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )


def build_blip_model_and_processor(seed: int = 0) -> tuple[BlipForImageTextRetrieval, BlipProcessor]:
    """A tiny BLIP image-text retrieval model (ITC and ITM heads) and its processor, in eval mode."""
    tokenizer = build_blip_tokenizer()
    config = BlipConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "encoder_hidden_size": 32,
            "bos_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        image_text_hidden_size=32,
    )
    with seeded(seed):
        model = BlipForImageTextRetrieval(config).eval()
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 64, "width": 64}), tokenizer=tokenizer)
    return model, processor


def build_blip(out_dir: Path, seed: int = 0) -> Path:
    """Save the tiny BLIP (safetensors) and its processor with `save_pretrained` into `out_dir`."""
    return save_pretrained(*build_blip_model_and_processor(seed), out_dir)
