"""5-point similarity alignment in numpy + Pillow (no OpenCV).

A similarity transform (rotation, uniform scale, translation) is fitted from the detected landmarks to the
model's template by least squares (Umeyama 1991), and the crop is warped with Pillow's affine transform.
Pixels that fall outside the photo are black (a constant border), in training and in serving alike.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image

# ArcFace / insightface 112x112 template: eyes, nose tip, mouth corners, in image coordinates.
ARCFACE_112: tuple[tuple[float, float], ...] = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


def similarity_transform(src: NDArray[np.floating], dst: NDArray[np.floating]) -> NDArray[np.float64]:
    """Least-squares similarity transform mapping ``src`` (N, 2) onto ``dst`` (N, 2); returns a 2x3 matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1  # reflection: flip the smallest singular direction
    rotation = u @ np.diag(sign) @ vt
    scale = float(np.sum(s * sign) / np.mean(np.sum(src_c**2, axis=1)))
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def warp(image: Image.Image, matrix: NDArray[np.float64], size: tuple[int, int]) -> NDArray[np.uint8]:
    """Warp ``image`` by the 2x3 forward ``matrix`` into a ``size`` = (width, height) RGB crop ``(H, W, 3)``."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)[:2]  # Pillow wants output -> input
    # Pillow samples at pixel centres offset by 0.5 relative to the usual convention; compensate so the
    # landmark that maps to template (x, y) lands on pixel (x, y) as with OpenCV's warpAffine.
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    inverse = (np.vstack([inverse, [0.0, 0.0, 1.0]]) @ np.linalg.inv(shift))[:2]
    inverse = (shift @ np.vstack([inverse, [0.0, 0.0, 1.0]]))[:2]
    crop = image.transform(size, Image.Transform.AFFINE, tuple(inverse.reshape(-1)), Image.Resampling.BILINEAR)
    return np.asarray(crop, dtype=np.uint8)


def template_for(template: NDArray[np.floating], size: tuple[int, int], base: tuple[int, int]) -> NDArray[np.float64]:
    """Scale a template defined on a ``base`` (width, height) crop to a ``size`` crop."""
    factor = np.array([size[0] / base[0], size[1] / base[1]])
    return np.asarray(np.asarray(template, dtype=np.float64) * factor, dtype=np.float64)


def align(
    image: Image.Image, landmarks: NDArray[np.floating], template: NDArray[np.floating], size: tuple[int, int]
) -> NDArray[np.uint8]:
    """Crop the face with 5 ``landmarks`` (5, 2) from an RGB ``image`` onto ``template`` at ``size`` (W, H)."""
    return warp(image, similarity_transform(landmarks, template), size)


def align_antialiased(
    image: Image.Image, landmarks: NDArray[np.floating], template: NDArray[np.floating], size: tuple[int, int]
) -> NDArray[np.uint8]:
    """:func:`align`, but a face more than twice the crop's scale is box-reduced first (:func:`warp_antialiased`)."""
    return warp_antialiased(image, similarity_transform(landmarks, template), size)


def warp_antialiased(image: Image.Image, matrix: NDArray[np.float64], size: tuple[int, int]) -> NDArray[np.uint8]:
    """:func:`warp` by a similarity ``matrix`` (2x3), but a source more than twice the crop's scale is box-reduced
    first.

    Bilinear sampling reads 4 pixels per output pixel, so shrinking a 1000-pixel face in a full-resolution
    photo straight to 112 pixels aliases. Reducing the region the crop covers by an integer factor first
    (a box filter, :meth:`PIL.Image.Image.reduce`) leaves a warp of scale >= 0.5. Faces at the crop's scale
    take exactly the :func:`warp` path. Training crops every view of every face through this function too.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = int(1.0 / scale) if scale > 0 else 1
    if factor < 2:
        return warp(image, matrix, size)
    # The source region the crop covers: its corners mapped back, plus a margin for the bilinear kernel.
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    corners = np.array([[0, 0, 1], [size[0], 0, 1], [0, size[1], 1], [size[0], size[1], 1]], dtype=np.float64)
    source = corners @ inverse.T
    left, top = np.floor(source.min(axis=0)).astype(int) - factor
    right, bottom = np.ceil(source.max(axis=0)).astype(int) + factor
    left, top = max(int(left), 0), max(int(top), 0)
    right, bottom = min(int(right), image.width), min(int(bottom), image.height)
    if right - left < factor or bottom - top < factor:
        return warp(image, matrix, size)  # the face is (almost) outside the photo: nothing to reduce
    reduced = image.reduce(factor, box=(left, top, right, bottom))
    # Pixel i of the reduced image averages source pixels [i*f, (i+1)*f): a source point p lands on
    # (p - corner + 0.5) / f - 0.5 of it, so the warp from the reduced image is the matrix after that map.
    to_reduced = np.array(
        [[factor, 0.0, left + 0.5 * factor - 0.5], [0.0, factor, top + 0.5 * factor - 0.5], [0.0, 0.0, 1.0]]
    )
    return warp(reduced, (np.vstack([matrix, [0.0, 0.0, 1.0]]) @ to_reduced)[:2], size)
