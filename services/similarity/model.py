"""CLIP embeddings with open_clip; every request in a batch shares one image pass and one text pass."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from services.kit.placement import dtype_name, resolve_device, resolve_dtype, revision_of
from services.kit.runner import ModelInfo, ModelRunner, model_info
from services.similarity.jobs import CosineJob
from spotdiff.protocol.similarity import Operand, ScorePair
from spotdiff.settings import SimilaritySettings

FORWARD_CHUNK = 256  # the reference scores crops 256 at a time


def crop(image: Image.Image, box: list[float]) -> Image.Image:
    """The pixels of ``box`` with coordinates truncated to integers, as the reference crops (at least 1 px)."""
    x1, y1, x2, y2 = (int(value) for value in box)
    left, top = min(max(x1, 0), image.width - 1), min(max(y1, 0), image.height - 1)
    right, bottom = max(min(x2, image.width), left + 1), max(min(y2, image.height), top + 1)
    return image.crop((left, top, right, bottom))


Space = str  # "clip" or "blip": the embedding space a pair is scored in


def space_of(pair: ScorePair, text_scorer: str) -> Space:
    """Image-text pairs go to the configured text scorer; image-image and text-text pairs to CLIP."""
    mixed = (pair.a.text is None) != (pair.b.text is None)
    return "blip" if mixed and text_scorer == "blip" else "clip"


def _tag_of(model: str, pretrained: str) -> str | None:
    """The open_clip pretrained tag ``pretrained`` is or names: the tag itself, or a tag of the model that a
    weights path spells out (``clip-vit-b-32-openai/open_clip_model.safetensors`` is ``openai``)."""
    base = model.removesuffix("-quickgelu")
    tags = set(open_clip.list_pretrained_tags_by_model(base)) | set(
        open_clip.list_pretrained_tags_by_model(f"{base}-quickgelu")
    )
    if pretrained in tags:
        return pretrained
    words = set(re.split(r"[^a-z0-9_]+", pretrained.lower()))
    named = sorted(tag for tag in tags if tag.lower() in words)
    return named[0] if len(named) == 1 else None


def activation_mismatch(model: str, pretrained: str | None) -> str | None:
    """What is wrong when the model name's activation is not the one its pretrained weights were trained with,
    as open_clip's own pretrained configs say (OpenAI's CLIP needs QuickGELU: ``ViT-B-32-quickgelu``); a plain
    GELU model loads those weights without a word and every embedding is off."""
    if pretrained is None or model.startswith(("local-dir:", "hf-hub:")):
        return None
    tag = _tag_of(model, pretrained)
    if tag is None:
        return None
    base = model.removesuffix("-quickgelu")
    config = open_clip.get_pretrained_cfg(base, tag) or open_clip.get_pretrained_cfg(f"{base}-quickgelu", tag)
    wants_quick = bool(config.get("quick_gelu"))
    has_quick = bool((open_clip.get_model_config(model) or {}).get("quick_gelu"))
    if wants_quick and not has_quick:
        return (
            f"SPOTDIFF_SIMILARITY__MODEL={model}: the {tag!r} weights were trained with QuickGELU; use {base}-quickgelu"
        )
    if has_quick and not wants_quick:
        return f"SPOTDIFF_SIMILARITY__MODEL={model}: the {tag!r} weights were trained with GELU; use {base}"
    return None


def clip_revision(model: str, pretrained: str | None) -> str:
    """What names the CLIP weights exactly: a local checkpoint's or weights file's checksum (never its path), or
    open_clip's pretrained tag."""
    if pretrained is None:
        return revision_of(model)
    if Path(pretrained).exists():
        return revision_of(pretrained)
    return f"open_clip:{pretrained}"


