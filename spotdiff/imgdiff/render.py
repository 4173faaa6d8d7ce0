"""The images the captioner sees in stage 2: red boxes, side by side with a black bar (Pillow)."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from spotdiff.imgdiff.boxes import grown
from spotdiff.protocol.common import Box

RED_BOX_GROWTH = 5
RED_BOX_WIDTH = 3
RED_BOX_COLOUR = "red"  # (255, 0, 0)
BAR_WIDTH = 20


def red_boxed(image: Image.Image, box: Box) -> Image.Image:
    """A copy of ``image`` with ``box`` grown by 5 px, clamped, outlined in red 3 px wide."""
    outline = grown(box, RED_BOX_GROWTH, image.width, image.height)
    boxed = image.convert("RGB").copy()
    ImageDraw.Draw(boxed).rectangle(outline.as_list(), outline=RED_BOX_COLOUR, width=RED_BOX_WIDTH)
    return boxed


def side_by_side(left: Image.Image, right: Image.Image, bar: int = BAR_WIDTH) -> Image.Image:
    """``left | black bar | right`` on a black canvas as tall as the taller image."""
    canvas = Image.new("RGB", (left.width + bar + right.width, max(left.height, right.height)))  # black
    canvas.paste(left)  # at the top left
    canvas.paste(right, (left.width + bar, 0))
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    """PNG-encoded bytes: lossless, so stored and transmitted pixels are exactly the rendered ones."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # pragma: no mutate (equivalent: Pillow upper-cases a format's name)
    return buffer.getvalue()
