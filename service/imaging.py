"""Upload bytes -> an upright 8-bit RGB image, or a clear error.

The format is recognised from the bytes (the declared content type only helps classify bytes that are no
image at all), the pixel count is checked from the header before anything is decoded (decompression bombs),
decoding is strict (a truncated file is an error, never a half-grey image), EXIF orientation is applied,
and grayscale, palette, 16-bit and alpha images become RGB.

Decoding happens at the size the pipeline needs: :func:`open_image` reads the header and plans an integer
reduction (JPEG: libjpeg's DCT-domain scaling, so a 12 MP photo never exists at full resolution in memory;
other formats: a full decode, then a box reduction), and :attr:`PendingImage.pixels` says what decoding will
hold, so the pixel budget can be reserved before any pixel is made. :meth:`DecodedImage.full_region` gives
back the full-resolution pixels of one region (a face too small in the reduced image).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
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


# Orientation tag -> (axes swapped, upright x mirrored, upright y mirrored): how an upright pixel relates to a
# stored one. A reduced image's last row/column covers fewer source pixels; on a mirrored axis it ends up first.
_ORIENTATION = {
    1: (False, False, False),
    2: (False, True, False),
    3: (False, True, True),
    4: (False, False, True),
    5: (True, False, False),
    6: (True, True, False),
    7: (True, True, True),
    8: (True, False, True),
}
_REDUCTIONS = (8, 4, 2)  # the DCT-domain scales of libjpeg (and the integer reductions offered for other formats)


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image, possibly reduced by an integer ``factor`` from the upload's full resolution.

    Pixel ``i`` of ``image`` covers full-resolution pixels ``[i * factor, (i + 1) * factor)`` (shifted by ``offset``
    on an axis that EXIF orientation mirrored). :meth:`full_region` gives full-resolution pixels of a region.
    """

    image: Image.Image
    format: str
    full_size: tuple[int, int] = (0, 0)
    """Upright (width, height) of the upload at full resolution."""
    factor: int = 1
    offset: tuple[int, int] = (0, 0)
    data: bytes = field(default=b"", repr=False)
    full: Image.Image | None = field(default=None, repr=False)
    """The full-resolution RGB image when it had to be decoded anyway (formats with no reduced decoding)."""

    @property
    def width(self) -> int:
        return self.full_size[0] or self.image.width

    @property
    def height(self) -> int:
        return self.full_size[1] or self.image.height

    def to_full(self, points: NDArray[np.floating]) -> NDArray[np.float32]:
        """``(..., 2)`` coordinates in ``image`` -> in the full-resolution photo (pixel centres at integers)."""
        if self.factor == 1:
            return np.asarray(points, dtype=np.float32)
        full = (np.asarray(points, dtype=np.float64) + 0.5) * self.factor - 0.5 + np.asarray(self.offset)
        return np.asarray(full, dtype=np.float32)

    def to_reduced(self, points: NDArray[np.floating]) -> NDArray[np.float64]:
        """Inverse of :meth:`to_full`."""
        if self.factor == 1:
            return np.asarray(points, dtype=np.float64)
        reduced = (np.asarray(points, dtype=np.float64) - np.asarray(self.offset) + 0.5) / self.factor - 0.5
        return np.asarray(reduced, dtype=np.float64)

    def full_region(self, box: tuple[int, int, int, int]) -> Image.Image:
        """Full-resolution RGB pixels of ``box`` = (left, top, right, bottom), clipped to the photo.

        A reduced JPEG is decoded again at full resolution, cropped, and the rest is dropped at once.
        """
        if self.factor == 1:
            return self.image.crop(box)
        if self.full is not None:
            return self.full.crop(box)
        image = _open(self.data, self.format, self.width * self.height)
        return _to_rgb(_load_upright(image).crop(box))


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


def decode(
    data: bytes, *, max_bytes: int, max_pixels: int, declared_type: str | None = None, min_side: int | None = None
) -> DecodedImage:
    """:func:`open_image`, then :meth:`PendingImage.decode`."""
    return open_image(
        data, max_bytes=max_bytes, max_pixels=max_pixels, declared_type=declared_type, min_side=min_side
    ).decode()


