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

from spotdiff.clients import ServiceCallError, ServiceClients
from spotdiff.imgdiff.boxes import normalised_box
from spotdiff.imgdiff.labels import label_crop_box
from spotdiff.imgdiff.prompts import difference_caption_prompt, region_label_prompt
from spotdiff.imgdiff.render import red_boxed, side_by_side
from spotdiff.pipeline import PairFailed, PairPipeline
from spotdiff.pipeline.graph import FIRST_STEP, next_step
from spotdiff.pipeline.stages import Rejected
from spotdiff.pipeline.state import PairRun, Pictures
from spotdiff.protocol import Box, CaptionPair, ModelRef, Rejection, SampleStatus, Stage
from spotdiff.protocol.records import RewriteOrigin
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


def inset_box(box: dict, pixels: float) -> Box:
    x1, y1, x2, y2 = xyxy(box)
    return Box(x1=x1 + pixels, y1=y1 + pixels, x2=x2 - pixels, y2=y2 - pixels)


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
    images: dict[int, str] = field(default_factory=lambda: dict(IMAGES))  # what generation answers
    difference_captions: dict[str, str] = field(default_factory=dict)  # prompt -> caption of the composite
    requests: list[tuple[str, dict]] = field(default_factory=list)  # (route, body) of every request, in order
    inset: dict[int, float] = field(default_factory=lambda: {1: 1.0, 2: 2.0})  # SAM's answer: the prompt, inset

    def cosine(self, pair: dict, images: dict[str, str]) -> float:
        """A score by what it scores; a request that sends other images or crops two places fails the pair."""
        assert images == {"1": self.images[1], "2": self.images[2]}, "not this pair's images"
        a, b = pair["a"], pair["b"]
        if a.get("image") and b.get("image"):
            assert (a["image"], b["image"]) == ("1", "2") and a.get("box") == b.get("box"), "not one place"
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
                body = json.loads(request.content)
                self.requests.append((request.url.path, body))
                return httpx.Response(200, json=answer(body))

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
                "source_image": self.images[1],
                "target_image": self.images[2],
                "seed": body.get("seed", 1),
                "params": params,
                "model_id": "fake",
                "revision": "0",
                "warnings": self.generation_warnings,
            }

        def propose(body: dict) -> dict:
            if "prompts" in body:  # prompted: each box prompt answered by its box inset, then an empty mask
                inset = self.inset[1 if body["image"] == self.images[1] else 2]
                regions: list[dict] = [
                    {"prompt": index, "box": inset_box(prompt["box"], inset).model_dump(), "area": 1, "score": 1.0}
                    for index, prompt in enumerate(body["prompts"])
                ]
                regions.append({"prompt": 0, "box": None, "area": 0, "score": 0.0})
                return {"regions": regions, "width": SIZE, "height": SIZE, "model_id": "fake"}
            image = 1 if body["image"] == self.images[1] else 2
            found = [
                {"box": box.model_dump(), "area": 1, "predicted_iou": 1.0, "stability_score": 1.0}
                for box in self.proposals[image]
            ]
            return {"proposals": found, "width": SIZE, "height": SIZE, "model_id": "fake"}

        def cosine(body: dict) -> dict:
            scores = [self.cosine(pair, body["images"]) for pair in body["pairs"]]
            return {"scores": scores, "model_id": "fake", "image_text_scorer": "blip"}

        def caption(body: dict) -> dict:
            image = {self.images[1]: 1, self.images[2]: 2}.get(body["image"], 0)
            found = re.search(r"\[[^\]]*\]", body["prompt"])
            if image:
                text = self.labels.get((image, found.group(0)), "something") if found else "something"
            else:
                text = self.difference_captions.get(body["prompt"], "a difference")
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


PAIR = CaptionPair(id="p", source="A dog on the grass", target="A cat on the grass", seed=864)


async def run_over(clients: ServiceClients, settings: Settings, tmp_path: Path, pair: CaptionPair = PAIR):  # type: ignore[no-untyped-def]
    """The pair through every step over ``clients``, which are closed after."""
    try:
        pipeline = await PairPipeline.connect(clients, ArtifactStore(str(tmp_path)), settings)
        return await pipeline.run(pair)
    finally:
        await clients.aclose()


