from pathlib import Path

import pytest

from spotdiff.settings import Settings


def test_reference_profile_is_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPOTDIFF_PROFILE", raising=False)
    settings = Settings(profile="reference")
    assert settings.generation.model == "stabilityai/stable-diffusion-xl-base-1.0"
    assert (settings.generation.num_inference_steps, settings.generation.guidance_scale) == (50, 7.5)
    assert (settings.generation.height, settings.generation.width) == (1024, 1024)
    assert (settings.similarity.model, settings.similarity.pretrained) == ("ViT-B-32", "openai")
    assert (settings.similarity.text_scorer, settings.similarity.blip_model) == (
        "blip",
        "Salesforce/blip-itm-large-coco",
    )
    assert (settings.pipeline.pair_cosine_min, settings.pipeline.pair_cosine_max) == (0.9, 0.98)
    assert settings.pipeline.crop_cosine_max == 0.85 and settings.pipeline.max_boxes == 10


def test_tiny_profile_points_at_the_tiny_checkpoints(tmp_path: Path) -> None:
    settings = Settings(profile="tiny", tiny_dir=tmp_path)
    assert settings.generation.model == str(tmp_path / "sdxl")
    assert settings.similarity.model == f"local-dir:{tmp_path / 'clip'}"
    assert settings.regions.model_type == "spotdiff_tiny"
    assert settings.pipeline.pair_cosine_max > 1.0  # random CLIP: every pair scores near 1


def test_environment_wins_over_the_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPOTDIFF_PIPELINE__PAIR_COSINE_MAX", "0.5")
    monkeypatch.setenv("SPOTDIFF_GENERATION__HEIGHT", "256")
    settings = Settings(profile="tiny", tiny_dir=tmp_path)
    assert settings.pipeline.pair_cosine_max == 0.5
    assert settings.pipeline.pair_cosine_min == -1.0  # the rest of the profile still applies
    assert (settings.generation.height, settings.generation.width) == (256, 128)
