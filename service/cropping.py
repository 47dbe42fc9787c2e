"""Aligned face crops from a photo decoded at reduced size, or from full-resolution pixels of the face only.

The photo is decoded at the size the detector needs (:func:`service.imaging.decode` with ``min_side``). The
crop is taken from that reduced image when it holds at least one pixel per crop pixel, i.e. when the similarity
transform from the face's landmarks onto the model's template (its crop size and template, from the manifest)
has a scale of at most 1 (:data:`MAX_REDUCED_SCALE`): the crop then samples the reduced image at or below its
resolution, as it samples the full-resolution photo after the box reduction that
:func:`service.alignment.align_antialiased` applies to large faces anyway. A smaller face would be upsampled
from the reduced image and lose detail; it is cropped from the full-resolution pixels of its own region,
through the very same :func:`~service.preprocessing.crop_face` call as on the whole photo, so that crop is
the one the service made before reduced decoding existed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from service.alignment import similarity_transform
from service.imaging import DecodedImage
from service.manifest import InputSpec
from service.preprocessing import crop_face

MAX_REDUCED_SCALE = 1.0
"""Largest crop-pixels-per-source-pixel at which the reduced image is used (no upsampling of it)."""


def crop_scale(landmarks: NDArray[np.floating], spec: InputSpec) -> float:
    """Crop pixels per source pixel when ``landmarks`` ``(5, 2)`` are warped onto the spec's template."""
    matrix = similarity_transform(landmarks, np.asarray(spec.template, dtype=np.float64))
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def from_reduced(decoded: DecodedImage, landmarks: NDArray[np.floating], spec: InputSpec) -> bool:
    """Whether the crop for ``spec`` can come from ``decoded.image`` (landmarks in its coordinates)."""
    return decoded.factor == 1 or crop_scale(landmarks, spec) <= MAX_REDUCED_SCALE


def source_box(landmarks: NDArray[np.floating], spec: InputSpec, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The region of a ``size`` (width, height) photo that the crop reads, with the margin that
    :func:`~service.alignment.align_antialiased` adds for its box reduction and the bilinear kernel."""
    matrix = similarity_transform(landmarks, np.asarray(spec.template, dtype=np.float64))
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    margin = (int(1.0 / scale) if scale > 0 else 1) + 2
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    corners = np.array([[0, 0, 1], [spec.width, 0, 1], [0, spec.height, 1], [spec.width, spec.height, 1]], float)
    source = corners @ inverse.T
    left, top = (np.floor(source.min(axis=0)).astype(int) - margin).tolist()
    right, bottom = (np.ceil(source.max(axis=0)).astype(int) + margin).tolist()
    left, top = min(max(left, 0), size[0] - 1), min(max(top, 0), size[1] - 1)
    return left, top, max(min(right, size[0]), left + 1), max(min(bottom, size[1]), top + 1)


def face_crops(
    decoded: DecodedImage, landmarks: NDArray[np.floating], specs: Sequence[InputSpec], reduced: bool | None = None
) -> list[NDArray[np.uint8]]:
    """One aligned crop ``(H, W, 3)`` per spec; ``landmarks`` ``(5, 2)`` are in ``decoded.image`` coordinates.

    ``reduced`` forces the source (tests, benchmarks); by default it is chosen per spec by :func:`from_reduced`.
    The full-resolution pixels, when a spec needs them, are read once for the union of the specs' regions.
    """
    use_reduced = [from_reduced(decoded, landmarks, s) if reduced is None else reduced for s in specs]
    crops: list[NDArray[np.uint8] | None] = [
        crop_face(decoded.image, landmarks, s) if ok else None for s, ok in zip(specs, use_reduced, strict=True)
    ]
    if not all(use_reduced):
        full = decoded.to_full(landmarks).astype(np.float64)
        boxes = [source_box(full, s, decoded.full_size) for s, ok in zip(specs, use_reduced, strict=True) if not ok]
        box = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
        region = decoded.full_region(box)
        shifted = full - np.asarray(box[:2], dtype=np.float64)
        crops = [
            crop if crop is not None else crop_face(region, shifted, s) for crop, s in zip(crops, specs, strict=True)
        ]
    return [crop for crop in crops if crop is not None]


def full_pixels_needed(decoded: DecodedImage, landmarks: NDArray[np.floating], specs: Sequence[InputSpec]) -> int:
    """Pixels a full-resolution read would decode for these crops (0 when the reduced image serves them all)."""
    if all(from_reduced(decoded, landmarks, s) for s in specs) or decoded.full is not None:
        return 0
    return decoded.width * decoded.height
