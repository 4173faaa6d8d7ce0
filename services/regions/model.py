"""segment-anything: automatic-mask proposals and prompted masks, reduced to boxes (masks on request).

The checkpoint loads through ``sam_model_registry[model_type](checkpoint=...)`` for the real ViT-H/L/B and
for the tiny model alike (it registers its own model type). ``SamPredictor`` is stateful (``set_image``, then
``predict``), so the service keeps one and uses it from its single model thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry
from segment_anything.utils.amg import mask_to_rle_pytorch

from services.kit.placement import dtype_name, resolve_device, resolve_dtype, revision_of
from services.kit.runner import ModelInfo, ModelRunner, model_info
from services.regions.jobs import PromptedJob, ProposeJob
from spotdiff.protocol.common import Box
from spotdiff.protocol.regions import AmgOptions, Mask, Prompt, PromptedRegion, Proposal
from spotdiff.settings import RegionsSettings

AMG_PARAMETERS = tuple(AmgOptions.model_fields)


def rle(mask: np.ndarray) -> Mask:
    encoded = mask_to_rle_pytorch(torch.from_numpy(mask[None]))[0]
    return Mask(size=[int(v) for v in encoded["size"]], counts=[int(v) for v in encoded["counts"]])


def mask_box(mask: np.ndarray) -> Box | None:
    """The extent of a binary mask as an xyxy box (pixel edges), or None when it is empty."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    top, bottom = np.nonzero(rows)[0][[0, -1]]
    left, right = np.nonzero(cols)[0][[0, -1]]
    return Box(x1=float(left), y1=float(top), x2=float(right + 1), y2=float(bottom + 1))


class EncoderIn(torch.nn.Module):
    """SAM's image encoder (nearly all of its weights and time) in another dtype; the prompt encoder and mask
    decoder stay float32, as segment-anything's mask post-processing expects."""

    def __init__(self, encoder: torch.nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.encoder = encoder.to(dtype)
        self.img_size = encoder.img_size
        self.dtype = dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.encoder(images.to(self.dtype))
        return features.float()


class RegionsModel(ModelRunner):
    def __init__(self, settings: RegionsSettings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self.revision = "unknown"
        self._generators: dict[AmgOptions, SamAutomaticMaskGenerator] = {}

    def load(self) -> None:
        from services.regions.tiny import register

        register()
        sam = sam_model_registry[self.settings.model_type](checkpoint=self.settings.model)
        if self.dtype != torch.float32:
            sam.image_encoder = EncoderIn(sam.image_encoder, self.dtype)
        self.sam = sam.to(self.device).eval()
        self.predictor = SamPredictor(self.sam)
        self.revision = revision_of(self.settings.model)

    def amg_parameters(self, options: AmgOptions) -> dict[str, Any]:
        chosen = options.model_dump(exclude_none=True)
        return {name: chosen.get(name, getattr(self.settings, name)) for name in AMG_PARAMETERS}

    def generator(self, options: AmgOptions) -> SamAutomaticMaskGenerator:
        """One mask generator per distinct set of options (they share the model)."""
        if options not in self._generators:
            self._generators[options] = SamAutomaticMaskGenerator(self.sam, **self.amg_parameters(options))
        return self._generators[options]

    def warmup(self) -> None:
        """Both paths once, cheaply: a 2x2-point automatic pass (one image embedding, not the 32x32 grid's
        minutes on a CPU) and one box prompt."""
        image = Image.new("RGB", (64, 64), (90, 140, 60))
        self.propose([ProposeJob(image, AmgOptions(points_per_side=2), False)])
        self.prompted([PromptedJob(image, [Prompt(box=Box(x1=8, y1=8, x2=40, y2=40))], True, False)])

    @torch.inference_mode()
    def propose(self, jobs: list[ProposeJob]) -> list[list[Proposal]]:
        """Automatic-mask proposals of each image, as boxes, in the generator's order."""
        return [self._propose_one(job) for job in jobs]

    def _propose_one(self, job: ProposeJob) -> list[Proposal]:
        proposals = []
        for mask in self.generator(job.options).generate(np.asarray(job.image)):
            x, y, w, h = (float(value) for value in mask["bbox"])
            if w < 1 or h < 1:
                continue
            proposals.append(
                Proposal(
                    box=Box(x1=x, y1=y, x2=x + w, y2=y + h),
                    area=int(mask["area"]),
                    predicted_iou=float(mask["predicted_iou"]),
                    stability_score=float(mask["stability_score"]),
                    mask=rle(mask["segmentation"]) if job.return_masks else None,
                )
            )
        return proposals

    @torch.inference_mode()
    def prompted(self, jobs: list[PromptedJob]) -> list[list[PromptedRegion]]:
        """One mask per prompt; each image is embedded once and every prompt reuses the embedding."""
        return [self._prompted_one(job) for job in jobs]

    def _prompted_one(self, job: PromptedJob) -> list[PromptedRegion]:
        self.predictor.set_image(np.asarray(job.image))
        regions = []
        for index, prompt in enumerate(job.prompts):
            points = None if prompt.points is None else np.asarray(prompt.points, dtype=np.float32)
            labels = None
            if points is not None:
                labels = np.asarray(prompt.labels or [1] * len(points), dtype=np.int64)
            box = None if prompt.box is None else np.asarray(prompt.box.as_list(), dtype=np.float32)
            masks, scores, _ = self.predictor.predict(
                point_coords=points, point_labels=labels, box=box, multimask_output=job.multimask
            )
            best = int(np.argmax(scores))
            mask = masks[best]
            regions.append(
                PromptedRegion(
                    prompt=index,
                    box=mask_box(mask),
                    area=int(mask.sum()),
                    score=float(scores[best]),
                    mask=rle(mask) if job.return_masks else None,
                )
            )
        self.predictor.reset_image()
        return regions

    def info(self) -> ModelInfo:
        return model_info(
            "regions",
            self.settings,
            revision=self.revision,
            dtype=dtype_name(self.dtype),
            device=self.device,
            extra={
                "model_type": self.settings.model_type,
                "image_size": int(self.sam.image_encoder.img_size),
                "amg": self.amg_parameters(AmgOptions()),
                "operations": ["proposals", "prompted"],
            },
        )
