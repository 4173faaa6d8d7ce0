"""SDXL image pairs: both captions start from one seeded initial latent.

Several pairs with equal settings run as one UNet batch (2 prompts per pair, doubled by classifier-free
guidance). Latents are drawn per pair on the CPU from the pair's own seed, so a pair's images do not depend
on what it was batched with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
from diffusers.utils import logging as diffusers_logging
from PIL import Image
from transformers.utils import logging as transformers_logging

from services.kit.placement import dtype_name, resolve_device, resolve_dtype, revision_of
from services.kit.runner import ModelInfo, ModelRunner, model_info
from spotdiff.settings import GenerationSettings

if TYPE_CHECKING:
    from services.generation.api import PairJob


diffusers_logging.disable_progress_bar()
transformers_logging.disable_progress_bar()  # a service logs; it does not draw progress bars


class GenerationModel(ModelRunner):
    def __init__(self, settings: GenerationSettings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.pipe: StableDiffusionXLPipeline | None = None
        self.revision = "unknown"

    def load(self) -> None:
        pipe = StableDiffusionXLPipeline.from_pretrained(self.settings.model, dtype=self.dtype)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        self.revision = revision_of(self.settings.model)

    def warmup(self) -> None:
        from services.generation.api import PairJob
        from services.generation.protocol import GenerationParams

        params = GenerationParams(
            height=self.settings.height, width=self.settings.width, num_inference_steps=2, guidance_scale=7.5
        )
        self.generate([PairJob("a photo of a dog", "a photo of a cat", 0, params)])

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

    @torch.inference_mode()
    def generate(self, jobs: list[PairJob]) -> list[tuple[Image.Image, Image.Image]]:
        """Generate every pair in one pipeline call; all jobs share their params (the batcher's key)."""
        assert self.pipe is not None
        params = jobs[0].params
        prompts = [prompt for job in jobs for prompt in (job.source, job.target)]
        latents = torch.cat([self.initial_latents(job.seed, params.height, params.width) for job in jobs])
        images = self.pipe(
            prompt=prompts,
            height=params.height,
            width=params.width,
            num_inference_steps=params.num_inference_steps,
            guidance_scale=params.guidance_scale,
            latents=latents.to(self.device, self.dtype),
            output_type="pil",
        ).images
        return [(images[2 * index], images[2 * index + 1]) for index in range(len(jobs))]

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
                },
            },
        )
