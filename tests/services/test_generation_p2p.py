"""Prompt-to-Prompt on the tiny SDXL: mechanisms, not image quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from httpkit.errors import ServiceError
from services.generation.jobs import PairImages, PairJob
from services.generation.model import GenerationModel
from spotdiff.protocol.generation import GenerationParams
from spotdiff.settings import Settings

DOG, CAT = "a photo of a dog on the grass", "a photo of a cat on the grass"


def params(**overrides: object) -> GenerationParams:
    values: dict[str, object] = {
        "height": 128,
        "width": 128,
        "num_inference_steps": 6,
        "guidance_scale": 7.5,
        "edit": "refine",
        "cross_replace": 1.0,
        "cross_replace_words": {},
        "self_replace": 0.4,
    }
    values.update(overrides)
    return GenerationParams.model_validate(values)


def generate(model: GenerationModel, source: str, target: str, seed: int = 0, **overrides: object) -> PairImages:
    (result,) = model.generate([PairJob(source, target, seed, params(**overrides))])
    if isinstance(result, BaseException):
        raise result
    return result


def array(image: object) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255.0


def mse(images: PairImages) -> float:
    return float(((array(images.source) - array(images.target)) ** 2).mean())


@pytest.fixture(scope="module")
def model(settings: Settings) -> GenerationModel:
    loaded = GenerationModel(settings.generation)
    loaded.load()
    return loaded


@pytest.fixture(scope="module")
def sharpened(settings: Settings) -> GenerationModel:
    """Random attention is near uniform, so edits barely show; query/key (and token embeddings) x 8 sharpen it."""
    loaded = GenerationModel(settings.generation)
    loaded.load()
    assert loaded.pipe is not None
    with torch.no_grad():
        for module in loaded.pipe.unet.modules():
            if isinstance(module, Attention):
                module.to_q.weight.mul_(8)
                module.to_k.weight.mul_(8)
        for encoder in (loaded.pipe.text_encoder, loaded.pipe.text_encoder_2):
            encoder.get_input_embeddings().weight.mul_(8)
    return loaded


def test_the_source_image_is_plain_sdxl_from_the_same_latent(model: GenerationModel) -> None:
    edited = generate(model, DOG, CAT, seed=4)
    plain = generate(model, DOG, CAT, seed=4, edit="none")
    assert np.array_equal(np.asarray(edited.source), np.asarray(plain.source))
    assert not np.array_equal(np.asarray(edited.target), np.asarray(plain.target))  # the edit did act

    # "none" is diffusers' own processor, untouched
    assert model.pipe is not None
    ours = model.pipe.unet.attn_processors
    model.pipe.unet.set_attn_processor(AttnProcessor2_0())
    try:
        stock = generate(model, DOG, CAT, seed=4, edit="none")
    finally:
        model.pipe.unet.set_attn_processor(ours)
    assert np.array_equal(np.asarray(stock.source), np.asarray(plain.source))
    assert np.array_equal(np.asarray(stock.target), np.asarray(plain.target))


@pytest.mark.parametrize("edit", ["refine", "replace"])
def test_identical_prompts_give_identical_images(model: GenerationModel, edit: str) -> None:
    images = generate(model, DOG, DOG, seed=2, edit=edit)
    assert np.array_equal(np.asarray(images.source), np.asarray(images.target))


def test_seeds_are_deterministic(model: GenerationModel) -> None:
    first, second = generate(model, DOG, CAT, seed=9), generate(model, DOG, CAT, seed=9)
    assert np.array_equal(np.asarray(first.target), np.asarray(second.target))


def test_refine_handles_prompts_of_different_lengths(model: GenerationModel) -> None:
    images = generate(
        model, "a chocolate cake", "a confetti apple bread", seed=1, cross_replace_words={"confetti": 0.8}
    )
    assert images.source.size == images.target.size == (128, 128)


def test_replace_needs_equal_token_counts(model: GenerationModel) -> None:
    generate(model, DOG, CAT, edit="replace")  # dog/cat: one token each
    (result,) = model.generate([PairJob("a cake", "a confetti apple bread", 0, params(edit="replace"))])
    assert isinstance(result, ServiceError) and result.status == 422


def test_a_failing_pair_does_not_fail_its_batch(model: GenerationModel) -> None:
    jobs = [PairJob("a cake", "a confetti apple bread", 0, params(edit="replace")), PairJob(DOG, CAT, 0, params())]
    failed, fine = model.generate(jobs)
    assert isinstance(failed, ServiceError) and isinstance(fine, PairImages)


def test_p2p_brings_the_pair_closer_and_each_half_does_part(sharpened: GenerationModel) -> None:
    independent = mse(generate(sharpened, DOG, CAT, seed=2, edit="none"))
    full = mse(generate(sharpened, DOG, CAT, seed=2))
    self_only = mse(generate(sharpened, DOG, CAT, seed=2, cross_replace=0.0))
    # Cross-attention alone: with word swap every token reads the source's attention. (With refine the new
    # word keeps its own, which on random weights need not bring the images closer by itself.)
    cross_only = mse(generate(sharpened, DOG, CAT, seed=2, edit="replace", self_replace=0.0))
    assert full < 0.5 * independent, (full, independent)
    assert self_only < 0.7 * independent, (self_only, independent)
    assert cross_only < 0.95 * independent, (cross_only, independent)
    assert full < self_only  # the cross edits add to the self edits


def test_progress_is_reported_and_leaving_stops_the_batch(model: GenerationModel) -> None:
    steps: list[int] = []
    generate_job = PairJob(DOG, CAT, 0, params(num_inference_steps=5), on_step=lambda step, total: steps.append(step))
    model.generate([generate_job])
    assert steps == [1, 2, 3, 4, 5]

    seen: list[int] = []
    leaving = PairJob(
        DOG,
        CAT,
        0,
        params(num_inference_steps=20),
        on_step=lambda step, total: seen.append(step),
        cancelled=lambda: len(seen) >= 2,
    )
    (result,) = model.generate([leaving])
    assert isinstance(result, ServiceError) and result.status == 499
    assert len(seen) < 20  # interrupted: the later steps did not run their UNet


@pytest.mark.parametrize("overrides", [{}, {"edit": "replace"}, {"self_replace": 0.0}, {"cross_replace": 0.5}])
def test_fused_edits_equal_the_reference_style_materialised_edits(
    sharpened: GenerationModel, overrides: dict[str, object]
) -> None:
    from bench.p2p_reference import ReferenceStyleProcessor

    fused = generate(sharpened, DOG, CAT, seed=5, **overrides)
    assert sharpened.pipe is not None
    ours = sharpened.pipe.unet.attn_processors
    sharpened.pipe.unet.set_attn_processor(ReferenceStyleProcessor(sharpened.slot, store_maps=False))
    try:
        literal = generate(sharpened, DOG, CAT, seed=5, **overrides)
    finally:
        sharpened.pipe.unet.set_attn_processor(ours)
    plain = generate(sharpened, DOG, CAT, seed=5, edit="none")
    edit_effect = np.abs(array(fused.target) - array(plain.target)).mean()
    for mine, theirs in ((fused.source, literal.source), (fused.target, literal.target)):
        difference = np.abs(array(mine) - array(theirs))
        # The two kernels round differently (fused SDPA against baddbmm + softmax + bmm): a level or two here
        # and there, far below what the edit itself changes.
        assert difference.mean() < 1 / 255 and difference.max() <= 8 / 255
        assert difference.mean() < edit_effect / 10
