"""Augmented views of a face: a small similarity jitter of the alignment plus an optional mirror.

Every teacher and the student see the *same* view of a face (the jitter is defined in normalised crop
coordinates and applied after alignment to each model's own template), so the teacher's neurons on a
view are a valid regression target for the student's input of that view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from service.alignment import similarity_transform, warp


@dataclass(frozen=True)
class View:
    """A geometric view: rotation (degrees), scale factor, shift (fraction of crop size), mirror."""

    angle: float = 0.0
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    flip: bool = False


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
    """Aligned crop ``(H, W, 3)`` of a view: the service's alignment, composed with the view's jitter."""
    base = np.vstack([similarity_transform(landmarks, template), [0.0, 0.0, 1.0]])
    crop = warp(image, (view_matrix(view, size) @ base)[:2], size)
    return np.ascontiguousarray(crop[:, ::-1]) if view.flip else crop
