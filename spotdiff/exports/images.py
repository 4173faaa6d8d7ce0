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


def _open(store: ArtifactStore, key: str) -> Image.Image:
    return Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB")


def save_jpeg(image: Image.Image, out_dir: Path, relative: str) -> str:
    target = out_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, format="JPEG", quality=JPEG_QUALITY)
    return relative


def copy_jpeg(store: ArtifactStore, key: str, out_dir: Path, relative: str) -> str:
    """The stored image ``key`` as a JPEG at ``out_dir/relative``; returns ``relative``."""
    return save_jpeg(_open(store, key), out_dir, relative)


def boxed_pair(store: ArtifactStore, region: Region, out_dir: Path, stem: str) -> tuple[str, str]:
    """The region's two red-boxed images, ``<stem>_0.jpg`` and ``<stem>_1.jpg``."""
    assert region.boxed_image_source is not None and region.boxed_image_target is not None
    return (
        copy_jpeg(store, region.boxed_image_source, out_dir, f"{stem}_0.jpg"),
        copy_jpeg(store, region.boxed_image_target, out_dir, f"{stem}_1.jpg"),
    )


def composite(store: ArtifactStore, region: Region, out_dir: Path, relative: str) -> str:
    """The picture the reference's question speaks of: the left image with its red box, a 20 px black bar, the
    right image with its red box (the same composite the difference caption was asked about)."""
    assert region.boxed_image_source is not None and region.boxed_image_target is not None
    joined = side_by_side(_open(store, region.boxed_image_source), _open(store, region.boxed_image_target))
    return save_jpeg(joined, out_dir, relative)
