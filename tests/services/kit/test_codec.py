import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from httpkit.errors import ServiceError
from services.kit.codec import decode_image, encode_png


def b64(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: header and one tiny IDAT (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_png_round_trip_is_lossless() -> None:
    image = Image.new("RGB", (7, 5), (10, 200, 30))
    image.putpixel((3, 2), (1, 2, 3))
    decoded = decode_image(encode_png(image), max_pixels=100)
    assert decoded.mode == "RGB" and decoded.size == (7, 5)
    assert decoded.tobytes() == image.tobytes()


def test_jpeg_and_convertible_modes_become_rgb() -> None:
    assert decode_image(b64(Image.new("RGB", (8, 8)), "JPEG"), max_pixels=100).mode == "RGB"
    for mode in ("L", "RGBA", "P", "1"):
        assert decode_image(b64(Image.new(mode, (4, 4))), max_pixels=100).mode == "RGB"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ("not base64 at all!", 400, "invalid_base64"),
        (base64.b64encode(b"hello, this is text").decode(), 400, "undecodable_image"),
        (base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode(), 400, "undecodable_image"),
    ],
)
def test_undecodable_input_is_a_4xx(payload: str, status: int, code: str) -> None:
    with pytest.raises(ServiceError) as caught:
        decode_image(payload, max_pixels=100)
    assert (caught.value.status, caught.value.code) == (status, code)


def test_other_formats_are_refused() -> None:
    with pytest.raises(ServiceError) as caught:
        decode_image(b64(Image.new("RGB", (4, 4)), "GIF"), max_pixels=100)
    assert caught.value.status == 415


def test_modes_without_an_rgb_meaning_are_refused() -> None:
    with pytest.raises(ServiceError) as caught:
        decode_image(b64(Image.new("I;16", (4, 4))), max_pixels=100)
    assert (caught.value.status, caught.value.code) == (422, "unsupported_image_mode")


def test_truncated_image_is_a_4xx() -> None:
    data = base64.b64decode(b64(Image.effect_noise((64, 64), 50).convert("RGB")))
    with pytest.raises(ServiceError) as caught:
        decode_image(base64.b64encode(data[: len(data) // 2]).decode(), max_pixels=10_000)
    assert caught.value.status == 400


def test_pixel_limit_is_checked_before_decoding() -> None:
    with pytest.raises(ServiceError) as caught:
        decode_image(b64(Image.new("RGB", (11, 10))), max_pixels=100)
    assert (caught.value.status, caught.value.code) == (413, "image_too_large")


def test_decompression_bomb_is_a_413_not_an_allocation() -> None:
    bomb = base64.b64encode(png_header_only(200_000, 200_000)).decode()  # 40 gigapixels claimed, ~60 bytes sent
    with pytest.raises(ServiceError) as caught:
        decode_image(bomb, max_pixels=4096 * 4096)
    assert caught.value.status == 413
