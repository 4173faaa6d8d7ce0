"""The tiny checkpoints load through each family's real loading code and reproduce the built models.

"Reload equals build": a checkpoint read back by `from_pretrained` / `local-dir:` / the SAM registry
must give exactly the outputs of the model that was built in memory from the same seed. If it does
not, a weight, buffer or config field was lost on disk and tests would silently run another model.
"""

# ruff: noqa: E402  (the environment is set and missing model extras are skipped before the imports)
import os

# Before anything imports huggingface_hub: a hub lookup must fail at once, not hang on the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path

import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")
pytest.importorskip("segment_anything")

import numpy as np
import open_clip
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import load_file
from segment_anything import SamPredictor, sam_model_registry
from transformers import AutoModelForImageTextToText, AutoProcessor

from services import tiny
from services.captioning import tiny as captioning_tiny
from services.generation import tiny as generation_tiny
from services.regions import tiny as regions_tiny
from services.similarity import tiny as similarity_tiny

SEED = 0


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny.build_all(tmp_path_factory.mktemp("tiny") / "checkpoints", seed=SEED)


def _random_image(seed: int, height: int, width: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_build_all_writes_a_complete_set(tiny_set: dict[str, Path]) -> None:
    root = tiny_set["sdxl"].parent
    assert set(tiny_set) == {"sdxl", "clip", "blip", "sam", "llava_next", "qwen2_vl", "llama"}
    assert tiny_set["sam"] == root / "sam" / "sam_tiny.pth"
    assert all(path.exists() for path in tiny_set.values())
    assert (root / "COMPLETE").read_text().strip() == tiny.FORMAT_VERSION
    assert tiny.is_complete(root)
    assert [p.name for p in root.parent.iterdir() if p.name.startswith(".")] == []  # staging removed
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert size < 60 * 2**20


def test_is_complete_rejects_missing_or_stale_sets(tmp_path: Path, tiny_set: dict[str, Path]) -> None:
    assert not tiny.is_complete(tmp_path / "absent")
    assert not tiny.is_complete(tmp_path)
    partial = tmp_path / "partial"
    (partial / "sdxl").mkdir(parents=True)
    (partial / "COMPLETE").write_text(tiny.FORMAT_VERSION)
    assert not tiny.is_complete(partial)
    stale = tmp_path / "stale"
    for name in ("sdxl", "clip", "llava_next"):
        (stale / name).mkdir(parents=True)
    (stale / "sam").mkdir()
    (stale / "sam" / "sam_tiny.pth").write_bytes(tiny_set["sam"].read_bytes())
    (stale / "COMPLETE").write_text("spotdiff-tiny-v0")
    assert not tiny.is_complete(stale)


def test_sdxl_reload_equals_build(tiny_set: dict[str, Path]) -> None:
    path = tiny_set["sdxl"]
    assert (path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    for folder in ("tokenizer", "tokenizer_2"):
        assert sorted(f.name for f in (path / folder).iterdir()) == [
            "merges.txt",
            "tokenizer_config.json",
            "vocab.json",
        ]
    loaded = StableDiffusionXLPipeline.from_pretrained(path, local_files_only=True)
    built = generation_tiny.build_pipeline(SEED)

    assert loaded.default_sample_size * loaded.vae_scale_factor == 128
    scheduler = loaded.scheduler.config
    assert type(loaded.scheduler).__name__ == "EulerDiscreteScheduler"
    assert (scheduler.beta_start, scheduler.beta_end, scheduler.beta_schedule) == (0.00085, 0.012, "scaled_linear")
    assert (scheduler.steps_offset, scheduler.timestep_spacing) == (1, "leading")
    assert loaded.tokenizer_2.pad_token == "!" and loaded.tokenizer_2.pad_token_id == 0
    assert loaded.tokenizer.pad_token_id == generation_tiny.CLIP_EOS_ID
    assert loaded.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]

    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(SEED))
    outputs = [
        pipe("a cat on a sofa", height=64, width=64, num_inference_steps=2, latents=latents, output_type="np")
        for pipe in (built, loaded)
    ]
    assert outputs[0].images.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(outputs[0].images, outputs[1].images)


def test_clip_tokenizer_files_match_open_clip(tmp_path: Path) -> None:
    vocab_path, merges_path = generation_tiny.write_clip_bpe_tokenizer_files(tmp_path)
    assert vocab_path.stat().st_size > 0 and merges_path.read_text().startswith("#version: 0.2\n")
    from transformers import CLIPTokenizer

    hf_tokenizer = CLIPTokenizer.from_pretrained(tmp_path, model_max_length=77)
    clip_tokenizer = open_clip.get_tokenizer("ViT-B-32")
    for text in ["A photo of a CAT, on the sofa!", "héllo wörld 🙂 it's 2 dogs"]:
        ids = clip_tokenizer([text])[0]
        assert hf_tokenizer(text).input_ids == ids[ids.nonzero()].flatten().tolist()