async def run(found: Scene, settings: Settings, tmp_path: Path, pair: CaptionPair = PAIR):  # type: ignore[no-untyped-def]
    return await run_over(clients_for(found), settings, tmp_path, pair)


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
    assert record.status is SampleStatus.REJECTED
    assert record.rejection == Rejection(
        stage=Stage.REGION_LABELS,
        reason="labels_filtered",
        message="no region kept labels that differ and match their crops",
        numbers={"labelled": 1, "reasons": {"label_does_not_match_crop": 1}},
    )


async def test_orig_rejects_at_the_areas_with_each_boxs_reason(tmp_path: Path) -> None:
    found = scene("orig")
    found.crop_text = {key: value for key, value in found.crop_text.items() if key[1] not in (xyxy(A), xyxy(B))}
    record = await run(found, reference_settings("orig"), tmp_path)
    assert record.rejection == Rejection(
        stage=Stage.DIFFERENCE_AREAS,
        reason="no_difference_area",
        message="no proposal passed the area tests",
        numbers={"candidates": 4, "reasons": {"no_text_match": 3, "crops_alike": 1}},  # A, B, D; and C
    )


@pytest.mark.parametrize("pair_cosine", [0.95, 0.2])  # accepted, and rejected at the pair filter
async def test_what_generation_warns_of_stays_on_the_record(pair_cosine: float, tmp_path: Path) -> None:
    found = scene("orig")
    found.pair_cosine = pair_cosine
    found.generation_warnings = ["source prompt is over 77 tokens and was truncated"]
    record = await run(found, reference_settings("orig"), tmp_path)
    assert (record.status is SampleStatus.ACCEPTED) is (pair_cosine == 0.95), record.rejection
    assert record.provenance.warnings == ["generation: source prompt is over 77 tokens and was truncated"]


def decoded(data: str | bytes) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data) if isinstance(data, str) else data)).convert("RGB")


FAR = box(120, 10, 200, 90)
LABELS = {FAR: ("a brown dog", "a grey cat"), A: ("a small dog", "a big cat")}


def two_regions() -> Scene:
    """ORIG keeps FAR (most different) and A, each with labels of its own in each image and its own caption."""
    found = scene("orig")
    found.proposals = {1: [A, C, FAR], 2: []}
    found.crop_cosines[xyxy(FAR)] = 0.2
    found.crop_text[(1, xyxy(FAR), "dog")] = 0.9
    for kept, (first, second) in LABELS.items():
        grown = label_crop_box(kept, SIZE, SIZE, "orig")
        found.labels[(1, normalised_box(kept, SIZE, SIZE))] = first
        found.labels[(2, normalised_box(kept, SIZE, SIZE))] = second
        found.crop_text[(1, xyxy(grown), first)] = 0.9
        found.crop_text[(2, xyxy(grown), second)] = 0.8
        found.difference_captions[difference_caption_prompt(first, second)] = f"the {first[2:]} became a {second[2:]}"
    found.label_cosines = {LABELS[FAR]: 0.4, LABELS[A]: 0.6}
    return found


async def test_an_accepted_record_holds_what_each_service_said_for_each_region(tmp_path: Path) -> None:
    found = two_regions()
    settings = reference_settings("orig", label_max_new_tokens=33, caption_max_new_tokens=99)
    origin = RewriteOrigin(caption=PAIR.source, rewriter="lexicon", number=0, seed=5, replaced="dog", replacement="cat")
    record = await run(found, settings, tmp_path, PAIR.model_copy(update={"rewrite": origin}))
    store = ArtifactStore(str(tmp_path))
    assert record.status is SampleStatus.ACCEPTED and record.rejection is None
    assert (record.pair_id, record.source, record.target) == ("p", PAIR.source, PAIR.target)
    assert (record.source_objects, record.target_objects) == (["dog"], ["cat"])
    assert (record.width, record.height, record.pair_cosine, record.proposals) == (SIZE, SIZE, 0.95, 3)
    assert record.image_source is not None and record.image_target is not None
    assert (store.get_bytes(record.image_source), store.get_bytes(record.image_target)) == tuple(
        base64.b64decode(found.images[image]) for image in (1, 2)
    )
    assert [region.box for region in record.regions] == [FAR, A]  # most different first
    for region, crop_cosine, label_cosine in zip(record.regions, (0.2, 0.5), (0.4, 0.6), strict=True):
        first, second = LABELS[region.box]
        assert (region.box_normalised, region.source_image) == (normalised_box(region.box, SIZE, SIZE), 1)
        assert (region.crop_cosine, region.text_match, region.label_cosine) == (crop_cosine, 0.9, label_cosine)
        assert (region.source_text_scores, region.target_text_scores) == ({"dog": 0.9}, {"cat": 0.1})
        assert (region.label_source, region.label_target) == (first, second)
        assert region.difference_caption == f"the {first[2:]} became a {second[2:]}"
        for key, image in ((region.boxed_image_source, 1), (region.boxed_image_target, 2)):
            assert key is not None
            assert (
                decoded(store.get_bytes(key)).tobytes() == red_boxed(decoded(found.images[image]), region.box).tobytes()
            )
    provenance = record.provenance
    assert (provenance.seed, provenance.profile, provenance.rewrite, provenance.warnings) == (
        864,
        "reference",
        origin,
        [],
    )
    services = ("generation", "similarity", "regions", "captioning")
    assert provenance.models == {service: ModelRef(id=f"fake-{service}", revision="0") for service in services}
    assert provenance.settings["pipeline"] == settings.pipeline.model_dump()
    assert provenance.settings["generation"]["num_inference_steps"] == 2
    steps = ("objects", "generate", "pair_filter", "proposals", "difference_areas", "region_labels")
    assert set(record.timings) == {f"{step}_s" for step in (*steps, "difference_caption")}


