"""Wire models of the regions service (torch-free: clients import them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spotdiff.protocol.common import Box


class AmgOptions(BaseModel):
    """Per-request overrides of ``SamAutomaticMaskGenerator``'s parameters (absent: the service's settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points_per_side: int | None = Field(default=None, ge=1, le=128)
    points_per_batch: int | None = Field(default=None, ge=1, le=1024)
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    stability_score_offset: float | None = None
    box_nms_thresh: float | None = Field(default=None, ge=0, le=1)
    crop_n_layers: int | None = Field(default=None, ge=0, le=3)
    crop_nms_thresh: float | None = Field(default=None, ge=0, le=1)
    crop_overlap_ratio: float | None = Field(default=None, ge=0, lt=1)
    crop_n_points_downscale_factor: int | None = Field(default=None, ge=1)
    min_mask_region_area: int | None = Field(default=None, ge=0)


class Mask(BaseModel):
    """A binary mask as uncompressed RLE in COCO's column-major order (segment-anything's own encoding)."""

    size: list[int] = Field(description="[height, width]")
    counts: list[int]


class ProposeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, description="base64 PNG/JPEG")
    options: AmgOptions | None = None
    return_masks: bool = False


class Proposal(BaseModel):
    box: Box = Field(description="xyxy pixels")
    area: int = Field(description="mask area in pixels")
    predicted_iou: float
    stability_score: float
    mask: Mask | None = None


class ProposeResponse(BaseModel):
    proposals: list[Proposal]
    width: int
    height: int
    model_id: str


class Prompt(BaseModel):
    """A box, foreground/background points, or both; labels are 1 (foreground) or 0, all 1 when absent."""

    model_config = ConfigDict(extra="forbid")

    box: Box | None = None
    points: list[tuple[float, float]] | None = Field(default=None, min_length=1, max_length=64)
    labels: list[int] | None = None

    @model_validator(mode="after")
    def _something_to_segment(self) -> Prompt:
        if self.box is None and not self.points:
            raise ValueError("a prompt needs a box or points")
        if self.labels is not None:
            if self.points is None or len(self.labels) != len(self.points):
                raise ValueError("labels go one per point")
            if any(label not in (0, 1) for label in self.labels):
                raise ValueError("labels are 1 (foreground) or 0 (background)")
        return self


class PromptedRequest(BaseModel):
    """Segment one image at each prompt; the image is embedded once for all of them."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, description="base64 PNG/JPEG")
    prompts: list[Prompt] = Field(min_length=1, max_length=256)
    multimask: bool = Field(default=True, description="predict 3 masks per prompt and keep the best-scored")
    return_masks: bool = False


class PromptedRegion(BaseModel):
    prompt: int = Field(description="index of the prompt it answers")
    box: Box | None = Field(description="the mask's extent; none when the mask is empty")
    area: int
    score: float = Field(description="SAM's predicted IoU of the kept mask")
    mask: Mask | None = None


class PromptedResponse(BaseModel):
    regions: list[PromptedRegion]
    width: int
    height: int
    model_id: str