def open_image(
    data: bytes, *, max_bytes: int, max_pixels: int, declared_type: str | None = None, min_side: int | None = None
) -> PendingImage:
    """Check an upload and read its header only; with ``min_side``, plan the cheapest integer reduction whose
    long side is still at least ``min_side``.

    Raises:
        InvalidImage: empty, or the header is corrupt. UnsupportedMediaType: not JPEG/PNG/WebP/BMP.
        ImageTooLarge: over ``max_bytes``, or over ``max_pixels`` by its header.
    """
    if not data:
        raise InvalidImage("the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the file is {len(data)} bytes; the limit is {max_bytes}")
    fmt = sniff(data, declared_type)
    image = _open(data, fmt, max_pixels)
    return PendingImage(image, fmt, data, reduction(image.size, min_side), _orientation(image))


@dataclass(frozen=True)
class PendingImage:
    """An upload whose header is read and checked, not yet decoded: :attr:`pixels` says what decoding costs."""

    header: Image.Image
    format: str
    data: bytes = field(repr=False)
    factor: int
    orientation: int

    @property
    def upright_size(self) -> tuple[int, int]:
        width, height = self.header.size
        return (height, width) if _ORIENTATION[self.orientation][0] else (width, height)

    @property
    def reduced_size(self) -> tuple[int, int]:
        return _reduced(self.upright_size, self.factor)

    @property
    def pixels(self) -> int:
        """Pixels :meth:`decode` will hold: the reduced image only for JPEG (decoded in the DCT domain), the
        full-resolution one too for the other formats."""
        width, height = self.reduced_size
        full = 0 if self.format == "JPEG" or self.factor == 1 else self.header.width * self.header.height
        return width * height + full

    def decode(self) -> DecodedImage:
        """Decode strictly (truncated data raises), apply EXIF orientation, make RGB; reduced if planned.

        Raises:
            InvalidImage: corrupt or truncated data.
        """
        image, factor, upright = self.header, self.factor, self.upright_size
        if factor == 1:
            return DecodedImage(image=_to_rgb(_load_upright(image)), format=self.format, full_size=upright)
        if self.format == "JPEG" and image.draft(image.mode, (image.width // factor, image.height // factor)):
            factor = int(image.decoderconfig[0])  # type: ignore[attr-defined]  # JpegImageFile: the scale libjpeg uses
            return DecodedImage(
                image=_to_rgb(_load_upright(image)),
                format=self.format,
                full_size=upright,
                factor=factor,
                offset=_offset(self.orientation, upright, factor),
                data=self.data,
            )
        full = _to_rgb(_load_upright(image))  # no reduced decoding in Pillow for this format: decode, box-reduce
        return DecodedImage(
            image=full.reduce(factor), format=self.format, full_size=full.size, factor=factor, full=full
        )


def _reduced(size: tuple[int, int], factor: int) -> tuple[int, int]:
    return -(-size[0] // factor), -(-size[1] // factor)


def reduction(size: tuple[int, int], min_side: int | None) -> int:
    """Largest of 8, 4, 2 (else 1) that keeps the long side of ``size`` at ``min_side`` or more."""
    if min_side is None:
        return 1
    return next((f for f in _REDUCTIONS if max(size) // f >= min_side), 1)


def _orientation(image: Image.Image) -> int:
    value = image.getexif().get(0x0112, 1)
    return value if value in _ORIENTATION else 1


def _offset(orientation: int, upright: tuple[int, int], factor: int) -> tuple[int, int]:
    """Full-resolution shift of the reduced grid on the upright axes that EXIF orientation mirrors."""
    _, mirror_x, mirror_y = _ORIENTATION[orientation]
    reduced = _reduced(upright, factor)
    short_x, short_y = upright[0] - reduced[0] * factor, upright[1] - reduced[1] * factor  # <= 0: partial pixels
    return (short_x if mirror_x else 0, short_y if mirror_y else 0)


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
