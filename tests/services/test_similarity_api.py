import asyncio

import pytest

from spotdiff.clients import ServiceClients
from spotdiff.protocol import Box
from spotdiff.protocol.similarity import CosineRequest, Operand, ScorePair

from .helpers import batches_larger_than_one, noise_image, png_b64

IMAGES = {"a": png_b64(noise_image(96, 64, 1)), "b": png_b64(noise_image(96, 64, 2))}


def image(name: str, box: list[float] | None = None) -> Operand:
    return Operand(image=name, box=Box.from_list(box) if box else None)


async def test_every_kind_of_pair_in_one_request(clients: ServiceClients) -> None:
    request = CosineRequest(
        images=IMAGES,
        pairs=[
            ScorePair(a=image("a"), b=image("a")),
            ScorePair(a=image("a"), b=image("b")),
            ScorePair(a=image("a", [0, 0, 32, 32]), b=image("b", [0, 0, 32, 32])),
            ScorePair(a=image("a"), b=Operand(text="a dog")),
            ScorePair(a=Operand(text="a dog"), b=Operand(text="a dog")),
            ScorePair(a=Operand(text="a dog"), b=Operand(text="a cat")),
        ],
    )
    scores = (await clients.similarity.cosine(request)).scores
    assert len(scores) == 6
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and scores[4] == pytest.approx(1.0, abs=1e-5)
    assert all(-1.0 - 1e-5 <= score <= 1.0 + 1e-5 for score in scores)
    assert scores[1] < 1.0 - 1e-6 and scores[5] < 1.0 - 1e-6


