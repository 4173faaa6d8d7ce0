"""vicuna-7b-v1.5 at full width with seeded random weights and fewer of its 32 layers (``layers``), in fp16 as the
hub ships it; the tiny word-level tokenizer (a smaller vocabulary than the 32000-row embedding)."""

from __future__ import annotations

from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM

from services.kit.checkpoints import save_pretrained, seeded
from services.rewriting.tiny import build_tokenizer

LAYERS = 2  # of vicuna-7b's 32: every shape is the real one, the depth is not


def vicuna_7b_config(layers: int = LAYERS, vocab_size: int = 32000) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )


def build(out_dir: Path, seed: int = 0, layers: int = LAYERS) -> Path:
    tokenizer = build_tokenizer()
    with seeded(seed):
        model = LlamaForCausalLM(vicuna_7b_config(layers)).eval()
    model.generation_config.update(temperature=0.9, top_p=0.6, do_sample=True)  # vicuna-7b-v1.5's own
    return save_pretrained(model.half(), tokenizer, out_dir)
