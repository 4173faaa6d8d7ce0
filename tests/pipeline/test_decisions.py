"""The pipeline's own composition, decided by scores chosen per box, per object and per label.

Fake services answer over the real clients (httpx mock transports): proposals are fixed boxes, every cosine is
looked up by what it scores (which image, which crop, which word or label), and labels by image and box. The
scores are asymmetric on purpose: a pipeline that paired a crop with the wrong image's objects, read the
scores in another order, sorted the other way or skipped NMS keeps another box, and these tests say which.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from spotdiff.clients import ServiceClients
from spotdiff.imgdiff.boxes import normalised_box
from spotdiff.imgdiff.labels import label_crop_box
from spotdiff.pipeline import PairPipeline
from spotdiff.protocol import Box, CaptionPair, SampleStatus
from spotdiff.settings import Settings
from spotdiff.storage import ArtifactStore

SIZE = 256
Key = tuple[object, ...]


def png(colour: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


IMAGES = {1: png("red"), 2: png("blue")}


def xyxy(box: Box | dict) -> tuple[float, ...]:
    values = box.as_list() if isinstance(box, Box) else [box[k] for k in ("x1", "y1", "x2", "y2")]
    return tuple(round(float(value), 3) for value in values)


@dataclass
class Scene:
    """What the fake services answer: proposals per image, and scores by what they score."""

    proposals: dict[int, list[Box]]
    crop_cosines: dict[tuple[float, ...], float]  # candidate box -> cosine of its two crops
    crop_text: dict[tuple[int, tuple[float, ...], str], float]  # (image, box, word or label) -> score
    labels: dict[tuple[int, str], str]  # (image, normalised box in the prompt) -> label
    label_cosines: dict[tuple[str, str], float]
    pair_cosine: float = 0.95
    default: float = 0.1
    cross_replace_words: list[dict] = field(default_factory=list)  # what generation was asked
    generation_warnings: list[str] = field(default_factory=list)  # what generation says of the pair

    def cosine(self, pair: dict, images: dict[str, str]) -> float:
        a, b = pair["a"], pair["b"]
        if a.get("image") and b.get("image"):
            if a.get("box") is None:
                return self.pair_cosine
            return self.crop_cosines.get(xyxy(a["box"]), self.default)
        if a.get("image"):
            return self.crop_text.get((int(a["image"]), xyxy(a["box"]), b["text"]), self.default)
        return self.label_cosines.get((a["text"], b["text"]), 0.99)

    def transports(self) -> dict[str, httpx.MockTransport]:
        def info(service: str) -> httpx.Response:
            body = {
                "service": service,
                "model_id": f"fake-{service}",
                "revision": "0",
                "dtype": "float32",
                "device": "cpu",
                "max_batch_size": 8,
                "max_wait_ms": 0,
                "max_queue": 64,
                "extra": {},
            }
            return httpx.Response(200, json=body)

        def handler(service: str, answer: Callable[[dict], dict]) -> httpx.MockTransport:
            def handle(request: httpx.Request) -> httpx.Response:
                if request.url.path == "/v1/info":
                    return info(service)
                return httpx.Response(200, json=answer(json.loads(request.content)))

            return httpx.MockTransport(handle)

        def generate(body: dict) -> dict:
            self.cross_replace_words.append(body.get("cross_replace_words") or {})
            params = {
                "height": SIZE,
                "width": SIZE,
                "num_inference_steps": 2,
                "guidance_scale": 7.5,
                "edit": "refine",
                "cross_replace": 1.0,
                "cross_replace_words": {},
                "self_replace": 0.4,
            }
            return {
                "source_image": IMAGES[1],
                "target_image": IMAGES[2],
                "seed": 1,
                "params": params,
                "model_id": "fake",
                "revision": "0",
                "warnings": self.generation_warnings,
            }

        def propose(body: dict) -> dict:
            image = 1 if body["image"] == IMAGES[1] else 2
            found = [
                {"box": box.model_dump(), "area": 1, "predicted_iou": 1.0, "stability_score": 1.0}
                for box in self.proposals[image]
            ]
            return {"proposals": found, "width": SIZE, "height": SIZE, "model_id": "fake"}

        def cosine(body: dict) -> dict:
            scores = [self.cosine(pair, body["images"]) for pair in body["pairs"]]
            return {"scores": scores, "model_id": "fake", "image_text_scorer": "blip"}

        def caption(body: dict) -> dict:
            image = {IMAGES[1]: 1, IMAGES[2]: 2}.get(body["image"], 0)
            found = re.search(r"\[[^\]]*\]", body["prompt"])
            text = self.labels.get((image, found.group(0)), "something") if image and found else "a difference"
            return {"text": text, "tokens": 2, "model_id": "fake"}

        return {
            "generation": handler("generation", generate),
            "regions": handler("regions", propose),
            "similarity": handler("similarity", cosine),
            "captioning": handler("captioning", caption),
        }


def box(*values: float) -> Box:
    return Box.from_list(list(values))


A, B, C, D = box(10, 10, 100, 100), box(15, 15, 100, 100), box(150, 150, 250, 250), box(10, 150, 70, 220)


def scene(semantics: str) -> Scene:
    """Image 1 proposes A, B (overlapping A, more different) and C (crops alike); image 2 proposes D.

    ORIG pairs an image-1 box's own crop (image 1) with the source objects, and an image-2 box's own crop
    (image 2) with them too; DJ always pairs image 1's crop with the source, image 2's with the target."""
    grown = {name: label_crop_box(b, SIZE, SIZE, semantics) for name, b in {"B": B, "D": D}.items()}  # type: ignore[arg-type]
    f32 = semantics == "dj"
    return Scene(
        proposals={1: [A, B, C], 2: [D]},
        crop_cosines={xyxy(A): 0.5, xyxy(B): 0.3, xyxy(C): 0.9, xyxy(D): 0.6},
        crop_text={
            (1, xyxy(A), "dog"): 0.9,  # A: the dog in image 1 (ORIG passes; DJ needs the cat in image 2 too)
            (2, xyxy(B), "cat"): 0.9,  # B: the cat in image 2 (ORIG passes by it; DJ needs the dog in image 1)
            (1, xyxy(C), "dog"): 0.9,
            (2, xyxy(C), "cat"): 0.9,  # C: both, but its crops are alike
            (1, xyxy(D), "dog"): 0.9,
            (2, xyxy(D), "cat"): 0.9,  # D: passes DJ's pairing; ORIG pairs image 2 with dog, image 1 with cat
            (1, xyxy(grown["B"]), "a dog"): 0.9,
            (2, xyxy(grown["B"]), "a cat"): 0.9,
            (1, xyxy(grown["D"]), "a dog"): 0.9,
            (2, xyxy(grown["D"]), "a cat"): 0.9,
        },
        labels={
            (1, normalised_box(B, SIZE, SIZE, float32=f32)): "a dog",
            (2, normalised_box(B, SIZE, SIZE, float32=f32)): "a cat",
            (1, normalised_box(D, SIZE, SIZE, float32=f32)): "a dog",
            (2, normalised_box(D, SIZE, SIZE, float32=f32)): "a cat",
        },
        label_cosines={("a dog", "a cat"): 0.5},
    )


def clients_for(found: Scene) -> ServiceClients:
    return ServiceClients.over_transports(found.transports())


def reference_settings(semantics: str, **pipeline: object) -> Settings:
    """The reference profile's thresholds (nothing here loads a model)."""
    return Settings(profile="reference", pipeline={"semantics": semantics, "proposals": "amg", **pipeline})


