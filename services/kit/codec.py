"""Images in JSON: base64 PNG or JPEG, checked before they cost memory.

The size check reads only the header, so a decompression bomb (a small file that inflates to gigapixels)
is refused with a 413 before any pixel is decoded.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image, UnidentifiedImageError

from httpkit.errors import ServiceError
from spotdiff.imgdiff.render import png_bytes

ACCEPTED_FORMATS = frozenset({"PNG", "JPEG"})
# Modes that convert to RGB without guessing a scale; 16/32-bit integer and float images do not.
CONVERTIBLE_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})


def decode_image(b64: str, *, max_pixels: int, field: str = "image") -> Image.Image:
    """Decode one base64 PNG/JPEG to an RGB image, or raise a 4xx `ServiceError` that says why."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServiceError(400, "invalid_base64", f"{field}: not valid base64 ({exc})") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ServiceError(413, "image_too_large", f"{field}: {exc}") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ServiceError(400, "undecodable_image", f"{field}: not a PNG or JPEG image") from exc
    if image.format not in ACCEPTED_FORMATS:
        raise ServiceError(415, "unsupported_image_format", f"{field}: {image.format} is not PNG or JPEG")
    width, height = image.size
    if width * height > max_pixels:
        raise ServiceError(
            413,
            "image_too_large",
            f"{field}: {width}x{height} = {width * height} pixels is over the limit of {max_pixels}",
            details={"width": width, "height": height, "max_pixels": max_pixels},
        )
    if image.mode not in CONVERTIBLE_MODES:
        raise ServiceError(422, "unsupported_image_mode", f"{field}: mode {image.mode} cannot be converted to RGB")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ServiceError(400, "undecodable_image", f"{field}: corrupt image data ({exc})") from exc
    return image if image.mode == "RGB" else image.convert("RGB")


def encode_png(image: Image.Image) -> str:
    """Base64 PNG: lossless, so a pair's pixels survive the wire exactly."""
    return base64.b64encode(png_bytes(image)).decode("ascii")
