"""A random-weight SDXL base at its real size, built from the configs in ``configs/sdxl-base-1.0``.

No weights are needed: it gives real GPU timings and memory of the full architecture (2.6 B UNet
parameters, both text encoders, the VAE) for the benchmarks. Building on the target device keeps a 10 GB
fp32 initialisation off the host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from services.kit.checkpoints import seeded

CONFIGS = Path(__file__).parent / "configs" / "sdxl-base-1.0"


def config(component: str, name: str = "config.json") -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONFIGS / component / name).read_text())
    return loaded


def sdxl_scheduler() -> EulerDiscreteScheduler:
    """SDXL base's scheduler, from its own config (``from_config`` drops the keys Euler does not take)."""
    scheduler: EulerDiscreteScheduler = EulerDiscreteScheduler.from_config(config("scheduler", "scheduler_config.json"))
    return scheduler


def text_config(component: str) -> CLIPTextConfig:
    fields = {key: value for key, value in config(component).items() if key not in ("architectures", "model_type")}
    return CLIPTextConfig(**fields)


def build_components(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The four networks with random weights (built directly on ``device``; ``meta`` costs no memory)."""
    with torch.device(device):
        components = {
            "unet": UNet2DConditionModel.from_config(config("unet")),
            "vae": AutoencoderKL.from_config(config("vae")),
            "text_encoder": CLIPTextModel(text_config("text_encoder")),
            "text_encoder_2": CLIPTextModelWithProjection(text_config("text_encoder_2")),
        }
    if str(device) != "meta":
        components = {name: module.to(dtype=dtype).eval() for name, module in components.items()}
    return components


def sdxl_tokenizers() -> tuple[CLIPTokenizer, CLIPTokenizer]:
    """SDXL base's two CLIP tokenizers over the real vocabulary, each cut at CLIP's 77 tokens (the second pads
    with "!")."""
    from services.generation.tiny import clip_bpe_vocab, clip_tokenizer

    vocab, merges = clip_bpe_vocab()
    return clip_tokenizer(vocab, merges, pad_token="<|endoftext|>"), clip_tokenizer(vocab, merges, pad_token="!")


def build_random_sdxl(device: str = "cpu", dtype: torch.dtype = torch.float32) -> StableDiffusionXLPipeline:
    """A full-size SDXL base pipeline with random weights and the real CLIP tokenizers."""
    components = build_components(device, dtype)
    tokenizer, tokenizer_2 = sdxl_tokenizers()
    return StableDiffusionXLPipeline(
        vae=components["vae"],
        text_encoder=components["text_encoder"],
        text_encoder_2=components["text_encoder_2"],
        unet=components["unet"],
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=sdxl_scheduler(),  # type: ignore[arg-type]  # diffusers hints an enum of scheduler names here
        add_watermarker=False,
    )


def build(out_dir: Path, seed: int = 0) -> Path:
    """Write a seeded random-weight SDXL base into ``out_dir`` as the hub lays it out (float32 safetensors,
    ``model_index.json``, both tokenizers, the scheduler): what the generation service loads the real one from."""
    with seeded(seed):
        pipe = build_random_sdxl()
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