async def test_each_caption_request_is_the_regions_own(tmp_path: Path) -> None:
    """Labels are asked of each image in turn with the box's prompt; each difference caption of the composite of
    its own region's red-boxed images, with its labels; each with its own token limit."""
    found = two_regions()
    await run(found, reference_settings("orig", label_max_new_tokens=33, caption_max_new_tokens=99), tmp_path)
    asked = [body for route, body in found.requests if route == "/v1/captions"]
    labelling = [body for body in asked if body["image"] in found.images.values()]
    assert [(body["image"], body["prompt"]) for body in labelling] == [
        (found.images[image], region_label_prompt(kept, SIZE, SIZE, "orig")) for kept in (FAR, A) for image in (1, 2)
    ]
    describing = [body for body in asked if body not in labelling]
    assert {body["max_new_tokens"] for body in labelling} == {33} and {
        body["max_new_tokens"] for body in describing
    } == {99}
    images = [decoded(found.images[image]) for image in (1, 2)]
    for kept, (first, second) in LABELS.items():
        (body,) = [body for body in describing if body["prompt"] == difference_caption_prompt(first, second)]
        composite = side_by_side(red_boxed(images[0], kept), red_boxed(images[1], kept))
        assert decoded(body["image"]).tobytes() == composite.tobytes()


def rejected_scene(case: str) -> tuple[Scene, str]:
    found = scene("orig")
    semantics = "orig"
    if case == "too_different":
        found.pair_cosine = 0.2
    elif case == "no_proposals":
        found.proposals = {1: [], 2: []}
    elif case == "zero_size":
        found.proposals = {1: [box(10.2, 10, 10.9, 20), A], 2: []}
    elif case in ("too_small", "too_large"):
        semantics = "orig" if case == "too_small" else "dj"
        kept = box(10, 10, 20, 20) if case == "too_small" else box(0, 0, 100, 100)  # 100 and 10,000 px of 65,536
        found.proposals = {1: [kept], 2: []}
        found.crop_cosines[xyxy(kept)] = 0.3
        found.crop_text[(1, xyxy(kept), "dog")] = found.crop_text[(2, xyxy(kept), "cat")] = 0.9
    return found, semantics


def no_box_to_label(why: str) -> Rejection:
    """The rejection of a pair whose one difference area is of a size that is not labelled."""
    return Rejection(
        stage=Stage.REGION_LABELS,
        reason="no_box_to_label",
        message="no difference area has a size that gets labelled",
        numbers={"areas": 1, "reasons": {why: 1}},
    )


