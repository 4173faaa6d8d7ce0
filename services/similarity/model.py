"""CLIP embeddings with open_clip; every request in a batch shares one image pass and one text pass."""

from __future__ import annotations

from typing import TYPE_CHECKING

import open_clip
import torch
from PIL import Image

from services.kit.placement import dtype_name, resolve_device, resolve_dtype, revision_of
from services.kit.runner import ModelInfo, ModelRunner, model_info
from spotdiff.settings import SimilaritySettings

if TYPE_CHECKING:
    from services.similarity.api import CosineJob
    from services.similarity.protocol import Operand

FORWARD_CHUNK = 256  # the reference scores crops 256 at a time


def crop(image: Image.Image, box: list[float]) -> Image.Image:
    """The pixels of ``box`` with coordinates truncated to integers, as the reference crops (at least 1 px)."""
    x1, y1, x2, y2 = (int(value) for value in box)
    left, top = min(max(x1, 0), image.width - 1), min(max(y1, 0), image.height - 1)
    right, bottom = max(min(x2, image.width), left + 1), max(min(y2, image.height), top + 1)
    return image.crop((left, top, right, bottom))


class SimilarityModel(ModelRunner):
    def __init__(self, settings: SimilaritySettings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.revision = "unknown"

    def load(self) -> None:
        model, _, preprocess = open_clip.create_model_and_transforms(
            self.settings.model, pretrained=self.settings.pretrained, device=self.device
        )
        self.model = model.to(dtype=self.dtype).eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(self.settings.model)
        self.revision = (
            revision_of(self.settings.model)
            if self.settings.pretrained is None
            else (f"open_clip:{self.settings.pretrained}")
        )

    def warmup(self) -> None:
        image = Image.new("RGB", (64, 64), (120, 160, 200))
        self.embed_images([image])
        self.embed_texts(["a photo of a dog"])

    @torch.inference_mode()
    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        """L2-normalised image features, in chunks of ``FORWARD_CHUNK`` to bound activation memory."""
        chunks = []
        for start in range(0, len(images), FORWARD_CHUNK):
            pixels = torch.stack([self.preprocess(image) for image in images[start : start + FORWARD_CHUNK]])
            chunks.append(self.model.encode_image(pixels.to(self.device, self.dtype), normalize=True).float())
        return torch.cat(chunks)

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(texts), FORWARD_CHUNK):
            tokens = self.tokenizer(texts[start : start + FORWARD_CHUNK]).to(self.device)
            chunks.append(self.model.encode_text(tokens, normalize=True).float())
        return torch.cat(chunks)

    def cosine(self, jobs: list[CosineJob]) -> list[list[float]]:
        """Embed each distinct crop and text of all jobs once, then score every pair."""
        crop_index: dict[tuple[int, str, tuple[float, ...] | None], int] = {}
        crops: list[Image.Image] = []
        text_index: dict[str, int] = {}

        def register(job_number: int, job: CosineJob, operand: Operand) -> None:
            if operand.text is not None:
                text_index.setdefault(operand.text, len(text_index))
                return
            assert operand.image is not None
            box = tuple(operand.box.as_list()) if operand.box is not None else None
            key = (job_number, operand.image, box)
            if key not in crop_index:
                crop_index[key] = len(crops)
                image = job.images[operand.image]
                crops.append(image if box is None else crop(image, list(box)))

        for number, job in enumerate(jobs):
            for pair in job.pairs:
                register(number, job, pair.a)
                register(number, job, pair.b)
        image_features = self.embed_images(crops) if crops else None
        text_features = self.embed_texts(list(text_index)) if text_index else None

        def feature(job_number: int, operand: Operand) -> torch.Tensor:
            if operand.text is not None:
                assert text_features is not None
                return text_features[text_index[operand.text]]
            assert image_features is not None and operand.image is not None
            box = tuple(operand.box.as_list()) if operand.box is not None else None
            return image_features[crop_index[(job_number, operand.image, box)]]

        return [
            [float(feature(number, pair.a) @ feature(number, pair.b)) for pair in job.pairs]
            for number, job in enumerate(jobs)
        ]

    def info(self) -> ModelInfo:
        return model_info(
            "similarity",
            self.settings,
            revision=self.revision,
            dtype=dtype_name(self.dtype),
            device=self.device,
            extra={
                "pretrained": self.settings.pretrained,
                "max_items_per_request": self.settings.max_items_per_request,
            },
        )
