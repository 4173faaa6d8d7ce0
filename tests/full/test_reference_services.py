"""Every reference model at full size, through its service, with the reference profile and the README's settings.

Random weights say nothing about quality: these check the full-size code paths (shapes, formats, the P2P
processor in every attention block, anyres tiling, SAM ViT-H's two modes, dtype and device as configured).
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from spotdiff.imgdiff.render import side_by_side
from tests.full.conftest import Report, serve

pytestmark = pytest.mark.slow

SDXL_ATTENTION_LAYERS = 140  # self- and cross-attention of each of SDXL's 70 transformer blocks
SDXL_TRANSFORMER_BLOCKS = 70
CLIP_336_TILE_TOKENS = (336 // 14) ** 2  # one 336-px tile of LLaVA-NeXT's vision tower
CHECKSUM = re.compile(r"^sha256:[0-9a-f]{16}$")


def png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def pixels(encoded: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB"), dtype=np.int16)


def scene(size: int, colour: tuple[int, int, int] = (200, 60, 40)) -> Image.Image:
    image = Image.new("RGB", (size, size), (90, 140, 60))
    ImageDraw.Draw(image).rectangle((size // 4, size // 4, size // 2, size // 2), fill=colour)
    return image


def test_generation_sdxl_base_with_p2p_in_every_attention_block(full_dir: Path, report: Report) -> None:
    with serve("generation", full_dir, report) as service:
        info = service.info()
        assert (info["dtype"], info["device"]) == ("float32", "cpu")
        assert info["model_id"] == f"{full_dir}/stable-diffusion-xl-base-1.0"
        assert CHECKSUM.match(info["revision"])
        assert info["extra"]["transformer_blocks"] == SDXL_TRANSFORMER_BLOCKS
        assert info["extra"]["p2p_layers"] == SDXL_ATTENTION_LAYERS
        ask = {"source": "a photo of a dog on the grass", "target": "a photo of a cat on the grass", "seed": 7}
        steps = {"num_inference_steps": 2}
        edited = service.post("/v1/pairs", {**ask, **steps, "edit": "refine"}, "pair_256px_2_steps_refine")
        plain = service.post("/v1/pairs", {**ask, **steps, "edit": "none"}, "pair_256px_2_steps_plain")
    assert edited["params"]["height"] == edited["params"]["width"] == 256
    source, target = pixels(edited["source_image"]), pixels(edited["target_image"])
    assert source.shape == (256, 256, 3)
    # The edit writes the source's attention into the target branch only: the source is the very same image
    # either way (the CPU is deterministic), and the target is not the one SDXL draws for its own prompt. Random
    # attention is near uniform, so the change is small (0.1 of 255 on average here), but with stock attention
    # it would be nothing (and the info above says every one of the 140 layers has the P2P processor).
    assert np.array_equal(source, pixels(plain["source_image"]))
    assert np.abs(target - pixels(plain["target_image"])).mean() > 0.01


def test_captioning_llava_next_tiles_the_side_by_side_pair(full_dir: Path, report: Report) -> None:
    pair = side_by_side(scene(1024), scene(1024, (40, 60, 200)))
    assert pair.size == (2068, 1024)
    with serve("captioning", full_dir, report) as service:
        info = service.info()
        assert (info["dtype"], info["device"]) == ("float32", "cpu")
        assert info["extra"]["architecture"] == "LlavaNextForConditionalGeneration"
        assert info["extra"]["attn_implementation"] == "sdpa"
        answer = service.post("/v1/captions", {"image": png(pair), "prompt": "What differs?", "max_new_tokens": 2})
        service.measured["image_tokens"] = answer["image_tokens"]
    assert 1 <= answer["tokens"] <= 2
    # the base tile alone would be 576; anyres adds the grid's tiles (336x1008 for this 2:1 image) and newlines
    assert answer["image_tokens"] > 2 * CLIP_336_TILE_TOKENS


def test_regions_sam_vit_h_automatic_and_prompted(full_dir: Path, report: Report) -> None:
    image = png(scene(512))
    with serve("regions", full_dir, report) as service:
        info = service.info()
        assert (info["dtype"], info["device"]) == ("float32", "cpu")
        assert (info["extra"]["model_type"], info["extra"]["image_size"]) == ("vit_h", 1024)
        assert info["extra"]["amg"]["points_per_side"] == 32  # the reference's grid; the request asks for less
        automatic = service.post("/v1/proposals", {"image": image, "options": {"points_per_side": 2}})
        box = {"x1": 128, "y1": 128, "x2": 256, "y2": 256}
        prompted = service.post("/v1/prompted", {"image": image, "prompts": [{"box": box}]})
    assert (automatic["width"], automatic["height"]) == (512, 512)
    for proposal in automatic["proposals"]:
        assert 0 <= proposal["box"]["x1"] < proposal["box"]["x2"] <= 512
    (region,) = prompted["regions"]
    assert region["prompt"] == 0 and region["area"] >= 0 and 0 <= region["score"] <= 1.5


def test_similarity_quickgelu_clip_and_blip_itm_large(full_dir: Path, report: Report) -> None:
    image = png(scene(512))
    box = {"x1": 128, "y1": 128, "x2": 256, "y2": 256}
    with serve("similarity", full_dir, report) as service:
        info = service.info()
        assert info["model_id"] == "ViT-B-32-quickgelu"
        assert CHECKSUM.match(info["revision"]) and CHECKSUM.match(info["extra"]["blip_revision"])
        assert info["extra"]["image_text_scorer"] == "blip"
        answer = service.post(
            "/v1/cosine",
            {
                "images": {"scene": image},
                "pairs": [
                    {"a": {"image": "scene"}, "b": {"image": "scene", "box": box}},
                    {"a": {"image": "scene", "box": box}, "b": {"text": "a red square"}},
                ],
            },
        )
    assert answer["image_text_scorer"] == "blip"
    assert len(answer["scores"]) == 2 and all(-1.0001 <= score <= 1.0001 for score in answer["scores"])


def test_rewriting_vicuna_width_same_seed_same_rewrite(full_dir: Path, report: Report) -> None:
    with serve("rewriting", full_dir, report) as service:
        info = service.info()
        assert (info["dtype"], info["device"]) == ("float32", "cpu")
        assert info["model_id"] == f"{full_dir}/vicuna-7b-v1.5"
        ask = {"caption": "A dog on the grass", "seed": 3}
        first, again = service.post("/v1/rewrites", ask), service.post("/v1/rewrites", ask)
    assert first == again and first["tokens"] >= 1