@pytest.mark.parametrize(
    ("case", "rejection"),
    [
        (
            "too_different",
            Rejection(
                stage=Stage.PAIR_FILTER,
                reason="pair_too_different",
                message="the image pair is outside the similarity window",
                numbers={"pair_cosine": 0.2, "min": 0.9, "max": 0.98, "semantics": "orig"},
            ),
        ),
        (
            "no_proposals",
            Rejection(
                stage=Stage.PROPOSALS,
                reason="no_proposals",
                message="no proposal with a pixel on either image",
                numbers={"candidates": 0, "zero_size_boxes": 0},
            ),
        ),
        (
            "zero_size",
            Rejection(
                stage=Stage.DIFFERENCE_AREAS,
                reason="zero_size_crop",
                message="a proposal crops to no pixels",
                numbers={"zero_size_boxes": 1},
            ),
        ),
        ("too_small", no_box_to_label("box_too_small")),
        ("too_large", no_box_to_label("box_too_large")),
    ],
)
async def test_a_rejected_record_says_where_why_and_by_what_numbers(
    case: str, rejection: Rejection, tmp_path: Path
) -> None:
    found, semantics = rejected_scene(case)
    record = await run(found, reference_settings(semantics), tmp_path)
    assert record.status is SampleStatus.REJECTED and record.regions == []
    assert record.rejection == rejection
    assert record.image_source is not None and record.pair_cosine == found.pair_cosine  # what is known is kept
    assert record.proposals == (None if case == "too_different" else sum(map(len, found.proposals.values())))


@pytest.mark.parametrize(("semantics", "accepted"), [("orig", False), ("dj", True)])
async def test_labels_at_the_cosine_maximum_are_alike_for_orig_only(
    semantics: str, accepted: bool, tmp_path: Path
) -> None:
    found = scene(semantics)
    found.label_cosines = {("a dog", "a cat"): 0.85}  # the reference's label_cosine_max
    record = await run(found, reference_settings(semantics), tmp_path)
    assert (record.status is SampleStatus.ACCEPTED) is accepted
    if not accepted:
        assert record.rejection is not None and record.rejection.numbers == {
            "labelled": 1,
            "reasons": {"labels_alike": 1},
        }


async def test_dj_asks_for_labels_with_its_float32_box(tmp_path: Path) -> None:
    """Data-Juicer writes the box of its label prompt in float32: 0.445 is 0.44 there and 0.45 for ORIG."""
    found = scene("dj")
    odd = box(113.92, 150, 170, 220)  # x1 / 256 = 0.445
    assert normalised_box(odd, SIZE, SIZE, float32=True) != normalised_box(odd, SIZE, SIZE)
    found.proposals = {1: [odd], 2: []}
    found.crop_cosines[xyxy(odd)] = 0.3
    found.crop_text[(1, xyxy(odd), "dog")] = found.crop_text[(2, xyxy(odd), "cat")] = 0.9
    found.labels[(1, normalised_box(odd, SIZE, SIZE, float32=True))] = "a dog"
    found.labels[(2, normalised_box(odd, SIZE, SIZE, float32=True))] = "a cat"
    found.crop_text[(1, xyxy(odd), "a dog")] = found.crop_text[(2, xyxy(odd), "a cat")] = 0.9
    record = await run(found, reference_settings("dj"), tmp_path)
    assert record.status is SampleStatus.ACCEPTED, record.rejection
    assert (record.regions[0].label_source, record.regions[0].label_target) == ("a dog", "a cat")


def changed_images(*squares: tuple[int, int, int]) -> dict[int, str]:
    """A grey pair whose second image has a red square (x, y, side) at each place given."""
    first = Image.new("RGB", (SIZE, SIZE), (128, 128, 128))
    second = first.copy()
    for x, y, side in squares:
        second.paste((255, 0, 0), (x, y, x + side, y + side))
    encoded = []
    for picture in (first, second):
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode())
    return {1: encoded[0], 2: encoded[1]}


async def proposed(found: Scene, settings: Settings, tmp_path: Path) -> PairRun:
    """The pair taken through the proposals step."""
    clients = clients_for(found)
    try:
        pipeline = await PairPipeline.connect(clients, ArtifactStore(str(tmp_path)), settings)
        state = PairRun(pair=PAIR)
        for step in (Stage.GENERATE, Stage.PAIR_FILTER, Stage.PROPOSALS):
            assert await pipeline.step(state, step) is None
        return state
    finally:
        await clients.aclose()


async def test_prior_proposals_are_the_change_maps_boxes_at_the_block_and_count_asked(tmp_path: Path) -> None:
    found = scene("orig")
    found.images = changed_images((40, 40, 40), (180, 170, 30))
    state = await proposed(found, reference_settings("orig", proposals="prior", prior_block=16), tmp_path)
    boxes = [candidate.box for candidate in state.candidates]
    assert box(32, 32, 80, 80) in boxes and box(176, 160, 224, 208) in boxes  # each square, in whole 16-px blocks
    assert all(value % 16 == 0 for found_box in boxes for value in found_box.as_list())
    assert {candidate.source_image for candidate in state.candidates} == {1} and state.proposals == len(boxes)
    assert not [route for route, _ in found.requests if route in ("/v1/proposals", "/v1/prompted")]
    one = await proposed(found, reference_settings("orig", proposals="prior", prior_max_boxes=1), tmp_path)
    assert [candidate.box for candidate in one.candidates] == [box(40, 40, 80, 80)]  # the larger change, 4-px blocks


