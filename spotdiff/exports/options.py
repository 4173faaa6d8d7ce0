"""What a user may choose about an export besides its format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExportOptions:
    image_root: Path | None = None  # dj: image paths relative to this folder (absolute when None)
    embed_images: bool = False  # parquet: the images' bytes in the file, rather than JPEG files beside it


class ExportUnavailable(Exception):
    """The format needs a library this installation lacks (the message says which extra to install)."""
