"""Oracle scorers from a synthetic pair's metadata, and the decision path they feed.

- proposals: the sprites' true boxes in each image, jittered copies of the swapped sprite's box and random
  boxes (what a proposer gives: the right box, near misses, distractors, noise);
- text match: does the crop hold the named sprite (most of the sprite inside, and the sprite a fair share of
  the crop, as a CLIP-like score would need): 0.9, else 0.1;
- crop similarity: SSIM of the two crops' luminance, standing in for the CLIP crop cosine.
The decisions themselves are spotdiff's own (`spotdiff.imgdiff.areas`), unchanged.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from bench.synthetic.dataset import SIZE, SyntheticPair
from spotdiff.imgdiff.areas import (
    CropPair,
    Semantics,
    area_scores_needed,
    candidates,
    decide_areas,
    zero_size_decision,
)
from spotdiff.imgdiff.prior import prior_boxes
from spotdiff.protocol.common import Box

_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
HOLDS_SHARE = 0.5  # the sprite fills at least this much of the crop: the crop is "of" it, as CLIP would see it
SSIM_SIDE = 12  # crops are compared at this size, so that a pixel of noise is not a difference
MAX_SHIFT = 4


def _intersection(a: Box, b: Box) -> float:
    return max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1)) * max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))


def _clamped(x1: float, y1: float, x2: float, y2: float) -> Box | None:
    x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(SIZE), x2), min(float(SIZE), y2)
    return Box(x1=x1, y1=y1, x2=x2, y2=y2) if x2 - x1 >= 2 and y2 - y1 >= 2 else None


def oracle_proposals(pair: SyntheticPair, seed: int = 0) -> tuple[list[Box], list[Box]]:
    rng = random.Random(f"{seed}:{pair.id}:proposals")
    sides: list[list[Box]] = []
    for objects in (pair.objects_1, pair.objects_2):
        boxes = [placed.box for placed in objects]
        if pair.changed is not None:
            swapped = objects[pair.changed].box
            for _ in range(2):
                dx, dy = (rng.uniform(-0.06, 0.06) * swapped.width for _ in range(2))
                grow = rng.uniform(-0.05, 0.08) * swapped.width
                jittered = _clamped(
                    swapped.x1 + dx - grow, swapped.y1 + dy - grow, swapped.x2 + dx + grow, swapped.y2 + dy + grow
                )
                if jittered is not None:
                    boxes.append(jittered)
        for _ in range(3):
            w, h = rng.uniform(30, 260), rng.uniform(30, 260)
            x, y = rng.uniform(0, SIZE - w), rng.uniform(0, SIZE - h)
            boxes.append(Box(x1=x, y1=y, x2=x + w, y2=y + h))
        sides.append(boxes)
    return sides[0], sides[1]


def holds(pair: SyntheticPair, image: int, box: Box, noun: str) -> float:
    """0.9 when the crop holds the named sprite, else 0.1."""
    for placed in pair.objects_1 if image == 1 else pair.objects_2:
        if placed.name != noun:
            continue
        inside = _intersection(box, placed.box)
        if inside >= 0.5 * placed.box.area and inside >= HOLDS_SHARE * box.area:
            return 0.9
    return 0.1


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    covariance = float(((a - a.mean()) * (b - b.mean())).mean())
    return float(
        ((2 * a.mean() * b.mean() + _C1) * (2 * covariance + _C2))
        / ((a.mean() ** 2 + b.mean() ** 2 + _C1) * (a.var() + b.var() + _C2))
    )


def crop_similarity(pair: SyntheticPair, box: Box) -> float:
    """SSIM of the two crops' luminance at ``SSIM_SIDE``², the best over shifts of up to ``MAX_SHIFT`` px.

    A CLIP embedding barely moves when its content shifts by a few pixels; plain SSIM does, so the oracle
    lets image 2's crop slide a little before comparing.
    """
    x1, y1, x2, y2 = int(box.x1), int(box.y1), max(int(box.x2), int(box.x1) + 1), max(int(box.y2), int(box.y1) + 1)

    def luminance(image: Image.Image, dx: int = 0, dy: int = 0) -> np.ndarray:
        region = (x1 + dx, y1 + dy, x2 + dx, y2 + dy)
        small = image.crop(region).convert("L").resize((SSIM_SIDE, SSIM_SIDE), Image.BILINEAR)
        return np.asarray(small, dtype=np.float64).ravel()

    first = luminance(pair.image_1)
    shifts = range(-MAX_SHIFT, MAX_SHIFT + 1, 2)
    return max(_ssim(first, luminance(pair.image_2, dx, dy)) for dx in shifts for dy in shifts)


def decide(
    pair: SyntheticPair,
    proposals_1: list[Box],
    proposals_2: list[Box],
    *,
    semantics: Semantics = "orig",
    text_min: float = 0.35,
    crop_max: float = 0.85,
    nms_iou: float = 0.5,
    max_boxes: int = 10,
) -> list[Box]:
    """The difference areas spotdiff keeps for these proposals, scored by the oracles: spotdiff's own candidates,
    zero-size rule and area decisions (`decide_areas`), with oracle scores by name in place of the services'."""
    proposals = candidates(proposals_1, proposals_2, SIZE, SIZE)
    if not zero_size_decision(proposals.zero_size, semantics):
        return []  # ORIG drops the whole pair when a crop is empty
    found = proposals.found
    scores = {
        key: crop_similarity(pair, found[key.candidate].box)
        if isinstance(key, CropPair)
        else holds(pair, key.image, found[key.candidate].box, key.word)
        for key in area_scores_needed(found, pair.source_objects, pair.target_objects, semantics)
    }
    selection = decide_areas(
        found,
        pair.source_objects,
        pair.target_objects,
        scores,
        text_min=text_min,
        crop_max=crop_max,
        nms_iou=nms_iou,
        max_boxes=max_boxes,
        semantics=semantics,
    )
    return [found[index].box for index in selection.kept]


def oracle_path(pair: SyntheticPair, semantics: Semantics = "orig") -> list[Box]:
    return decide(pair, *oracle_proposals(pair), semantics=semantics)


def prior_path(pair: SyntheticPair, semantics: Semantics = "orig") -> list[Box]:
    """The weight-free path: the difference prior proposes, the same oracle tests decide."""
    boxes = [prior.box for prior in prior_boxes(pair.image_1, pair.image_2)]
    return decide(pair, boxes, [], semantics=semantics)