class SimilarityModel(ModelRunner):
    """CLIP (open_clip) for every cosine, and optionally BLIP's ITC cosine for image-text pairs, as the
    reference matches crops to nouns and labels with ``BlipForImageTextRetrieval(use_itm_head=False)``."""

    def __init__(self, settings: SimilaritySettings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.revision = "unknown"
        self.blip: Any = None

    def load(self) -> None:
        problem = activation_mismatch(self.settings.model, self.settings.pretrained)
        if problem:
            raise ValueError(problem)
        model, _, preprocess = open_clip.create_model_and_transforms(
            self.settings.model, pretrained=self.settings.pretrained, device=self.device
        )
        self.model = model.to(dtype=self.dtype).eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(self.settings.model)
        self.revision = clip_revision(self.settings.model, self.settings.pretrained)
        if self.settings.text_scorer == "blip":
            from transformers import AutoProcessor, BlipForImageTextRetrieval

            blip = BlipForImageTextRetrieval.from_pretrained(self.settings.blip_model, dtype=self.dtype)
            self.blip = blip.to(self.device).eval()  # type: ignore[arg-type]
            self.blip_processor = AutoProcessor.from_pretrained(self.settings.blip_model)
            self.blip_revision = revision_of(self.settings.blip_model)

    def warmup(self) -> None:
        image = Image.new("RGB", (64, 64), (120, 160, 200))
        for space in ("clip", "blip") if self.blip is not None else ("clip",):
            self.embed_images(space, [image])
            self.embed_texts(space, ["a photo of a dog"])

    @torch.inference_mode()
    def embed_images(self, space: Space, images: list[Image.Image]) -> torch.Tensor:
        """L2-normalised image features, in chunks of ``FORWARD_CHUNK`` to bound activation memory."""
        chunks = []
        for start in range(0, len(images), FORWARD_CHUNK):
            batch = images[start : start + FORWARD_CHUNK]
            if space == "blip":
                pixels = self.blip_processor(images=batch, return_tensors="pt")["pixel_values"]
                hidden = self.blip.vision_model(pixel_values=pixels.to(self.device, self.dtype)).last_hidden_state
                features = F.normalize(self.blip.vision_proj(hidden[:, 0, :]), dim=-1)
            else:
                pixels = torch.stack([self.preprocess(image) for image in batch])
                features = self.model.encode_image(pixels.to(self.device, self.dtype), normalize=True)
            chunks.append(features.float())
        return torch.cat(chunks)

    @torch.inference_mode()
    def embed_texts(self, space: Space, texts: list[str]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(texts), FORWARD_CHUNK):
            batch = texts[start : start + FORWARD_CHUNK]
            if space == "blip":
                tokens = self.blip_processor(text=batch, return_tensors="pt", padding=True, truncation=True)
                hidden = self.blip.text_encoder(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                ).last_hidden_state
                features = F.normalize(self.blip.text_proj(hidden[:, 0, :]), dim=-1)
            else:
                features = self.model.encode_text(self.tokenizer(batch).to(self.device), normalize=True)
            chunks.append(features.float())
        return torch.cat(chunks)

    def cosine(self, jobs: list[CosineJob]) -> list[list[float]]:
        """Embed each distinct crop and text of all jobs once per space, then score every pair."""
        crop_index: dict[tuple[Space, int, str, tuple[float, ...] | None], int] = {}
        crops: dict[Space, list[Image.Image]] = {"clip": [], "blip": []}
        text_index: dict[tuple[Space, str], int] = {}
        texts: dict[Space, list[str]] = {"clip": [], "blip": []}

        def key(space: Space, job_number: int, operand: Operand) -> tuple[Any, ...]:
            if operand.text is not None:
                return (space, operand.text)
            assert operand.image is not None
            return (space, job_number, operand.image, None if operand.box is None else tuple(operand.box.as_list()))

        def register(space: Space, job_number: int, job: CosineJob, operand: Operand) -> None:
            if operand.text is not None:
                if (space, operand.text) not in text_index:
                    text_index[(space, operand.text)] = len(texts[space])
                    texts[space].append(operand.text)
                return
            index_key = key(space, job_number, operand)
            if index_key not in crop_index:
                crop_index[index_key] = len(crops[space])
                image = job.images[operand.image]  # type: ignore[index]
                crops[space].append(image if operand.box is None else crop(image, operand.box.as_list()))

        scorer = self.settings.text_scorer if self.blip is not None else "clip"
        for number, job in enumerate(jobs):
            for pair in job.pairs:
                space = space_of(pair, scorer)
                register(space, number, job, pair.a)
                register(space, number, job, pair.b)
        image_features = {space: self.embed_images(space, items) for space, items in crops.items() if items}
        text_features = {space: self.embed_texts(space, items) for space, items in texts.items() if items}

        def feature(space: Space, job_number: int, operand: Operand) -> torch.Tensor:
            if operand.text is not None:
                return text_features[space][text_index[(space, operand.text)]]
            return image_features[space][crop_index[key(space, job_number, operand)]]

        return [
            [
                float(feature(space, number, pair.a) @ feature(space, number, pair.b))
                for pair in job.pairs
                for space in (space_of(pair, scorer),)
            ]
            for number, job in enumerate(jobs)
        ]

    @property
    def image_text_scorer(self) -> str:
        return "blip" if self.blip is not None else "clip"

    def info(self) -> ModelInfo:
        extra: dict[str, Any] = {
            "pretrained": self.settings.pretrained,
            "max_items_per_request": self.settings.max_items_per_request,
            "image_text_scorer": self.image_text_scorer,
        }
        if self.blip is not None:
            extra["blip_model"] = self.settings.blip_model
            extra["blip_revision"] = self.blip_revision
        return model_info(
            "similarity",
            self.settings,
            revision=self.revision,
            dtype=dtype_name(self.dtype),
            device=self.device,
            extra=extra,
        )
