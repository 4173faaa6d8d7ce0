"""SDXL image pairs: both captions start from one seeded initial latent.

Several pairs with equal settings run as one UNet batch (2 prompts per pair, doubled by classifier-free
guidance). Latents are drawn per pair on the CPU from the pair's own seed, so a pair's images do not depend
on what it was batched with.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
from diffusers.utils import logging as diffusers_logging
from PIL import Image
from transformers.utils import logging as transformers_logging

from httpkit.errors import ServiceError
from services.generation.alignment import Refinement, refinement, time_word_alphas, word_token_positions
from services.generation.jobs import PairImages, PairJob
from services.generation.p2p import (
    ControllerSlot,
    P2PAttnProcessor,
    P2PController,
    PairEdit,
    self_replace_max_queries,
)
from services.kit.placement import dtype_name, resolve_device, resolve_dtype, revision_of
from services.kit.runner import ModelInfo, ModelRunner, model_info
from spotdiff.protocol.generation import GenerationParams
from spotdiff.settings import GenerationSettings

MAX_TOKENS = 77  # CLIP's context: the length of every cross-attention key sequence


diffusers_logging.disable_progress_bar()
transformers_logging.disable_progress_bar()  # a service logs; it does not draw progress bars


def weight_variant(model: str, setting: str | None) -> str | None:
    """The weight variant to load: the setting's, else ``fp16`` for a local directory that holds only
    ``*.fp16.safetensors`` weights (the common SDXL download), else none (the plain files)."""
    if setting is not None:
        return setting
    unet = Path(model) / "unet"
    plain = any(unet.glob("diffusion_pytorch_model.safetensors")) or any(unet.glob("*.bin"))
    fp16_only = unet.is_dir() and not plain and any(unet.glob("diffusion_pytorch_model.fp16.safetensors"))
    return "fp16" if fp16_only else None


def check_tokenizers(pipe: StableDiffusionXLPipeline) -> None:
    """Refuse a tokenizer whose length limit is over its text encoder's positions: a checkpoint written without
    ``model_max_length`` carries 1e30, and the first prompt fails deep inside the pipeline."""
    for name, encoder_name in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        tokenizer, encoder = getattr(pipe, name), getattr(pipe, encoder_name)
        if tokenizer is None or encoder is None:
            continue
        positions = int(encoder.config.max_position_embeddings)
        if tokenizer.model_max_length > positions:
            raise ValueError(
                f"{name}'s model_max_length ({tokenizer.model_max_length:.0f}) is over {encoder_name}'s "
                f'{positions} positions: set "model_max_length": {positions} in {name}/tokenizer_config.json'
            )


class GenerationModel(ModelRunner):
    def __init__(self, settings: GenerationSettings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.pipe: StableDiffusionXLPipeline | None = None
        self.slot = ControllerSlot()
        self.revision = "unknown"
        self.counting: list[Any] = []  # copies of the tokenizers, for counting off the model thread
        self.counting_lock = threading.Lock()

    def load(self) -> None:
        variant = weight_variant(self.settings.model, self.settings.variant)
        pipe = StableDiffusionXLPipeline.from_pretrained(self.settings.model, dtype=self.dtype, variant=variant)
        self.attach(pipe)
        self.revision = revision_of(self.settings.model)

    def attach(self, pipe: StableDiffusionXLPipeline) -> None:
        """Serve ``pipe``: Prompt-to-Prompt processors in every attention layer, on this model's device."""
        check_tokenizers(pipe)
        pipe.set_progress_bar_config(disable=True)
        pipe.unet.set_attn_processor(P2PAttnProcessor(self.slot))
        if self.settings.vae_slicing:
            pipe.vae.enable_slicing()
        if self.settings.vae_tiling:
            pipe.vae.enable_tiling()
        # a fast tokenizer may not be called from two threads at once, and the pipeline calls its own
        self.counting = [copy.deepcopy(tok) for tok in (pipe.tokenizer, pipe.tokenizer_2) if tok is not None]
        self.pipe = pipe.to(self.device)

    def count_tokens(self, texts: list[str]) -> tuple[list[int], int]:
        """Each text's token count as the text encoders see it before truncation, start and end included (the
        larger of the two tokenizers' counts), and how many tokens they read."""
        with self.counting_lock:
            counts = [[len(ids) for ids in tokenizer(texts, verbose=False).input_ids] for tokenizer in self.counting]
            limit = min(int(tokenizer.model_max_length) for tokenizer in self.counting)
        return [max(each) for each in zip(*counts, strict=True)], limit

    def warmup(self) -> None:
        params = GenerationParams(
            height=self.settings.height,
            width=self.settings.width,
            num_inference_steps=2,
            guidance_scale=7.5,
            edit="refine",
            cross_replace=1.0,
            cross_replace_words={},
            self_replace=0.5,
        )
        (result,) = self.generate([PairJob("a photo of a dog", "a photo of a cat", 0, params)])
        if isinstance(result, BaseException):
            raise result

    def initial_latents(self, seed: int, height: int, width: int) -> torch.Tensor:
        """The shared starting noise of one pair: the same latent twice."""
        assert self.pipe is not None
        shape = (
            1,
            self.pipe.unet.config.in_channels,
            height // self.pipe.vae_scale_factor,
            width // self.pipe.vae_scale_factor,
        )
        noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
        return noise.repeat(2, 1, 1, 1)

    def tokens(self, prompt: str) -> list[int]:
        """The prompt's token ids as the pipeline's first tokenizer encodes them (77 at most): what the
        attention edit aligns, as the reference does."""
        assert self.pipe is not None
        tokenizer = self.pipe.tokenizer
        ids: list[int] = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
        return ids

    def pair_edit(self, job: PairJob) -> tuple[PairEdit, list[str]]:
        """The edit of one pair (token alignment, per-step cross weights, self-replacement steps) and warnings: a
        prompt is said to be truncated when either text encoder cuts it, by the counts /v1/tokenize gives."""
        assert self.pipe is not None
        params = job.params
        source, target = self.tokens(job.source), self.tokens(job.target)
        counts, limit = self.count_tokens([job.source, job.target])
        warnings = [
            f"{side} prompt is over {limit} tokens and was truncated"
            for side, count in zip(("source", "target"), counts, strict=True)
            if count > limit
        ]
        steps = params.num_inference_steps
        if params.edit == "none":
            return PairEdit(torch.zeros(steps + 1, MAX_TOKENS), torch.arange(MAX_TOKENS), 0), warnings
        if params.edit == "replace":
            if len(source) != len(target):
                raise ServiceError(
                    422,
                    "replace_needs_equal_tokens",
                    f"replace swaps words token for token: the source has {len(source)} tokens, the target "
                    f"{len(target)}; use edit=refine",
                )
            aligned = Refinement(mapper=list(range(MAX_TOKENS)), alphas=[1.0] * MAX_TOKENS)
        else:
            aligned = refinement(source, target, MAX_TOKENS)
        pieces = [self.pipe.tokenizer.decode([token]).strip("#") for token in target[1:-1]]
        overrides = [
            (word_token_positions(job.target, pieces, word), fraction)
            for word, fraction in params.cross_replace_words.items()
        ]
        schedule = torch.tensor(time_word_alphas(steps, params.cross_replace, overrides, MAX_TOKENS))
        cross_weights = schedule * torch.tensor(aligned.alphas)[None, :]
        return PairEdit(cross_weights, torch.tensor(aligned.mapper), int(steps * params.self_replace)), warnings

    @torch.inference_mode()
    def generate(self, jobs: list[PairJob]) -> list[PairImages | BaseException]:
        """Generate every pair in one pipeline call; all jobs share ``params.batch_key()`` (the batcher's key).

        A job whose edit cannot be built (a 4xx) fails alone; the others still run.
        """
        assert self.pipe is not None
        prepared: list[tuple[PairJob, PairEdit, list[str]]] = []
        results: dict[int, PairImages | BaseException] = {}
        for index, job in enumerate(jobs):
            try:
                edit, warnings = self.pair_edit(job)
            except ServiceError as exc:
                results[index] = exc
                continue
            prepared.append((job, edit, warnings))
        if prepared:
            try:
                images = self._run([job for job, _, _ in prepared], [edit for _, edit, _ in prepared])
            except ServiceError as exc:  # the whole batch stopped (every caller left)
                images = []
                for index in range(len(jobs)):
                    results.setdefault(index, exc)
            ready = iter(range(len(prepared)))
            for index in range(len(jobs)):
                if index not in results:
                    position = next(ready)
                    results[index] = PairImages(images[2 * position], images[2 * position + 1], prepared[position][2])
        return [results[index] for index in range(len(jobs))]

    def _run(self, jobs: list[PairJob], edits: list[PairEdit]) -> list[Image.Image]:
        assert self.pipe is not None
        params = jobs[0].params
        steps = params.num_inference_steps

        def on_step(step: int) -> None:
            for job in jobs:
                if job.on_step is not None:
                    job.on_step(step, steps)

        controller = P2PController(
            edits,
            self_max_queries=self_replace_max_queries(params.width),
            on_step=on_step,
            should_stop=lambda: all(job.cancelled() for job in jobs),
        )
        plain = all(job.params.edit == "none" for job in jobs)
        self.slot.controller = None if plain else controller
        try:
            latents = torch.cat([self.initial_latents(job.seed, params.height, params.width) for job in jobs])
            images: list[Image.Image] = self.pipe(
                prompt=[prompt for job in jobs for prompt in (job.source, job.target)],
                height=params.height,
                width=params.width,
                num_inference_steps=steps,
                guidance_scale=params.guidance_scale,
                latents=latents.to(self.device, self.dtype),
                output_type="pil",
                callback_on_step_end=controller.step_end,
            ).images
        finally:
            self.slot.controller = None
        if all(job.cancelled() for job in jobs):
            raise ServiceError(499, "client_closed_request", "every caller of this batch disconnected")
        return images

    def info(self) -> ModelInfo:
        assert self.pipe is not None
        components = {
            name: type(component).__name__ for name, component in self.pipe.components.items() if component is not None
        }
        return model_info(
            "generation",
            self.settings,
            revision=self.revision,
            dtype=dtype_name(self.dtype),
            device=self.device,
            extra={
                "components": components,
                "scheduler": type(self.pipe.scheduler).__name__,
                "defaults": {
                    "height": self.settings.height,
                    "width": self.settings.width,
                    "num_inference_steps": self.settings.num_inference_steps,
                    "guidance_scale": self.settings.guidance_scale,
                    "edit": self.settings.edit,
                    "cross_replace": self.settings.cross_replace,
                    "self_replace": self.settings.self_replace,
                },
                "attention": "prompt-to-prompt, fused scaled_dot_product_attention",
                "p2p_layers": sum(isinstance(p, P2PAttnProcessor) for p in self.pipe.unet.attn_processors.values()),
                "transformer_blocks": sum(
                    type(module).__name__ == "BasicTransformerBlock" for module in self.pipe.unet.modules()
                ),
                "vae": {"slicing": self.settings.vae_slicing, "tiling": self.settings.vae_tiling},
            },
        )
