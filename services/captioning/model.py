"""A transformers vision-language model, batched across requests.

Prompts go through the model's own chat template; the batch is left-padded *with an attention mask* (the
reference pads with token 0 and no mask, which changes the answers of the shorter prompts); only the new
tokens are decoded, without special tokens, so the answer is clean whatever the template.
"""

from __future__ import annotations

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.utils import logging as transformers_logging

from services.captioning.jobs import Caption, CaptionJob
from services.kit.placement import dtype_name, resolve_device, resolve_dtype, revision_of
from services.kit.runner import ModelInfo, ModelRunner, model_info
from spotdiff.settings import CaptioningSettings

transformers_logging.disable_progress_bar()  # a service logs; it does not draw progress bars


class CaptioningModel(ModelRunner):
    def __init__(self, settings: CaptioningSettings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.revision = "unknown"

    def load(self) -> None:
        self.processor = AutoProcessor.from_pretrained(self.settings.model)
        self.processor.tokenizer.padding_side = "left"
        model = AutoModelForImageTextToText.from_pretrained(
            self.settings.model, dtype=self.dtype, attn_implementation=self.settings.attn_implementation
        )
        self.image_token_id = getattr(self.processor, "image_token_id", None)
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]  # transformers types .to oddly
        self.revision = revision_of(self.settings.model)

    def warmup(self) -> None:
        self.caption([CaptionJob(Image.new("RGB", (64, 64), (200, 80, 80)), "Describe the image.", 2)])

    def render_prompt(self, prompt: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text: str = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text

    @torch.inference_mode()
    def caption(self, jobs: list[CaptionJob]) -> list[Caption]:
        """Greedy answers for jobs that share ``max_new_tokens``."""
        inputs = self.processor(
            images=[job.image for job in jobs],
            text=[self.render_prompt(job.prompt) for job in jobs],
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        tokenizer = self.processor.tokenizer
        output = self.model.generate(
            **inputs,
            max_new_tokens=jobs[0].max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=tokenizer.pad_token_id,
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        answers = []
        for prompt, row in zip(inputs["input_ids"], new_tokens, strict=True):
            generated = [int(token) for token in row if int(token) != tokenizer.pad_token_id]
            text = tokenizer.decode(generated, skip_special_tokens=True).strip()
            image_tokens = 0 if self.image_token_id is None else int((prompt == self.image_token_id).sum())
            answers.append(Caption(text, len(generated), image_tokens))
        return answers

    def info(self) -> ModelInfo:
        return model_info(
            "captioning",
            self.settings,
            revision=self.revision,
            dtype=dtype_name(self.dtype),
            device=self.device,
            extra={
                "architecture": type(self.model).__name__,
                "processor": type(self.processor).__name__,
                "max_new_tokens_limit": self.settings.max_new_tokens_limit,
                "attn_implementation": self.model.config._attn_implementation,
            },
        )
