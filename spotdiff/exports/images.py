"""The images an export ships, written once each as JPEG files under the export's ``images/`` folder."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from spotdiff.imgdiff.render import side_by_side
from spotdiff.protocol import Region
from spotdiff.storage import ArtifactStore

IMAGES = "images"
JPEG_QUALITY = 95


def stored(key: str | None, what: str) -> str:
    """The key of an image an accepted sample has; a clear error naming ``what`` when the record lacks it."""
    if key is None:
        raise ValueError(f"an accepted sample's record names no {what}")
    return key


def _open(store: ArtifactStore, key: str) -> Image.Image:
    return Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")


def save_jpeg(image: Image.Image, out_dir: Path, relative: str) -> str:
    """``image`` as a JPEG (``relative`` ends in ``.jpg``) at ``out_dir/relative``, in a folder of ``out_dir``."""
    target = out_dir / relative
    target.parent.mkdir(exist_ok=True)
    image.save(target, quality=JPEG_QUALITY)
    return relative


def copy_jpeg(store: ArtifactStore, key: str, out_dir: Path, relative: str) -> str:
    """The stored image ``key`` as a JPEG at ``out_dir/relative``; returns ``relative``."""
    return save_jpeg(_open(store, key), out_dir, relative)


def boxed_pair(store: ArtifactStore, region: Region, out_dir: Path, stem: str) -> tuple[str, str]:
    """The region's two red-boxed images, ``<stem>_0.jpg`` and ``<stem>_1.jpg``."""
    left, right = boxed_keys(region, stem)
    return copy_jpeg(store, left, out_dir, f"{stem}_0.jpg"), copy_jpeg(store, right, out_dir, f"{stem}_1.jpg")


def boxed_keys(region: Region, name: str) -> tuple[str, str]:
    """The keys of the region's two red-boxed images (``name`` says which sample's, should one be missing)."""
    return (
        stored(region.boxed_image_source, f"red-boxed image 1 for {name}"),
        stored(region.boxed_image_target, f"red-boxed image 2 for {name}"),
    )


def composite(store: ArtifactStore, region: Region, out_dir: Path, relative: str) -> str:
    """The picture the reference's question speaks of: the left image with its red box, a 20 px black bar, the
    right image with its red box (the same composite the difference caption was asked about)."""
    left, right = boxed_keys(region, relative)
    joined = side_by_side(_open(store, left), _open(store, right))
    return save_jpeg(joined, out_dir, relative)
