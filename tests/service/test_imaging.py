"""Decoding: formats recognised from bytes, EXIF, modes, strictness and limits, in imaging and over HTTP."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import DATA, SAME, encode, error_of, part, photo
from fastapi.testclient import TestClient
from PIL import Image

from service.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from service.imaging import decode

ORIGINAL = SAME[0][0]
LIMITS = {"max_bytes": 10 * 1024 * 1024, "max_pixels": 40_000_000}


def original() -> Image.Image:
    return Image.open(DATA / ORIGINAL).convert("RGB")


def embed_one(client: TestClient, data: bytes, content_type: str = "application/octet-stream") -> dict[str, Any]:
    response = client.post("/embed", files={"image": ("upload", data, content_type)})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["results"][0]
    return result


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but which carries almost no data: a pixel-count bomb."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def reference(client: TestClient) -> dict[str, Any]:
    return embed_one(client, photo(ORIGINAL), "image/jpeg")


@pytest.mark.parametrize(
    ("fmt", "convert", "params", "min_similarity"),
    [
        ("PNG", "RGB", {}, 0.97),
        ("WEBP", "RGB", {"quality": 95}, 0.95),
        ("BMP", "RGB", {}, 0.97),
        ("PNG", "RGBA", {}, 0.97),
        ("JPEG", "L", {"quality": 95}, 0.6),
        ("PNG", "P", {}, 0.8),
    ],
)
def test_formats_and_modes_work(
    client: TestClient, reference: dict[str, Any], fmt: str, convert: str, params: dict[str, Any], min_similarity: float
) -> None:
    image = original().convert(convert)
    if convert == "RGBA":
        image.putalpha(Image.new("L", image.size, 255))
        image.getchannel("A").paste(0, (0, 0, 20, 20))  # a transparent corner
    result = embed_one(client, encode(image, fmt, **params))  # octet-stream: recognised from the bytes
    similarity = float(np.dot(result["embedding"], reference["embedding"]))
    assert similarity >= min_similarity
    assert np.allclose(result["box"], reference["box"], atol=6)


def test_exif_orientation_is_honoured(client: TestClient, reference: dict[str, Any]) -> None:
    upright = original()
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rotated = embed_one(client, encode(stored, "JPEG", quality=95, exif=exif.tobytes()), "image/jpeg")
    assert float(np.dot(rotated["embedding"], reference["embedding"])) > 0.9
    assert np.allclose(rotated["box"], reference["box"], atol=6)
    # Without the tag the same pixels are sideways: the box is elsewhere (the test can fail).
    response = client.post("/embed", files={"image": ("s.jpg", encode(stored, "JPEG", quality=95), "image/jpeg")})
    if response.status_code == 200:
        assert not np.allclose(response.json()["results"][0]["box"], reference["box"], atol=6)


def test_large_photo_detects_downscaled_and_crops_full_resolution(
    client: TestClient, reference: dict[str, Any]
) -> None:
    big = original().resize((1500, 1500), Image.Resampling.BICUBIC)  # over the detector's max side
    result = embed_one(client, encode(big, "JPEG", quality=95), "image/jpeg")
    # Coordinates are in the full-resolution photo (YuNet's box is a little looser on a downscaled face).
    assert np.allclose(result["landmarks"], np.asarray(reference["landmarks"]) * 6, atol=40)
    box, expected = np.asarray(result["box"]), np.asarray(reference["box"]) * 6
    assert np.allclose(box[:2] + box[2:] / 2, expected[:2] + expected[2:] / 2, atol=0.05 * expected[2])
    assert np.allclose(box[2:], expected[2:], rtol=0.1)
    assert float(np.dot(result["embedding"], reference["embedding"])) > 0.9


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"", "image/jpeg", 400, "invalid_image"),
        ("truncated", "image/jpeg", 400, "invalid_image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "image/jpeg", 400, "invalid_image"),
        (bytes(range(256)) * 4, "image/jpeg", 400, "invalid_image"),
        (b"just some text, not a photo\n", "text/plain", 415, "unsupported_media_type"),
        (b"just some text, not a photo\n", "application/octet-stream", 415, "unsupported_media_type"),
        (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", "application/pdf", 415, "unsupported_media_type"),
        (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", "image/jpeg", 415, "unsupported_media_type"),
        ("gif", "image/gif", 415, "unsupported_media_type"),
        ("bomb", "image/png", 413, "image_too_large"),
    ],
    ids=[
        "zero-byte",
        "truncated",
        "header-only",
        "garbage",
        "text",
        "text-octet",
        "pdf",
        "pdf-as-jpeg",
        "gif",
        "pixel-bomb",
    ],
)
def test_bad_uploads(client: TestClient, data: bytes | str, content_type: str, status: int, code: str) -> None:
    if data == "truncated":
        data = photo(ORIGINAL)[: len(photo(ORIGINAL)) // 2]
    elif data == "gif":
        data = encode(original(), "GIF")
    elif data == "bomb":
        data = png_header_only(7000, 7000)  # 49 Mpx, over the 40 Mpx default, in a few hundred bytes
    assert isinstance(data, bytes)
    files = {"image1": ("upload", data, content_type), "image2": part(SAME[0][1])}
    error = error_of(client.post("/verify", files=files), status, code)
    assert error["field"] == "image1"


def test_byte_limit(make_client: Callable[..., Any]) -> None:
    with make_client(max_upload_bytes=4000) as limited:
        files = {"image1": part(SAME[0][0]), "image2": part(SAME[0][1])}
        error = error_of(limited.post("/verify", files=files), 413, "image_too_large")
        assert error["field"] == "image1" and "4000" in error["message"]


def test_pixel_limit(make_client: Callable[..., Any]) -> None:
    with make_client(max_pixels=250 * 250 - 1) as limited:
        error = error_of(limited.post("/embed", files={"image": part(ORIGINAL)}), 413, "image_too_large")
        assert "250x250" in error["message"]


def test_request_body_limit_with_and_without_content_length(make_client: Callable[..., Any]) -> None:
    with make_client(max_upload_bytes=1000, max_images=2) as limited:
        boundary = "b0undary"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'
        body = head.encode() + b"\xff" * (3 * 1024 * 1024) + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        error_of(limited.post("/embed", content=body, headers=headers), 413, "image_too_large")

        def chunks() -> Any:  # no Content-Length: the limit is enforced while streaming
            for start in range(0, len(body), 64 * 1024):
                yield body[start : start + 64 * 1024]

        error_of(limited.post("/embed", content=chunks(), headers=headers), 413, "image_too_large")


def test_decode_unit() -> None:
    decoded = decode(photo(ORIGINAL), **LIMITS)
    assert decoded.format == "JPEG" and decoded.image.mode == "RGB" and decoded.image.size == (250, 250)
    with pytest.raises(InvalidImage):
        decode(photo(ORIGINAL)[:-500], **LIMITS)
    with pytest.raises(UnsupportedMediaType):
        decode(b"hello", declared_type="text/plain", **LIMITS)
    with pytest.raises(ImageTooLarge):
        decode(png_header_only(100_000, 100_000), **LIMITS)  # also over Pillow's own bomb limit
    with pytest.raises(ImageTooLarge):
        decode(photo(ORIGINAL), max_bytes=100, max_pixels=LIMITS["max_pixels"])


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    values = (np.asarray(original().convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    decoded = np.asarray(decode(data, **LIMITS).image)
    assert decoded.shape == (250, 250, 3)
    assert abs(float(decoded.mean()) - float(values.mean()) / 257) < 2  # not a white image