def test_clip_reload_equals_build(tiny_set: dict[str, Path]) -> None:
    path = tiny_set["clip"]
    assert sorted(f.name for f in path.iterdir()) == ["open_clip_config.json", "open_clip_model.safetensors"]
    loaded, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + str(path))
    loaded.eval()  # open_clip returns train mode; eval switches attention to the path the built model uses
    tokenizer = open_clip.get_tokenizer("local-dir:" + str(path))
    built = similarity_tiny.build_model(SEED)

    images = torch.stack([preprocess(_random_image(i, 48 + 20 * i, 80)) for i in range(2)])
    texts = tokenizer(["a cat on a sofa", "a red car"])
    assert images.shape == (2, 3, 64, 64) and texts.shape == (2, 77)
    with torch.no_grad():
        for encode in ("encode_image", "encode_text"):
            inputs = images if encode == "encode_image" else texts
            expected, actual = getattr(built, encode)(inputs), getattr(loaded, encode)(inputs)
            assert expected.shape == (2, 32)
            torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_blip_reload_equals_build(tiny_set: dict[str, Path]) -> None:
    from transformers import BlipForImageTextRetrieval

    path = tiny_set["blip"]
    processor = AutoProcessor.from_pretrained(path)
    loaded = BlipForImageTextRetrieval.from_pretrained(path).eval()
    built, _ = similarity_tiny.build_blip_model_and_processor(SEED)
    inputs = processor(
        images=[_random_image(5, 50, 70), _random_image(6, 90, 40)],
        text=["a dog on the grass", "a red car"],
        return_tensors="pt",
        padding=True,
    )
    assert processor.tokenizer.unk_token_id not in inputs["input_ids"].tolist()[0]  # words are in the vocabulary
    with torch.no_grad():
        expected = built(**inputs, use_itm_head=False).itm_score
        actual = loaded(**inputs, use_itm_head=False).itm_score
    assert expected.shape == (2, 2)  # ITC cosine: every image against every text
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_sam_reload_equals_build(tiny_set: dict[str, Path]) -> None:
    regions_tiny.register()
    regions_tiny.register()  # idempotent
    loaded = sam_model_registry[regions_tiny.TINY_MODEL_TYPE](checkpoint=str(tiny_set["sam"]))
    built = regions_tiny.build_model(SEED)

    image = np.asarray(_random_image(3, 120, 200))
    embeddings = []
    for sam in (built, loaded):
        predictor = SamPredictor(sam)
        predictor.set_image(image)
        embeddings.append(predictor.get_image_embedding())
    assert embeddings[0].shape == (1, regions_tiny.PROMPT_DIM, 16, 16)
    torch.testing.assert_close(embeddings[1], embeddings[0], rtol=0, atol=0)


def test_llava_next_reload_equals_build(tiny_set: dict[str, Path]) -> None:
    path = tiny_set["llava_next"]
    processor = AutoProcessor.from_pretrained(path)
    loaded = AutoModelForImageTextToText.from_pretrained(path)
    built, built_processor = captioning_tiny.build_model_and_processor(SEED)
    assert type(loaded).__name__ == "LlavaNextForConditionalGeneration"
    assert processor.tokenizer.padding_side == "left"

    prompts = [
        "Please provide a clear description for this region: [0.12, 0.30, 0.56, 0.78].",
        "What is in the red box?",
    ]
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
            add_generation_prompt=True,
        )
        for prompt in prompts
    ]
    assert texts[1] == "USER: <image>\nWhat is in the red box? ASSISTANT:"
    images = [_random_image(4, 50, 90), _random_image(5, 120, 70)]
    inputs = processor(images=images, text=texts, padding=True, return_tensors="pt")
    built_inputs = built_processor(images=images, text=texts, padding=True, return_tensors="pt")
    for key in inputs:
        torch.testing.assert_close(inputs[key], built_inputs[key], rtol=0, atol=0)
    unknown = processor.tokenizer.unk_token_id
    assert unknown not in inputs["input_ids"][0].tolist()  # every prompt word is in the vocabulary
    assert inputs["attention_mask"][:, -1].all() and not inputs["attention_mask"].all()  # left padding

    outputs = [model.generate(**inputs, max_new_tokens=8, do_sample=False) for model in (built, loaded)]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)
    captions = processor.batch_decode(outputs[1][:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    vocabulary = set(captioning_tiny.vocabulary())
    for caption in captions:
        assert caption == caption.strip() and all(word in vocabulary for word in caption.split(" ") if word)


def test_same_seed_writes_identical_weights(tmp_path: Path, tiny_set: dict[str, Path]) -> None:
    rebuilt = similarity_tiny.build(tmp_path / "clip", seed=SEED)
    weights = "open_clip_model.safetensors"
    assert (rebuilt / weights).read_bytes() == (tiny_set["clip"] / weights).read_bytes()

    other_seed = similarity_tiny.build(tmp_path / "clip_seed1", seed=SEED + 1)
    first, second = load_file(tiny_set["clip"] / weights), load_file(other_seed / weights)
    assert not torch.equal(first["visual.conv1.weight"], second["visual.conv1.weight"])

    # torch.save stamps each file with a random serialization id, so compare SAM's tensors, not bytes.
    sam_path = regions_tiny.build(tmp_path / "sam", seed=SEED)
    expected = torch.load(tiny_set["sam"], weights_only=True)
    actual = torch.load(sam_path, weights_only=True)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)


def test_builders_leave_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    regions_tiny.build_model(SEED)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)
