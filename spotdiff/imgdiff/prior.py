"""The difference prior: where do the two images of a pair differ, without any model weights?

A Prompt-to-Prompt pair shares its initial latent, so most of the two images line up pixel for pixel and a
change map says where the object was swapped. The map combines, per block of pixels, the mean absolute
colour difference and a structural difference (1 - SSIM of the block's luminance), so that both a recoloured
region and a reshaped one show. Blocks above a threshold (Otsu's, unless given) are grouped into 8-connected
components; each component's extent is a candidate box, scored by the change it holds.

The boxes serve as proposals of their own and as box prompts for SAM in place of a full point grid. A pixel
difference cannot tell a restyled background from an object change: that is what the area tests after it do.

An image is a PIL image (any mode, compared as RGB), an integer RGB array (8-bit, 0 to 255) or a float RGB array
in [0, 1]. Only whole blocks are compared: a strip along the right or bottom edge narrower than a block is not.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from spotdiff.imgdiff.boxes import iou
from spotdiff.protocol.common import Box

_SSIM_C1, _SSIM_C2 = 0.01**2, 0.03**2


@dataclass(frozen=True)
class PriorBox:
    box: Box
    score: float  # the change the component holds (sum of its blocks' change)


def _as_float(image: Image.Image | NDArray[np.generic]) -> NDArray[np.floating[Any]]:
    """The image in [0, 1]: integer pixels are 8-bit and divided by 255, float pixels are taken as they are (in
    single precision: half precision would drown SSIM's constants). The scale follows the type, not
    the values, so that a dark 8-bit image (no pixel over 1) is not mistaken for a float one."""
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if np.issubdtype(array.dtype, np.integer):
        return array / np.float32(255)
    return np.asarray(array, dtype=np.float32)


def _blocks(plane: NDArray[np.floating[Any]], block: int) -> NDArray[np.floating[Any]]:
    """(rows, cols, block*block) views of a plane cropped to whole blocks."""
    rows, cols = plane.shape[0] // block, plane.shape[1] // block
    cropped = plane[: rows * block, : cols * block]
    return cropped.reshape(rows, block, cols, block).transpose(0, 2, 1, 3).reshape(rows, cols, block * block)


def change_map(
    image_1: Image.Image | NDArray[np.generic], image_2: Image.Image | NDArray[np.generic], *, block: int = 8
) -> NDArray[np.float32]:
    """Per-block change in [0, 1], one value per whole ``block`` x ``block`` square: the larger of the colour
    difference, min(1, 2 x the mean absolute difference over the block's pixels and channels), and the
    structural difference, (1 - SSIM) / 2 of the block's luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B), SSIM
    taken over the whole block with the usual constants (K1 = 0.01, K2 = 0.03, data range 1)."""
    first, second = _as_float(image_1), _as_float(image_2)
    if first.shape != second.shape:
        raise ValueError(f"the two images differ in size: {first.shape} and {second.shape}")
    colour = _blocks(np.abs(first - second).mean(axis=2), block).mean(axis=2)
    weights = np.array([0.299, 0.587, 0.114])
    luma_1, luma_2 = _blocks(first @ weights, block), _blocks(second @ weights, block)
    mean_1, mean_2 = luma_1.mean(axis=2), luma_2.mean(axis=2)
    var_1, var_2 = luma_1.var(axis=2), luma_2.var(axis=2)
    covariance = ((luma_1 - mean_1[..., None]) * (luma_2 - mean_2[..., None])).mean(axis=2)
    ssim = ((2 * mean_1 * mean_2 + _SSIM_C1) * (2 * covariance + _SSIM_C2)) / (
        (mean_1**2 + mean_2**2 + _SSIM_C1) * (var_1 + var_2 + _SSIM_C2)
    )
    # SSIM lies in (-1, 1], so the structural difference needs no clipping: below 1, and any rounding under 0
    # loses to the colour difference, which is never negative
    structural = (1 - ssim) / 2
    result: NDArray[np.float32] = np.maximum(np.minimum(colour * 2, 1), structural).astype(np.float32)
    return result


def otsu_threshold(values: NDArray[np.float32], bins: int = 64) -> float:
    """The threshold that best splits ``values`` into two classes (Otsu, 1979), over a histogram of ``bins``
    bins: the centre of the bin after which the split falls, as scikit-image's ``threshold_otsu`` has it. An
    empty array gives 0 and a constant one its value."""
    flat = values.ravel()
    if flat.size == 0 or float(flat.max()) == float(flat.min()):
        return float(flat.max(initial=0.0))
    histogram, edges = np.histogram(flat, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    # a split after each bin but the last: the first bin holds the minimum and the last the maximum, so
    # neither class is ever empty
    weight, mass = np.cumsum(histogram), np.cumsum(histogram * centres)
    weight_low, mass_low = weight[:-1], mass[:-1]
    weight_high, mass_high = weight[-1] - weight_low, mass[-1] - mass_low
    between = weight_low * weight_high * (mass_low / weight_low - mass_high / weight_high) ** 2
    return float(centres[int(np.argmax(between))])


def components(mask: NDArray[np.bool_]) -> list[list[tuple[int, int]]]:
    """8-connected groups of true cells (row, col), in scan order of their first cell."""
    seen: set[tuple[int, int]] = set()
    groups: list[list[tuple[int, int]]] = []
    rows, cols = mask.shape
    for start_row, start_col in np.argwhere(mask).tolist():
        if (start_row, start_col) in seen:
            continue
        group: list[tuple[int, int]] = []
        queue = deque([(start_row, start_col)])
        seen.add((start_row, start_col))
        while queue:
            row, col = queue.popleft()
            group.append((row, col))
            for d_row in (-1, 0, 1):
                for d_col in (-1, 0, 1):
                    r, c = row + d_row, col + d_col
                    if 0 <= r < rows and 0 <= c < cols and mask[r, c] and (r, c) not in seen:
                        seen.add((r, c))
                        queue.append((r, c))
        groups.append(group)
    return groups


def default_block(width: int, height: int) -> int:
    """Blocks of 1/64 of the shorter side (16 px at 1024²), never under 4 px."""
    return max(4, min(width, height) // 64)


def prior_boxes(
    image_1: Image.Image | NDArray[np.generic],
    image_2: Image.Image | NDArray[np.generic],
    *,
    block: int | None = None,
    levels: tuple[float, ...] = (0.0, 0.25, 0.5),
    min_blocks: int = 2,
    max_boxes: int = 10,
) -> list[PriorBox]:
    """Candidate boxes (pixels, xyxy) where the pair changes, the most clearly changed first.

    Components of the blocks whose change is above a cut are taken at several cuts, from Otsu's threshold up
    towards the strongest change (``levels`` are fractions of that distance), so that an object changed inside
    a larger restyled area still gets a box of its own. A component of fewer than ``min_blocks`` blocks is no
    candidate. Near-duplicate boxes (IoU > 0.8) are kept once, the first found; boxes rank by their mean change
    (ties in the order found), and the first ``max_boxes`` are returned.
    """
    height, width = np.asarray(image_1).shape[:2]
    size = block or default_block(width, height)
    changes = change_map(image_1, image_2, block=size)
    otsu = otsu_threshold(changes)
    peak = float(changes.max(initial=0.0))
    found: list[tuple[float, PriorBox]] = []
    for level in levels:
        cut = otsu + (peak - otsu) * level
        for group in components(changes > cut):
            if len(group) < min_blocks:
                continue
            rows = [row for row, _ in group]
            cols = [col for _, col in group]
            box = Box(
                x1=min(cols) * size,
                y1=min(rows) * size,
                x2=(max(cols) + 1) * size,
                y2=(max(rows) + 1) * size,
            )
            total = float(sum(changes[row, col] for row, col in group))
            if all(iou(box, kept.box) <= 0.8 for _, kept in found):
                found.append((total / len(group), PriorBox(box, total)))
    found.sort(key=lambda ranked: -ranked[0])
    return [prior for _, prior in found[:max_boxes]]
