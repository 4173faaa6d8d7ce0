"""Box arithmetic as the reference does it (+1 pixel areas, its string format, its growth and clamping)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spotdiff.protocol.common import Box


def iou(a: Box, b: Box) -> float:
    """Intersection over union with the reference's +1-pixel areas (`generate_bbox.py` ``iou_filter``)."""
    inter_w = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1) + 1)
    inter_h = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1) + 1)
    inter = inter_w * inter_h
    area_a = (a.x2 - a.x1 + 1) * (a.y2 - a.y1 + 1)
    area_b = (b.x2 - b.x1 + 1) * (b.y2 - b.y1 + 1)
    return inter / (area_a + area_b - inter)


def nms(boxes: Sequence[Box], iou_threshold: float) -> list[int]:
    """Greedy suppression in the given order: indices of the boxes kept (IoU <= threshold with every kept one)."""
    kept: list[int] = []
    for index, box in enumerate(boxes):
        if all(iou(box, boxes[other]) <= iou_threshold for other in kept):
            kept.append(index)
    return kept


def format_coordinate(value: float) -> str:
    """``round(v, 2)`` right-padded with zeros to 4 characters: 0.3 -> ``0.30``, 0 -> ``0.00``."""
    return str(round(value, 2)).ljust(4, "0")


def normalised_box(box: Box, width: int, height: int, *, float32: bool = False) -> str:
    """The box divided by the image size, written as the reference's prompts and records write it. ORIG
    divides Python floats (float64); Data-Juicer's boxes are float32 arrays, so it divides and rounds in float32
    (``float32=True``), which can write another last digit: 0.445 is 0.45 in float64 and 0.44 in float32."""
    pairs = ((box.x1, width), (box.y1, height), (box.x2, width), (box.y2, height))
    if float32:
        values = [float(np.float32(value) / np.float32(size)) for value, size in pairs]
    else:
        values = [value / size for value, size in pairs]
    return "[" + ", ".join(format_coordinate(value) for value in values) + "]"


def grown(box: Box, pixels: float, width: int, height: int) -> Box:
    """The box grown by ``pixels`` on each side and clamped to the image (the red box and label crops)."""
    return Box(
        x1=max(box.x1 - pixels, 0),
        y1=max(box.y1 - pixels, 0),
        x2=min(box.x2 + pixels, width),
        y2=min(box.y2 + pixels, height),
    )


def clipped(box: Box, width: int, height: int) -> Box | None:
    """The box cut at the image's right and bottom edges (a Box is never left of or above it), or None when it
    starts past them. A sliver narrower than a pixel is kept: whether its crop takes any pixel is
    `areas.crop_box`'s to say, as the reference truncates."""
    if box.x1 >= width or box.y1 >= height:
        return None
    return Box(x1=box.x1, y1=box.y1, x2=min(box.x2, width), y2=min(box.y2, height))


def from_centre(cx: float, cy: float, w: float, h: float) -> Box:
    """A box from Data-Juicer's centre-x, centre-y, width, height."""
    return Box(x1=cx - w / 2, y1=cy - h / 2, x2=cx + w / 2, y2=cy + h / 2)


def to_centre(box: Box) -> tuple[float, float, float, float]:
    """Data-Juicer's centre-x, centre-y, width, height of a box."""
    return ((box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2, box.width, box.height)
