"""The SDXL base configs kept as data build the real architecture (on the meta device: no memory)."""

import pytest

from services.generation.full_size import build_components, sdxl_scheduler

# Parameter counts of stabilityai/stable-diffusion-xl-base-1.0's components.
SDXL_BASE_PARAMETERS = {
    "unet": 2_567_463_684,
    "vae": 83_653_863,
    "text_encoder": 123_060_480,
    "text_encoder_2": 694_659_840,
}


def test_full_size_components_have_sdxl_base_parameter_counts() -> None:
    components = build_components("meta")
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in components.items()}
    for name, expected in SDXL_BASE_PARAMETERS.items():
        assert counts[name] == pytest.approx(expected, rel=0.002), (name, counts[name])
    assert components["unet"].config.sample_size * 8 == 1024


def test_scheduler_is_sdxl_base_euler() -> None:
    settings = sdxl_scheduler().config
    assert (settings.beta_schedule, settings.timestep_spacing, settings.steps_offset) == ("scaled_linear", "leading", 1)


def test_full_size_tokenizers_stop_at_clips_77_tokens() -> None:
    """Written without a limit, a CLIP tokenizer carries 1e30 and the first prompt overflows in the pipeline."""
    from services.generation.full_size import sdxl_tokenizers

    for tokenizer in sdxl_tokenizers():
        assert tokenizer.model_max_length == 77
        ids = tokenizer("a dog " * 100, truncation=True, max_length=tokenizer.model_max_length).input_ids
        assert len(ids) == 77


def test_a_tokenizer_over_its_encoders_positions_is_refused_at_load() -> None:
    from types import SimpleNamespace

    from services.generation.model import check_tokenizers

    encoder = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=77))
    fine = SimpleNamespace(model_max_length=77)
    check_tokenizers(SimpleNamespace(tokenizer=fine, text_encoder=encoder, tokenizer_2=fine, text_encoder_2=encoder))  # type: ignore[arg-type]
    broken = SimpleNamespace(model_max_length=int(1e30))
    with pytest.raises(ValueError, match=r"tokenizer_2's model_max_length .* over text_encoder_2's 77 positions"):
        check_tokenizers(
            SimpleNamespace(tokenizer=fine, text_encoder=encoder, tokenizer_2=broken, text_encoder_2=encoder)
        )  # type: ignore[arg-type]


def test_a_directory_of_fp16_weights_only_loads_as_the_fp16_variant(tiny_dir, tmp_path) -> None:
    """The common SDXL download holds only ``*.fp16.safetensors``: found and loaded without a setting."""
    from diffusers import StableDiffusionXLPipeline

    from services.generation.model import GenerationModel, weight_variant
    from spotdiff.settings import GenerationSettings

    StableDiffusionXLPipeline.from_pretrained(tiny_dir / "sdxl").save_pretrained(tmp_path / "sdxl", variant="fp16")
    assert list((tmp_path / "sdxl/unet").glob("*.safetensors")) == [
        tmp_path / "sdxl/unet/diffusion_pytorch_model.fp16.safetensors"
    ]
    assert weight_variant(str(tmp_path / "sdxl"), None) == "fp16"
    assert weight_variant(str(tiny_dir / "sdxl"), None) is None
    assert weight_variant(str(tmp_path / "sdxl"), "bf16") == "bf16"  # the setting wins
    model = GenerationModel(
        GenerationSettings(model=str(tmp_path / "sdxl"), height=64, width=64, num_inference_steps=2)
    )
    model.load()
    assert model.pipe is not None and model.pipe.unet is not None