async def test_concurrent_requests_batch_without_changing_scores(clients: ServiceClients) -> None:
    requests = [
        CosineRequest(images=IMAGES, pairs=[ScorePair(a=image("a", [0, 0, 8 * k, 8 * k]), b=Operand(text=f"a {k}"))])
        for k in range(1, 9)
    ]
    single = [(await clients.similarity.cosine(request)).scores[0] for request in requests]
    before = batches_larger_than_one((await clients.similarity.http.get("/metrics")).text, "cosine")
    together = [answer.scores[0] for answer in await asyncio.gather(*map(clients.similarity.cosine, requests))]
    assert together == pytest.approx(single, abs=1e-5)
    after = batches_larger_than_one((await clients.similarity.http.get("/metrics")).text, "cosine")
    assert after > before  # they really shared a model call


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"images": {}, "pairs": [{"a": {"image": "x"}, "b": {"text": "t"}}]}, 422, "invalid_request"),
        ({"images": {}, "pairs": [{"a": {"text": "t", "image": "x"}, "b": {"text": "t"}}]}, 422, "invalid_request"),
        ({"images": {}, "pairs": []}, 422, "invalid_request"),
        ({"images": {"x": "%%%"}, "pairs": [{"a": {"image": "x"}, "b": {"text": "t"}}]}, 400, "invalid_base64"),
        (
            {
                "images": IMAGES,
                "pairs": [{"a": {"image": "a", "box": {"x1": 500, "y1": 0, "x2": 600, "y2": 9}}, "b": {"text": "t"}}],
            },
            422,
            "box_outside_image",
        ),
    ],
)
async def test_bad_requests_say_what_is_wrong(clients: ServiceClients, body: dict, status: int, code: str) -> None:
    response = await clients.similarity.http.post("/v1/cosine", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_image_text_pairs_use_blips_itc_cosine(clients: ServiceClients, settings) -> None:  # type: ignore[no-untyped-def]
    """The reference matches crops to nouns with BLIP's ITC cosine; CLIP scores the other pairs."""
    import torch
    from transformers import AutoProcessor, BlipForImageTextRetrieval

    from services.kit.codec import decode_image
    from services.similarity.model import crop

    request = CosineRequest(
        images=IMAGES,
        pairs=[
            ScorePair(a=image("a", [0, 0, 40, 30]), b=Operand(text="a dog")),
            ScorePair(a=Operand(text="a red car"), b=image("b")),
        ],
    )
    response = await clients.similarity.cosine(request)
    assert response.image_text_scorer == "blip"
    blip = BlipForImageTextRetrieval.from_pretrained(settings.similarity.blip_model).eval()
    processor = AutoProcessor.from_pretrained(settings.similarity.blip_model)
    pictures = [
        crop(decode_image(IMAGES["a"], max_pixels=10**6), [0, 0, 40, 30]),
        decode_image(IMAGES["b"], max_pixels=10**6),
    ]
    inputs = processor(images=pictures, text=["a dog", "a red car"], return_tensors="pt", padding=True)
    with torch.no_grad():
        itc = blip(**inputs, use_itm_head=False).itm_score
    assert response.scores == pytest.approx([float(itc[0, 0]), float(itc[1, 1])], abs=1e-5)


async def test_an_empty_text_is_scored_like_any_other(clients: ServiceClients) -> None:
    """An empty region label is scored, as the reference scores it (its text filters take any string)."""
    request = CosineRequest(
        images=IMAGES,
        pairs=[
            ScorePair(a=Operand(text=""), b=Operand(text="a cat")),
            ScorePair(a=image("a", [0, 0, 32, 32]), b=Operand(text="")),
            ScorePair(a=Operand(text=""), b=Operand(text="")),
        ],
    )
    scores = (await clients.similarity.cosine(request)).scores
    assert all(-1.0 - 1e-5 <= score <= 1.0 + 1e-5 for score in scores)
    assert scores[2] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("model", "pretrained", "wrong"),
    [
        ("ViT-B-32", "openai", "use ViT-B-32-quickgelu"),
        ("ViT-B-32", "/models/clip-vit-b-32-openai/open_clip_model.safetensors", "use ViT-B-32-quickgelu"),
        ("ViT-B-32-quickgelu", "openai", None),
        ("ViT-B-32-quickgelu", "/models/clip-vit-b-32-openai/open_clip_model.safetensors", None),
        ("ViT-B-32", "laion2b_s34b_b79k", None),
        ("ViT-B-32-quickgelu", "laion2b_s34b_b79k", "use ViT-B-32"),
        ("ViT-B-32", "/weights/mine.pt", None),  # no tag to go by
    ],
)
def test_a_model_name_and_its_pretrained_weights_agree_on_the_activation(
    model: str, pretrained: str, wrong: str | None
) -> None:
    """As open_clip's own pretrained configs say: OpenAI's weights need QuickGELU, which a plain name omits."""
    from services.similarity.model import activation_mismatch

    problem = activation_mismatch(model, pretrained)
    assert (problem is None) if wrong is None else (problem is not None and problem.endswith(wrong))


def test_the_default_and_the_fetched_clip_settings_agree_on_the_activation() -> None:
    from services.similarity.model import activation_mismatch
    from spotdiff.settings import SimilaritySettings
    from spotdiff.weights import load_manifest

    defaults = SimilaritySettings()
    assert activation_mismatch(defaults.model, defaults.pretrained) is None
    (clip,) = [source for source in load_manifest("reference").sources if "clip" in source.name]
    assert activation_mismatch(clip.settings["model"], clip.settings["pretrained"]) is None


def test_the_revision_of_a_weights_file_is_its_checksum(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.similarity.model import clip_revision

    weights = tmp_path / "open_clip_model.safetensors"
    weights.write_bytes(b"weights")
    revision = clip_revision("ViT-B-32-quickgelu", str(weights))
    assert revision.startswith("sha256:") and str(tmp_path) not in revision
    weights.write_bytes(b"other weights")
    assert clip_revision("ViT-B-32-quickgelu", str(weights)) != revision
    assert clip_revision("ViT-B-32-quickgelu", "openai") == "open_clip:openai"