async def test_prior_sam_prompts_sam_with_the_prior_boxes_on_each_image(tmp_path: Path) -> None:
    found = scene("orig")
    found.images = changed_images((40, 40, 40))
    state = await proposed(found, reference_settings("orig", proposals="prior_sam"), tmp_path)
    prompted = [body for route, body in found.requests if route == "/v1/prompted"]
    assert sorted(body["image"] for body in prompted) == sorted(found.images.values())
    assert all([xyxy(prompt["box"]) for prompt in body["prompts"]] == [(40, 40, 80, 80)] for body in prompted)
    # SAM's answers, image 1's then image 2's; the empty mask is no proposal
    assert [(candidate.source_image, candidate.box) for candidate in state.candidates] == [
        (1, box(41, 41, 79, 79)),
        (2, box(42, 42, 78, 78)),
    ]
    assert state.proposals == 2


async def test_an_unchanged_pair_has_no_prior_proposal(tmp_path: Path) -> None:
    found = scene("orig")
    found.images = changed_images()
    record = await run(found, reference_settings("orig", proposals="prior"), tmp_path)
    assert record.rejection == Rejection(
        stage=Stage.PROPOSALS, reason="no_change_found", message="the change map shows no region that changed"
    )


def refusing(found: Scene, service: str, status: int) -> ServiceClients:
    """Clients whose ``service`` answers every call with ``status`` and the error envelope, and gives up at once."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/info":
            return found.transports()[service].handle_request(request)  # type: ignore[return-value]
        return httpx.Response(status, json={"error": {"code": "nope", "message": "not now", "details": None}})

    transports: dict[str, httpx.AsyncBaseTransport] = {**found.transports(), service: httpx.MockTransport(handle)}
    clients = ServiceClients.over_transports(transports)
    getattr(clients, service).retries = 0
    return clients


async def test_a_service_that_refuses_ends_the_pair_and_one_that_is_away_fails_it(tmp_path: Path) -> None:
    found = scene("orig")
    record = await run_over(refusing(found, "regions", 422), reference_settings("orig"), tmp_path)
    assert record.rejection is not None
    assert (record.rejection.stage, record.rejection.reason) == (Stage.PROPOSALS, "service_refused")
    assert record.rejection.numbers == {"service": "regions", "status": 422, "code": "nope"}
    assert record.rejection.message == "regions: 422 nope: not now"

    with pytest.raises(PairFailed) as failed:
        await run_over(refusing(found, "generation", 503), reference_settings("orig"), tmp_path)
    assert isinstance(failed.value.cause, ServiceCallError) and failed.value.cause.status == 503
    failure = failed.value.record.rejection
    assert failure is not None and (failure.stage, failure.reason) == (Stage.GENERATE, "service_unavailable")
    assert (failure.message, failure.numbers) == (
        "generation: 503 nope: not now",
        {"service": "generation", "status": 503, "code": "nope"},
    )
    assert str(failed.value).startswith("p: generate: generation: 503 nope")


async def test_scores_missing_from_an_answer_fail_the_pair_instead_of_deciding_it(tmp_path: Path) -> None:
    found = scene("orig")
    transports = found.transports()

    def short(request: httpx.Request) -> httpx.Response:
        response = transports["similarity"].handle_request(request)
        if request.url.path != "/v1/cosine":
            return response  # type: ignore[return-value]
        body = json.loads(response.read())  # type: ignore[union-attr]
        return httpx.Response(200, json={**body, "scores": body["scores"][:-1]})

    clients = ServiceClients.over_transports({**transports, "similarity": httpx.MockTransport(short)})
    with pytest.raises(PairFailed) as failed:
        await run_over(clients, reference_settings("orig"), tmp_path)
    assert isinstance(failed.value.cause, ValueError)
    assert failed.value.record.rejection == Rejection(
        stage=Stage.PAIR_FILTER,
        reason="internal_error",
        message="ValueError: the similarity service answered 0 scores for 1 pairs",
    )


async def test_a_pair_taken_step_by_step_from_its_stored_state_ends_as_the_embedded_run(tmp_path: Path) -> None:
    """A worker holds no images between steps: each step starts from the pair's state as JSON and reads the
    images back from the store. The record is the one the embedded run writes."""
    found = two_regions()
    settings = reference_settings("orig")
    embedded = await run(found, settings, tmp_path / "embedded")
    clients = clients_for(found)
    try:
        store = ArtifactStore(str(tmp_path / "steps"))
        state, step, record = PairRun(pair=PAIR), FIRST_STEP, None
        while record is None:
            pipeline = await PairPipeline.connect(clients, store, settings)  # a task of its own
            state = PairRun.model_validate_json(state.model_dump_json())
            record = await pipeline.step(state, step)
            step = next_step(step) or step
    finally:
        await clients.aclose()
    assert record.model_dump(exclude={"timings"}) == embedded.model_dump(exclude={"timings"})


async def test_objects_given_with_a_pair_win_and_none_changed_is_rejected_before_any_image(tmp_path: Path) -> None:
    found = scene("orig")
    given = PAIR.model_copy(update={"source_objects": ["dog"]})
    record = await run(found, reference_settings("orig"), tmp_path, given)
    assert (record.source_objects, record.target_objects) == (["dog"], [])
    found = scene("orig")
    given = PAIR.model_copy(update={"target_objects": ["cat"]})
    record = await run(found, reference_settings("orig"), tmp_path, given)
    assert (record.source_objects, record.target_objects) == ([], ["cat"])
    found = scene("orig")
    same = CaptionPair(id="p", source="A dog on the grass", target="A dog lying on the grass")
    record = await run(found, reference_settings("orig"), tmp_path, same)
    assert record.rejection == Rejection(
        stage=Stage.OBJECTS,
        reason="no_changed_objects",
        message="the captions differ in no object word",
        numbers={"source_objects": [], "target_objects": []},
    )
    assert found.requests == [] and record.image_source is None  # nothing was generated


@pytest.mark.parametrize(("semantics", "accepted"), [("orig", False), ("dj", True)])
async def test_a_pair_at_the_window_minimum_is_too_different_for_orig_only(
    semantics: str, accepted: bool, tmp_path: Path
) -> None:
    found = scene(semantics)
    found.pair_cosine = 0.9  # the reference's pair_cosine_min: ORIG's window is open, DJ's closed
    record = await run(found, reference_settings(semantics), tmp_path)
    assert (record.status is SampleStatus.ACCEPTED) is accepted, record.rejection


@pytest.mark.parametrize("empty", [1, 2])
async def test_the_difference_caption_is_asked_with_the_wording_and_labels_even_an_empty_one(
    empty: int, tmp_path: Path
) -> None:
    """DJ passes a box whose label came back empty; its caption prompt holds the empty label as it is."""
    found = scene("dj")
    found.labels[(empty, normalised_box(D, SIZE, SIZE, float32=True))] = ""
    record = await run(found, reference_settings("dj", caption_wording="corrected"), tmp_path)
    assert record.status is SampleStatus.ACCEPTED, record.rejection
    labels = ("", "a cat") if empty == 1 else ("a dog", "")
    assert (record.regions[0].label_source, record.regions[0].label_target) == labels
    prompts = [body["prompt"] for route, body in found.requests if route == "/v1/captions"]
    assert prompts[-1] == difference_caption_prompt(*labels, "corrected")


def test_a_rejection_is_an_exception_with_its_message() -> None:
    rejection = Rejection(stage=Stage.PROPOSALS, reason="no_proposals", message="nothing to crop")
    assert str(Rejected(rejection)) == "nothing to crop" and Rejected(rejection).rejection is rejection


def png_of(mode: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_pairs_pictures_are_rgb_of_one_size() -> None:
    pictures = Pictures.from_png(png_of("L", (8, 6)), png_of("RGBA", (8, 6)))
    assert [image.mode for image in pictures.images] == ["RGB", "RGB"] and pictures.size == (8, 6)
    assert pictures.encoded == tuple(base64.b64encode(png_of(mode, (8, 6))).decode() for mode in ("L", "RGBA"))
    with pytest.raises(ValueError, match=r"differ in size: \(8, 6\) and \(6, 8\)"):
        Pictures.from_png(png_of("RGB", (8, 6)), png_of("RGB", (6, 8)))
