"""The settings a GPU user turns reach the libraries that honour them (checked on the tiny models, on the CPU),
and what `/v1/info` says about them is read from the loaded model, not from the settings."""

from __future__ import annotations

import pytest
from diffusers.models.attention_processor import AttnProcessor2_0

from services.captioning.jobs import CaptionJob
from services.captioning.model import CaptioningModel
from services.generation.model import GenerationModel
from services.generation.p2p import P2PAttnProcessor
from services.rewriting.model import RewritingModel
from spotdiff.settings import Settings

from .helpers import noise_image


@pytest.mark.parametrize(("slicing", "tiling"), [(True, False), (False, True)])
def test_vae_slicing_and_tiling_reach_the_vae(settings: Settings, slicing: bool, tiling: bool) -> None:
    model = GenerationModel(settings.generation.model_copy(update={"vae_slicing": slicing, "vae_tiling": tiling}))
    model.load()
    assert model.pipe is not None
    assert (model.pipe.vae.use_slicing, model.pipe.vae.use_tiling) == (slicing, tiling)
    assert model.info().extra["vae"] == {"slicing": slicing, "tiling": tiling}


def test_info_counts_the_p2p_processor_on_every_attention_layer(settings: Settings) -> None:
    model = GenerationModel(settings.generation)
    model.load()
    assert model.pipe is not None
    extra = model.info().extra
    processors = model.pipe.unet.attn_processors
    assert extra["p2p_layers"] == len(processors) == 2 * extra["transformer_blocks"] > 0  # self + cross each
    assert all(isinstance(processor, P2PAttnProcessor) for processor in processors.values())
    model.pipe.unet.set_attn_processor({**processors, next(iter(processors)): AttnProcessor2_0()})  # one stock
    assert model.info().extra["p2p_layers"] == len(processors) - 1


def test_captioning_attention_implementation_is_the_one_loaded(settings: Settings) -> None:
    for choice, expected in ((None, "sdpa"), ("eager", "eager")):
        model = CaptioningModel(settings.captioning.model_copy(update={"attn_implementation": choice}))
        model.load()
        assert model.model.config._attn_implementation == expected
        assert model.info().extra["attn_implementation"] == expected


def test_rewriting_attention_implementation_is_the_one_loaded(settings: Settings) -> None:
    model = RewritingModel(settings.rewriting.model_copy(update={"attn_implementation": "eager"}))
    model.load()
    assert model.model.config._attn_implementation == "eager"


def test_a_caption_counts_the_prompt_positions_its_image_took(settings: Settings) -> None:
    """LLaVA-NeXT tiles an image by its aspect (anyres): a wide one takes other positions than a square one."""
    model = CaptioningModel(settings.captioning)
    model.load()
    square, wide = (noise_image(width, 64, 1) for width in (64, 192))
    batch = model.caption([CaptionJob(image, "Describe.", 2) for image in (square, wide)])
    counts = [caption.image_tokens for caption in batch]
    assert all(count > 0 for count in counts) and counts[0] != counts[1]
    alone = model.caption([CaptionJob(wide, "Describe.", 2)])[0].image_tokens
    assert alone == counts[1]  # the count is the row's own, not the padded batch's