async def run(found: Scene, settings: Settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    clients = clients_for(found)
    try:
        pipeline = await PairPipeline.connect(clients, ArtifactStore(str(tmp_path)), settings)
        return await pipeline.run(CaptionPair(id="p", source="A dog on the grass", target="A cat on the grass"))
    finally:
        await clients.aclose()


@pytest.mark.parametrize(("semantics", "kept"), [("orig", B), ("dj", D)])
async def test_each_semantics_keeps_the_box_its_scores_pick(semantics: str, kept: Box, tmp_path: Path) -> None:
    found = scene(semantics)
    record = await run(found, reference_settings(semantics), tmp_path)
    assert record.status is SampleStatus.ACCEPTED, record.rejection
    assert [region.box for region in record.regions] == [kept]
    region = record.regions[0]
    assert (region.label_source, region.label_target, region.label_cosine) == ("a dog", "a cat", 0.5)
    own, other = (
        (1, 2) if semantics == "dj" else (kept_image := (1 if kept in found.proposals[1] else 2), 3 - kept_image)
    )
    assert region.source_text_scores == {"dog": found.crop_text.get((own, xyxy(kept), "dog"), 0.1)}
    assert region.target_text_scores == {"cat": found.crop_text.get((other, xyxy(kept), "cat"), 0.1)}
    assert region.crop_cosine == found.crop_cosines[xyxy(kept)]
    assert found.cross_replace_words == [{"confetti": 0.8} if semantics == "dj" else {}]


async def test_orig_keeps_both_boxes_when_they_do_not_overlap(tmp_path: Path) -> None:
    found = scene("orig")
    found.proposals = {1: [A, C, box(120, 10, 200, 90)], 2: []}
    far = box(120, 10, 200, 90)
    found.crop_cosines[xyxy(far)] = 0.2
    found.crop_text[(1, xyxy(far), "dog")] = 0.9
    grown = label_crop_box(far, SIZE, SIZE, "orig")
    found.crop_text[(1, xyxy(grown), "a dog")] = 0.9
    found.crop_text[(2, xyxy(grown), "a cat")] = 0.9
    found.labels[(1, normalised_box(far, SIZE, SIZE))] = "a dog"
    found.labels[(2, normalised_box(far, SIZE, SIZE))] = "a cat"
    grown_a = label_crop_box(A, SIZE, SIZE, "orig")
    found.labels[(1, normalised_box(A, SIZE, SIZE))] = "a dog"
    found.labels[(2, normalised_box(A, SIZE, SIZE))] = "a cat"
    found.crop_text[(1, xyxy(grown_a), "a dog")] = 0.9
    found.crop_text[(2, xyxy(grown_a), "a cat")] = 0.9
    record = await run(found, reference_settings("orig"), tmp_path)
    assert [region.box for region in record.regions] == [far, A]  # most different first; C's crops are alike
    capped = await run(found, reference_settings("orig", max_boxes=1), tmp_path)
    assert [region.box for region in capped.regions] == [far]


@pytest.mark.parametrize("semantics", ["orig", "dj"])
async def test_a_label_that_does_not_match_its_own_crop_rejects_the_pair(semantics: str, tmp_path: Path) -> None:
    found = scene(semantics)
    # every label crop now matches the other image's label only: a pipeline that crossed them would pass
    for image, crop, text in list(found.crop_text):
        if text.startswith("a "):
            found.crop_text[(image, crop, text)] = 0.1
            found.crop_text[(3 - image, crop, text)] = 0.9
    record = await run(found, reference_settings(semantics), tmp_path)
    assert record.status is SampleStatus.REJECTED and record.rejection is not None
    assert (record.rejection.stage.value, record.rejection.reason) == ("region_labels", "labels_filtered")
    assert record.rejection.numbers["reasons"] == {"label_does_not_match_crop": 1}


async def test_orig_rejects_at_the_areas_with_each_boxs_reason(tmp_path: Path) -> None:
    found = scene("orig")
    found.crop_text = {key: value for key, value in found.crop_text.items() if key[1] not in (xyxy(A), xyxy(B))}
    record = await run(found, reference_settings("orig"), tmp_path)
    assert record.rejection is not None and record.rejection.reason == "no_difference_area"
    assert record.rejection.numbers["reasons"] == {"no_text_match": 3, "crops_alike": 1}  # A, B, D; and C


@pytest.mark.parametrize("pair_cosine", [0.95, 0.2])  # accepted, and rejected at the pair filter
async def test_what_generation_warns_of_stays_on_the_record(pair_cosine: float, tmp_path: Path) -> None:
    found = scene("orig")
    found.pair_cosine = pair_cosine
    found.generation_warnings = ["source prompt is over 77 tokens and was truncated"]
    record = await run(found, reference_settings("orig"), tmp_path)
    assert (record.status is SampleStatus.ACCEPTED) is (pair_cosine == 0.95), record.rejection
    assert record.provenance.warnings == ["generation: source prompt is over 77 tokens and was truncated"]
