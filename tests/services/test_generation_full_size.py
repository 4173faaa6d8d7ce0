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
