"""segment-anything automatic masks, reduced to boxes.

The checkpoint loads through ``sam_model_registry[model_type](checkpoint=...)`` for the real ViT-H/L/B and
for the tiny model alike (it registers its own model type).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

from services.kit.placement import resolve_device, revision_of
from services.kit.runner import ModelInfo, ModelRunner, model_info
from services.regions.protocol import Proposal
from spotdiff.protocol.common import Box
from spotdiff.settings import RegionsSettings

AMG_PARAMETERS = (
    "points_per_side",
    "points_per_batch",
    "pred_iou_thresh",
    "stability_score_thresh",
    "stability_score_offset",
    "box_nms_thresh",
    "crop_n_layers",
    "crop_nms_thresh",
    "crop_overlap_ratio",
    "crop_n_points_downscale_factor",
    "min_mask_region_area",
)


class RegionsModel(ModelRunner):
    def __init__(self, settings: RegionsSettings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.revision = "unknown"

    def load(self) -> None:
        from services.regions.tiny import register

        register()
        sam = sam_model_registry[self.settings.model_type](checkpoint=self.settings.model)
        self.sam = sam.to(self.device).eval()
        self.generator = SamAutomaticMaskGenerator(
            self.sam, **{name: getattr(self.settings, name) for name in AMG_PARAMETERS}
        )
        self.revision = revision_of(self.settings.model)

    def warmup(self) -> None:
        self.propose([Image.new("RGB", (64, 64), (90, 140, 60))])

    @torch.inference_mode()
    def propose(self, images: list[Image.Image]) -> list[list[Proposal]]:
        """Automatic-mask proposals of each image, as boxes, in the generator's order."""
        return [self._propose_one(image) for image in images]

    def _propose_one(self, image: Image.Image) -> list[Proposal]:
        proposals = []
        for mask in self.generator.generate(np.asarray(image)):
            x, y, w, h = (float(value) for value in mask["bbox"])
            if w < 1 or h < 1:
                continue
            proposals.append(
                Proposal(
                    box=Box(x1=x, y1=y, x2=x + w, y2=y + h),
                    area=int(mask["area"]),
                    predicted_iou=float(mask["predicted_iou"]),
                    stability_score=float(mask["stability_score"]),
                )
            )
        return proposals

    def info(self) -> ModelInfo:
        return model_info(
            "regions",
            self.settings,
            revision=self.revision,
            dtype="float32",
            device=self.device,
            extra={
                "model_type": self.settings.model_type,
                "image_size": int(self.sam.image_encoder.img_size),
                "amg": {name: getattr(self.settings, name) for name in AMG_PARAMETERS},
            },
        )
