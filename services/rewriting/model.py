"""A transformers causal language model that rewrites captions, batched across requests.

Prompts are left-padded with an attention mask. Sampling follows the reference's decoding (temperature, and the
top-k / top-p of the model's generation config unless set), but each row draws from a generator seeded by its
own request: the reference re-seeds the global RNG from an unseeded one, so its rewrites cannot be repeated, and
a shared generator would make a caption's rewrite depend on its batch. The warpers are transformers' own; the
last processor samples each row and leaves only its token, which greedy decoding then takes.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
)
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.utils import logging as transformers_logging

from services.kit.placement import dtype_name, resolve_device, resolve_dtype, revision_of
from services.kit.runner import ModelInfo, ModelRunner, model_info
from services.rewriting.jobs import Answer, RewriteJob
from spotdiff.imgdiff.rewrite import RECIPES, VICUNA_SYSTEM, chat_messages, user_message
from spotdiff.settings import RewritingSettings

transformers_logging.disable_progress_bar()

DEFAULT_TOP_K = 50  # transformers' GenerationConfig default, which the reference's generate call inherits


class SeededSampling(LogitsProcessor):
    """Sample each row from its own generator; return scores that leave only the sampled token."""

    def __init__(self, seeds: list[int], device: str) -> None:
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float(), dim=-1)
        chosen = torch.cat(
            [
                torch.multinomial(row, 1, generator=generator)
                for row, generator in zip(probs, self.generators, strict=True)
            ]
        )
        only = torch.full_like(scores, float("-inf"))
        only[torch.arange(scores.shape[0], device=scores.device), chosen] = 0.0
        return only  # type: ignore[return-value]  # a FloatTensor, as transformers annotates it


class RewritingModel(ModelRunner):
    def __init__(self, settings: RewritingSettings) -> None:
        self.settings = settings
        self.recipe = RECIPES[settings.recipe]
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.revision = "unknown"
        self.template = "vicuna"

    def load(self) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(self.settings.model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:  # Llama and Vicuna ship none
            self.tokenizer.pad_token = self.tokenizer.unk_token or self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(
            self.settings.model, dtype=self.dtype, attn_implementation=self.settings.attn_implementation
        )
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]  # transformers types .to oddly
        self.revision = revision_of(self.settings.model)
        template = self.settings.template
        if template == "auto":
            template = "chat" if getattr(self.tokenizer, "chat_template", None) else "vicuna"
        self.template = template
        config = self.model.generation_config
        self.top_k = self.settings.top_k if self.settings.top_k is not None else (config.top_k or DEFAULT_TOP_K)
        self.top_p = self.settings.top_p if self.settings.top_p is not None else (config.top_p or 1.0)
        # its sampling settings are read; from here on the sampling is the service's own (`SeededSampling`)
        config.update(do_sample=False, temperature=None, top_k=None, top_p=None)

    def warmup(self) -> None:
        self.rewrite([RewriteJob("A dog on the grass.", 0)], max_new_tokens=2)

    def render_prompt(self, caption: str) -> str:
        """The recipe's prompt in the model's conversation: FastChat's vicuna_v1.1, or the chat template."""
        task = self.settings.task or self.recipe.task
        if self.template == "vicuna":
            return f"{self.recipe.system or VICUNA_SYSTEM} USER: {user_message(caption, task)} ASSISTANT:"
        text = self.tokenizer.apply_chat_template(
            chat_messages(caption, self.recipe, task), add_generation_prompt=True, tokenize=False
        )
        return str(text)

    def _warpers(self, seeds: list[int]) -> LogitsProcessorList:
        warpers: list[Any] = [TemperatureLogitsWarper(self.settings.temperature)]
        if self.top_k:
            warpers.append(TopKLogitsWarper(self.top_k))
        if self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(self.top_p))
        return LogitsProcessorList([*warpers, SeededSampling(seeds, self.device)])

    @torch.inference_mode()
    def rewrite(self, jobs: list[RewriteJob], max_new_tokens: int | None = None) -> list[Answer]:
        prompts = [self.render_prompt(job.caption) for job in jobs]
        inputs = self.tokenizer(
            prompts, padding=True, return_tensors="pt", add_special_tokens=self.template == "vicuna"
        ).to(self.device)
        own = self.model.generation_config  # its special tokens; its sampling is ours to do
        config = GenerationConfig(
            bos_token_id=own.bos_token_id,
            eos_token_id=own.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            max_new_tokens=max_new_tokens or self.settings.max_new_tokens,
            do_sample=False,
            num_beams=1,
        )
        output = self.model.generate(
            **inputs, generation_config=config, logits_processor=self._warpers([job.seed for job in jobs])
        )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        eos = set(_ids(config.eos_token_id))
        answers = []
        for prompt, row in zip(prompts, new_tokens, strict=True):
            generated: list[int] = []
            for token in (int(token) for token in row):
                if token in eos:
                    break  # what follows is the batch's padding
                generated.append(token)
            text = str(self.tokenizer.decode(generated, skip_special_tokens=True)).strip()
            answers.append(Answer(text, prompt, len(generated)))
        return answers

    def info(self) -> ModelInfo:
        return model_info(
            "rewriting",
            self.settings,
            revision=self.revision,
            dtype=dtype_name(self.dtype),
            device=self.device,
            extra={
                "architecture": type(self.model).__name__,
                "recipe": self.settings.recipe,
                "template": self.template,
                "temperature": self.settings.temperature,
                "top_k": self.top_k,
                "top_p": self.top_p,
                "max_new_tokens": self.settings.max_new_tokens,
            },
        )


def _ids(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)
