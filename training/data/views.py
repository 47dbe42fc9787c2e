"""Augmented views of a face: a similarity jitter of the alignment plus an optional mirror, and for the rich
views (``RICH_FIRST`` on) photometric changes, an occluder and a second face mixed in.

Every teacher and the student see the *same* view of a face (the jitter is defined in normalised crop
coordinates and applied after alignment to each model's own template), so the teacher's neurons on a
view are a valid regression target for the student's input of that view. A rich view is first rendered once
on a canonical crop (``CANVAS``: the ArcFace template on a larger canvas that holds every model's crop), changed
there, and every model's crop is cut from that one changed picture: the teachers label the changed face itself
(for a mixed face, the mixed picture: never a mix of their outputs).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageEnhance, ImageFilter

from service.alignment import ARCFACE_112, similarity_transform, warp_antialiased

RICH_FIRST = 6  # views 1-5 are plain geometric jitters (as cached before rich views existed)
CANVAS = (288, 288)
CANVAS_TEMPLATE = np.array(ARCFACE_112) * (180 / 112) + (288 - 180) / 2  # the ArcFace crop is the middle 180 px


@dataclass(frozen=True)
class Photometric:
    """Colour and quality changes on the canonical crop; neutral values change nothing."""

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    grey: bool = False
    blur: float = 0.0  # Gaussian radius, canvas pixels
    noise: float = 0.0  # std of additive Gaussian noise, 0-255 units
    jpeg: int = 0  # re-encode at this JPEG quality (0: no)
    downscale: float = 1.0  # shrink by this factor and enlarge back (low-resolution capture)


@dataclass(frozen=True)
class Occluder:
    """A filled rectangle in canonical-crop fractions; ``fill`` RGB, or noise when None."""

    x: float
    y: float
    w: float
    h: float
    fill: tuple[int, int, int] | None


@dataclass(frozen=True)
class Mix:
    """Another face of the same set (``partner`` in [0, 1) picks it) mixed in: ``mixup`` blends the pictures with
    weight ``lam`` on this face; ``cutmix`` pastes the partner into the box (x, y, w, h fractions)."""

    kind: str
    partner: float
    lam: float = 1.0
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class View:
    """A geometric view: rotation (degrees), scale factor, shift (fraction of crop size), mirror; and for rich
    views what changes the picture (see the module docstring)."""

    angle: float = 0.0
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    flip: bool = False
    photo: Photometric | None = None
    occluder: Occluder | None = None
    mix: Mix | None = None

    @property
    def rich(self) -> bool:
        return self.photo is not None or self.occluder is not None or self.mix is not None


IDENTITY = View()
MIRROR = View(flip=True)


def random_view(
    rng: np.random.Generator, max_angle: float = 10.0, max_scale: float = 0.08, max_shift: float = 0.04
) -> View:
    """A random jittered view; mirrored half of the time."""
    return View(
        angle=float(rng.uniform(-max_angle, max_angle)),
        scale=float(np.exp(rng.uniform(-max_scale, max_scale))),
        dx=float(rng.uniform(-max_shift, max_shift)),
        dy=float(rng.uniform(-max_shift, max_shift)),
        flip=bool(rng.random() < 0.5),
    )


def view_matrix(view: View, size: tuple[int, int]) -> NDArray[np.float64]:
    """3x3 similarity in crop pixels: rotate/scale about the crop centre, then shift."""
    cx, cy = size[0] / 2, size[1] / 2
    theta = np.deg2rad(view.angle)
    c, s = view.scale * np.cos(theta), view.scale * np.sin(theta)
    return np.array(
        [
            [c, -s, cx - c * cx + s * cy + view.dx * size[0]],
            [s, c, cy - s * cx - c * cy + view.dy * size[1]],
            [0.0, 0.0, 1.0],
        ]
    )


def crop_view(
    image: Image.Image,
    landmarks: NDArray[np.floating],
    template: NDArray[np.floating],
    size: tuple[int, int],
    view: View = IDENTITY,
) -> NDArray[np.uint8]:
    """Aligned crop ``(H, W, 3)`` of a view: the service's alignment, composed with the view's jitter. The plain
    view is exactly the served crop (:func:`service.preprocessing.crop_face`: the same antialiased warp)."""
    base = np.vstack([similarity_transform(landmarks, template), [0.0, 0.0, 1.0]])
    crop = warp_antialiased(image, (view_matrix(view, size) @ base)[:2], size)
    return np.ascontiguousarray(crop[:, ::-1]) if view.flip else crop


def rich_view(rng: np.random.Generator) -> View:
    """A random rich view: a wider jitter, one or two photometric changes, an occluder (30 %) and a mixed-in
    face (20 %: mixup or cutmix, half each)."""
    base = random_view(rng, max_angle=15.0, max_scale=0.12, max_shift=0.06)
    kinds = rng.choice(["colour", "blur", "noise", "jpeg", "downscale"], size=int(rng.integers(1, 3)), replace=False)
    photo = Photometric(
        brightness=float(rng.uniform(0.6, 1.4)) if "colour" in kinds else 1.0,
        contrast=float(rng.uniform(0.6, 1.4)) if "colour" in kinds else 1.0,
        saturation=float(rng.uniform(0.0, 1.6)) if "colour" in kinds else 1.0,
        grey=bool("colour" in kinds and rng.random() < 0.25),
        blur=float(rng.uniform(0.6, 2.5)) if "blur" in kinds else 0.0,
        noise=float(rng.uniform(3.0, 15.0)) if "noise" in kinds else 0.0,
        jpeg=int(rng.integers(10, 50)) if "jpeg" in kinds else 0,
        downscale=float(rng.uniform(2.0, 5.0)) if "downscale" in kinds else 1.0,
    )
    occluder = None
    if rng.random() < 0.3:
        w, h = rng.uniform(0.12, 0.3, size=2)
        x, y = rng.uniform(0.2, 0.8 - w), rng.uniform(0.2, 0.8 - h)
        fill = None if rng.random() < 0.3 else tuple(int(v) for v in rng.integers(0, 256, size=3))
        occluder = Occluder(float(x), float(y), float(w), float(h), fill)  # type: ignore[arg-type]
    mix = None
    if rng.random() < 0.2:
        partner = float(rng.random())
        if rng.random() < 0.5:
            mix = Mix("mixup", partner, lam=float(rng.uniform(0.5, 0.8)))
        else:
            w, h = rng.uniform(0.2, 0.35, size=2)
            x, y = rng.uniform(0.2, 0.8 - w), rng.uniform(0.2, 0.8 - h)
            mix = Mix("cutmix", partner, box=(float(x), float(y), float(w), float(h)))
    return View(base.angle, base.scale, base.dx, base.dy, base.flip, photo, occluder, mix)


def _box(fractions: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    x, y, w, h = fractions
    return round(x * size[0]), round(y * size[1]), round((x + w) * size[0]), round((y + h) * size[1])


def _photometric(canvas: Image.Image, p: Photometric, rng: np.random.Generator) -> Image.Image:
    if p.downscale > 1.0:
        small = (max(8, round(canvas.width / p.downscale)), max(8, round(canvas.height / p.downscale)))
        canvas = canvas.resize(small, Image.Resampling.BILINEAR).resize(canvas.size, Image.Resampling.BILINEAR)
    if p.brightness != 1.0:
        canvas = ImageEnhance.Brightness(canvas).enhance(p.brightness)
    if p.contrast != 1.0:
        canvas = ImageEnhance.Contrast(canvas).enhance(p.contrast)
    if p.saturation != 1.0:
        canvas = ImageEnhance.Color(canvas).enhance(p.saturation)
    if p.grey:
        canvas = canvas.convert("L").convert("RGB")
    if p.blur > 0:
        canvas = canvas.filter(ImageFilter.GaussianBlur(p.blur))
    if p.noise > 0:
        noisy = np.asarray(canvas, np.float32) + rng.normal(0.0, p.noise, (canvas.height, canvas.width, 3))
        canvas = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if p.jpeg:
        buffer = io.BytesIO()
        canvas.save(buffer, "JPEG", quality=p.jpeg)
        with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
            canvas = decoded.convert("RGB")
    return canvas


def rich_canvas(
    image: Image.Image,
    landmarks: NDArray[np.floating],
    view: View,
    rng: np.random.Generator,
    partner: tuple[Image.Image, NDArray[np.floating]] | None = None,
) -> Image.Image:
    """The canonical crop of a rich view with its mix, occluder and photometric changes applied (in that order:
    the occluder and the second face get the same blur, noise and compression as the face)."""
    canvas = warp_antialiased(image, similarity_transform(landmarks, CANVAS_TEMPLATE), CANVAS)
    if view.mix is not None and partner is not None:
        other = warp_antialiased(partner[0], similarity_transform(partner[1], CANVAS_TEMPLATE), CANVAS)
        if view.mix.kind == "mixup":
            blend = view.mix.lam * canvas.astype(np.float32) + (1 - view.mix.lam) * other.astype(np.float32)
            canvas = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
        else:
            x0, y0, x1, y1 = _box(view.mix.box, CANVAS)
            canvas = canvas.copy()
            canvas[y0:y1, x0:x1] = other[y0:y1, x0:x1]
    if view.occluder is not None:
        o = view.occluder
        x0, y0, x1, y1 = _box((o.x, o.y, o.w, o.h), CANVAS)
        canvas = canvas.copy()
        shape = (max(0, y1 - y0), max(0, x1 - x0), 3)
        canvas[y0:y1, x0:x1] = rng.integers(0, 256, size=shape) if o.fill is None else np.array(o.fill, np.uint8)
    picture = Image.fromarray(canvas)
    return _photometric(picture, view.photo, rng) if view.photo is not None else picture


def render_view(
    image: Image.Image,
    landmarks: NDArray[np.floating],
    crops: Mapping[str, tuple[NDArray[np.floating], tuple[int, int]]],
    view: View = IDENTITY,
    rng: np.random.Generator | None = None,
    partner: tuple[Image.Image, NDArray[np.floating]] | None = None,
) -> dict[str, NDArray[np.uint8]]:
    """Every model's crop (name -> (template, size)) of one view of a face, all cut from the same picture."""
    if not view.rich:
        return {name: crop_view(image, landmarks, t, size, view) for name, (t, size) in crops.items()}
    canvas = rich_canvas(image, landmarks, view, rng if rng is not None else np.random.default_rng(0), partner)
    return {name: crop_view(canvas, CANVAS_TEMPLATE, t, size, view) for name, (t, size) in crops.items()}
