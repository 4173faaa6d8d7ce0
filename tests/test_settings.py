from pathlib import Path

import pytest

from spotdiff.settings import Settings


def test_reference_profile_is_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPOTDIFF_PROFILE", raising=False)
    settings = Settings(profile="reference")
    assert settings.generation.model == "stabilityai/stable-diffusion-xl-base-1.0"
    assert (settings.generation.num_inference_steps, settings.generation.guidance_scale) == (50, 7.5)
    assert (settings.generation.height, settings.generation.width) == (1024, 1024)
    assert (settings.similarity.model, settings.similarity.pretrained) == (
        "ViT-B-32-quickgelu",
        "openai",
    )  # OpenAI CLIP: QuickGELU
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


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "2", "-1.5"])
def test_a_deployment_cannot_set_a_threshold_that_decides_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    """The workers' own settings are bounded like a job's: a NaN cosine threshold would keep or drop everything."""
    monkeypatch.setenv("SPOTDIFF_PIPELINE__PAIR_COSINE_MIN", value)
    with pytest.raises(ValueError, match="pair_cosine_min"):
        Settings(profile="tiny", tiny_dir=tmp_path)
