"""Small helpers shared by the service tests."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), dtype=np.int16)


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def batches_larger_than_one(metrics_text: str, op: str) -> int:
    """How many model batches of ``op`` held more than one item, read from the service's /metrics text."""
    count = single = 0.0
    for line in metrics_text.splitlines():
        if f'op="{op}"' not in line:
            continue
        if line.startswith("spotdiff_batch_size_count"):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith("spotdiff_batch_size_bucket") and 'le="1.0"' in line:
            single = float(line.rsplit(" ", 1)[1])
    return int(count - single)
