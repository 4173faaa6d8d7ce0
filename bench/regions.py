"""Regions stage cost: difference-prior box prompts against automatic masks, on the same SAM and image size.

In one run, on the golden pair (1024², a real SDXL + P2P pair) and the tiny SAM with the reference's
automatic-mask settings (32 x 32 points): the time of the regions stage for the pair with automatic masks on
both images, against the change map plus one box prompt per prior box on both images (one image embedding
each). Target: prior / automatic <= 0.2. It also prints the best IoU the weight-free prior reaches against the
reference's boxes for this pair.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image

from spotdiff.imgdiff.boxes import from_centre, iou
from spotdiff.imgdiff.prior import prior_boxes
from spotdiff.settings import Settings

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"
# The Data-Juicer test feeds these boxes (centre x, centre y, w, h) for this pair.
REFERENCE_BOXES = ([430.94, 549.38, 283.80, 131.16], [452.32, 544.72, 300.14, 137.63])


def golden_pair() -> tuple[Image.Image, Image.Image]:
    first, second = (Image.open(GOLDEN / f"dj_img_pair_{n}.jpg").convert("RGB") for n in (1, 2))
    return first, second


def golden_prior_iou() -> float:
    """Best IoU of any prior box with the reference's boxes for the golden pair."""
    truth = [from_centre(*values) for values in REFERENCE_BOXES]
    return max(iou(prior.box, box) for prior in prior_boxes(*golden_pair()) for box in truth)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from services.regions.jobs import PromptedJob, ProposeJob
    from services.regions.model import RegionsModel
    from spotdiff.cli import ensure_tiny_models
    from spotdiff.protocol.regions import AmgOptions, Prompt

    if not (GOLDEN / "dj_img_pair_1.jpg").exists():
        print(f"regions: skipped, the golden pair is not at {GOLDEN}")
        return
    settings = Settings(profile="tiny")
    ensure_tiny_models(settings)
    reference_amg = Settings(profile="reference").regions
    amg_settings = {name: getattr(reference_amg, name) for name in AmgOptions.model_fields}
    model = RegionsModel(settings.regions.model_copy(update=amg_settings))
    model.load()
    model.warmup()
    images = golden_pair()

    def automatic() -> None:
        model.propose([ProposeJob(image, AmgOptions(), False) for image in images])

    def prompted() -> int:
        boxes = prior_boxes(*images)
        prompts = [Prompt(box=prior.box) for prior in boxes]
        model.prompted([PromptedJob(image, prompts, True, False) for image in images])
        return len(prompts)

    def best_of(run: object, repeats: int = 2) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()  # type: ignore[operator]
            times.append(time.perf_counter() - started)
        return min(times)

    automatic_s = best_of(automatic)
    prompted_s = best_of(prompted)
    count = prompted()
    print(
        f"regions[tiny SAM (img 256), golden pair 1024², AMG {reference_amg.points_per_side}x"
        f"{reference_amg.points_per_side} points]: automatic masks {automatic_s:.2f}s, prior + {count} box "
        f"prompts {prompted_s:.2f}s; prior/automatic {prompted_s / automatic_s:.3f} (target <= 0.2)",
        flush=True,
    )
    print(f"golden pair: best IoU of the weight-free prior with the reference boxes {golden_prior_iou():.3f}")


if __name__ == "__main__":
    main()
