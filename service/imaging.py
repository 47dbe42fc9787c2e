"""Upload bytes -> an upright 8-bit RGB image, or a clear error.

The format is recognised from the bytes (the declared content type only helps classify bytes that are no
image at all), the pixel count is checked from the header before anything is decoded (decompression bombs),
decoding is strict (a truncated file is an error, never a half-grey image), EXIF orientation is applied,
and grayscale, palette, 16-bit and alpha images become RGB.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from service.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType

SUPPORTED = ("JPEG", "PNG", "WEBP", "BMP")
_SUPPORTED_TEXT = "JPEG, PNG, WebP or BMP"

# Formats we recognise but do not accept: a clear 415 beats a vague "cannot decode".
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "PDF"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML"),
)
# Background for transparent pixels: what a viewer shows, and what the photo was most likely taken against.
_BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image and where it came from."""

    image: Image.Image
    format: str

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def sniff(data: bytes, declared_type: str | None = None) -> str:
    """Pillow format name of ``data`` if it is a supported image; raise 415 or 400 otherwise."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM"):
        return "BMP"
    head = data[:64].lstrip().lower()
    for signature, name in _OTHER_SIGNATURES:
        if head.startswith(signature.lower()):
            raise UnsupportedMediaType(f"{name} is not a supported image format; send {_SUPPORTED_TEXT}")
    if data[4:8] == b"ftyp":
        raise UnsupportedMediaType(f"HEIF/AVIF/MP4 is not a supported image format; send {_SUPPORTED_TEXT}")
    declared = (declared_type or "").split(";")[0].strip().lower()
    if (declared and not declared.startswith("image/") and declared != "application/octet-stream") or _is_text(data):
        shown = declared or "text"
        raise UnsupportedMediaType(f"{shown} is not an image; send {_SUPPORTED_TEXT}")
    raise InvalidImage(f"the file is not a {_SUPPORTED_TEXT} image")


def _is_text(data: bytes) -> bool:
    head = data[:2048]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a multi-byte character cut by the 2 KiB window
    return True


def decode(data: bytes, *, max_bytes: int, max_pixels: int, declared_type: str | None = None) -> DecodedImage:
    """Decode an upload strictly.

    Raises:
        InvalidImage: empty, corrupt or truncated. UnsupportedMediaType: not JPEG/PNG/WebP/BMP.
        ImageTooLarge: over ``max_bytes``, or over ``max_pixels`` by its header.
    """
    if not data:
        raise InvalidImage("the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the file is {len(data)} bytes; the limit is {max_bytes}")
    fmt = sniff(data, declared_type)
    image = _open(data, fmt, max_pixels)
    return DecodedImage(image=_to_rgb(_load_upright(image)), format=fmt)


def _open(data: bytes, fmt: str, max_pixels: int) -> Image.Image:
    """Read only the header and enforce the pixel limit before any pixel is decoded."""
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels: {exc}") from exc
    # Pillow's parsers raise many exception types (OSError, SyntaxError, struct.error, ...) on hostile input;
    # any failure here is the upload's fault.
    except Exception as exc:
        raise InvalidImage(f"cannot read the {fmt} header: {exc}") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    return image


def _load_upright(image: Image.Image) -> Image.Image:
    """Decode every pixel (truncated data raises: LOAD_TRUNCATED_IMAGES is False) and apply EXIF orientation."""
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an already upright photo
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels: {exc}") from exc
    except Exception as exc:  # as in _open: decoder failures on bad input are the upload's fault
        raise InvalidImage(f"the {image.format or 'image'} data is corrupt or truncated: {exc}") from exc
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> 8-bit RGB; transparent pixels are composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: Pillow's convert() clips to 255 (a white image); scale to 8 bits instead.
        values = np.asarray(image, dtype=np.uint32) >> 8
        image = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")
