"""Oracle scorers from a synthetic pair's metadata, and the decision path they feed.

- proposals: the sprites' true boxes in each image, jittered copies of the swapped sprite's box and random
  boxes (what a proposer gives: the right box, near misses, distractors, noise);
- text match: does the crop hold the named sprite (most of the sprite inside, and the sprite a fair share of
  the crop, as a CLIP-like score would need): 0.9, else 0.1;
- crop similarity: SSIM of the two crops' luminance, standing in for the CLIP crop cosine.
The oracles answer as the services would (`oracle_clients`) and `PairPipeline` itself runs the pair up to its
difference areas: the decisions and their composition are the pipeline's own.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import tempfile
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.synthetic.dataset import SIZE, SyntheticPair
from spotdiff.clients import ServiceClients
from spotdiff.imgdiff.areas import Semantics
from spotdiff.pipeline import STEPS, PairPipeline, PairRun
from spotdiff.protocol import CaptionPair, Stage
from spotdiff.protocol.common import Box
from spotdiff.settings import SERVICE_NAMES, Settings
from spotdiff.storage import ArtifactStore

_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
HOLDS_SHARE = 0.5  # the sprite fills at least this much of the crop: the crop is "of" it, as CLIP would see it
SSIM_SIDE = 12  # crops are compared at this size, so that a pixel of noise is not a difference
MAX_SHIFT = 4
PAIR_COSINE = 0.95  # every synthetic pair is inside the similarity window: the benchmark is about the areas


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


def _png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def oracle_clients(pair: SyntheticPair) -> ServiceClients:
    """The four services as the oracles answer them, behind the real clients (httpx mock transports):
    generation returns the pair's images, regions the oracle proposals, similarity the oracle scores (a pair
    inside the similarity window, SSIM for a crop pair, `holds` for a crop against a word). Captioning is not
    needed: the benchmark stops after the difference areas."""
    encoded = {1: _png_b64(pair.image_1), 2: _png_b64(pair.image_2)}
    proposals = dict(zip((1, 2), oracle_proposals(pair), strict=True))
    params = {"height": SIZE, "width": SIZE, "num_inference_steps": 1, "guidance_scale": 7.5, "edit": "refine",
              "cross_replace": 1.0, "cross_replace_words": {}, "self_replace": 0.4}  # fmt: skip

    def score(operands: dict[str, Any]) -> float:
        a, b = operands["a"], operands["b"]
        box = Box(**a["box"]) if a.get("box") else None
        if b.get("image") is not None:
            return PAIR_COSINE if box is None else crop_similarity(pair, box)
        assert box is not None, "the areas stage scores crops, not whole images, against words"
        return holds(pair, int(a["image"]), box, b["text"])

    def answer(service: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == "/v1/info":
            return {"service": service, "model_id": "oracle", "revision": "0", "dtype": "none", "device": "none",
                    "max_batch_size": 1, "max_wait_ms": 0, "max_queue": 1, "extra": {}}  # fmt: skip
        if service == "generation":
            return {"source_image": encoded[1], "target_image": encoded[2], "seed": 0, "params": params,
                    "model_id": "oracle", "revision": "0"}  # fmt: skip
        if service == "regions":
            image = 1 if body["image"] == encoded[1] else 2
            found = [{"box": box.model_dump(), "area": 1, "predicted_iou": 1.0, "stability_score": 1.0}
                     for box in proposals[image]]  # fmt: skip
            return {"proposals": found, "width": SIZE, "height": SIZE, "model_id": "oracle"}
        if service == "similarity":
            return {"scores": [score(p) for p in body["pairs"]], "model_id": "oracle", "image_text_scorer": "oracle"}
        raise AssertionError(f"the benchmark does not call {service}")

    def transport(service: str) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content) if request.content else {}
            return httpx.Response(200, json=answer(service, request.url.path, body))

        return httpx.MockTransport(handle)

    return ServiceClients.over_transports({name: transport(name) for name in SERVICE_NAMES})


async def pipeline_areas(pair: SyntheticPair, settings: Settings) -> list[Box]:
    """The boxes `PairPipeline` keeps at its difference-area step for this pair, with oracle services: the
    pipeline's own steps, composition and decisions, so the benchmark's numbers are the pipeline's."""
    clients = oracle_clients(pair)
    with tempfile.TemporaryDirectory(prefix="spotdiff-synthetic-") as folder:
        try:
            pipeline = await PairPipeline.connect(clients, ArtifactStore(folder), settings)
            run = PairRun(
                pair=CaptionPair(
                    id=pair.id,
                    source=pair.source,
                    target=pair.target,
                    source_objects=pair.source_objects,
                    target_objects=pair.target_objects,
                )
            )
            for step in STEPS[: STEPS.index(Stage.DIFFERENCE_AREAS) + 1]:
                if await pipeline.step(run, step) is not None:
                    return []  # rejected on the way (no area, a zero-size crop under ORIG ...)
            return [area.candidate.box for area in run.areas]
        finally:
            await clients.aclose()


def bench_settings(semantics: Semantics, proposals: str) -> Settings:
    """The reference profile's thresholds (ORIG's text match 0.35 and crop 0.85 for both semantics, so that
    the two compare on the same scores), nothing loaded."""
    return Settings(
        profile="reference",
        pipeline={"semantics": semantics, "proposals": proposals, "text_match_min": 0.35, "crop_cosine_max": 0.85},
    )


def oracle_path(pair: SyntheticPair, semantics: Semantics = "orig") -> list[Box]:
    """The oracle proposals through the pipeline (``proposals = amg``: the regions service proposes)."""
    return asyncio.run(pipeline_areas(pair, bench_settings(semantics, "amg")))


def prior_path(pair: SyntheticPair, semantics: Semantics = "orig") -> list[Box]:
    """The weight-free path: the pipeline's own difference prior proposes (``proposals = prior``)."""
    return asyncio.run(pipeline_areas(pair, bench_settings(semantics, "prior")))
