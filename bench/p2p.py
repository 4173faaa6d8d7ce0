"""What does Prompt-to-Prompt cost? Ratios measured in one run, on one pipeline:

- ``p2p / plain``: a pair with spotdiff's P2P (refine, cross 1.0, self 0.4: the reference settings) against
  plain SDXL generating the same two prompts as one batch from the same latent (target <= 1.10);
- ``p2p / reference-style``: spotdiff's fused processor against a processor that materialises the attention
  probabilities in every layer and step, edits them literally and stores the small layers' maps, as the
  reference does (target <= 0.6).

On the CPU it runs the tiny SDXL at 512² (``--size``); ``--full-size`` builds a random-weight SDXL base from
the configs in ``services/generation/configs`` (for a GPU, fp16 at 1024²).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from spotdiff.settings import Settings

if TYPE_CHECKING:
    from services.generation.model import GenerationModel

PROMPTS = ("a photo of a dog on the grass", "a photo of a cat on the grass")


def best_of(repeats: int, run: Callable[[], object], sync: Callable[[], None]) -> float:
    times = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(model: GenerationModel, size: int, steps: int, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds of one pair: plain SDXL (edit none), spotdiff's P2P, the reference-style
    processor; the model's own processor is put back afterwards."""
    import torch

    from bench.p2p_reference import ReferenceStyleProcessor
    from services.generation.jobs import PairJob
    from services.generation.p2p import P2PAttnProcessor
    from spotdiff.protocol.generation import Edit, GenerationParams

    assert model.pipe is not None
    sync = torch.cuda.synchronize if model.device.startswith("cuda") else (lambda: None)

    def params(edit: Edit) -> GenerationParams:
        return GenerationParams(
            height=size,
            width=size,
            num_inference_steps=steps,
            guidance_scale=7.5,
            edit=edit,
            cross_replace=1.0,
            cross_replace_words={},
            self_replace=0.4,
        )

    def pair(edit: Edit) -> Callable[[], object]:
        return lambda: model.generate([PairJob(*PROMPTS, 0, params(edit))])

    pair("refine")()  # warm-up at this size
    plain = best_of(repeats, pair("none"), sync)
    fused = best_of(repeats, pair("refine"), sync)
    reference = ReferenceStyleProcessor(model.slot, store_maps=True)
    model.pipe.unet.set_attn_processor(reference)

    def literal_pair() -> None:
        reference.maps.clear()
        pair("refine")()

    try:
        literal = best_of(repeats, literal_pair, sync)
    finally:
        model.pipe.unet.set_attn_processor(P2PAttnProcessor(model.slot))
    return {"plain_s": plain, "p2p_s": fused, "reference_style_s": literal}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--full-size", action="store_true", help="random-weight SDXL base from its configs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from services.generation.model import GenerationModel
    from spotdiff.cli import ensure_tiny_models

    settings = Settings(profile="tiny")
    generation = settings.generation.model_copy(update={"device": args.device, "dtype": args.dtype})
    model = GenerationModel(generation)
    if args.full_size:
        from services.generation.full_size import build_random_sdxl

        model.attach(build_random_sdxl(model.device, model.dtype))
    else:
        ensure_tiny_models(settings)
        model.load()
    assert model.pipe is not None
    times = measure(model, args.size, args.steps, args.repeats)
    plain, fused, literal = times["plain_s"], times["p2p_s"], times["reference_style_s"]
    where = f"{'full-size' if args.full_size else 'tiny'} SDXL, {args.size}², {args.steps} steps, CFG, {model.device}"
    print(
        f"p2p[{where}, {model.dtype}]: plain pair {plain:.2f}s, spotdiff P2P {fused:.2f}s, reference-style "
        f"{literal:.2f}s; p2p/plain {fused / plain:.3f} (target <= 1.10), p2p/reference-style "
        f"{fused / literal:.3f} (target <= 0.6)",
        flush=True,
    )


if __name__ == "__main__":
    main()
