"""Face crop -> model input, exactly as the manifest says: one path for training and serving alike."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from service.alignment import align_antialiased
from service.manifest import InputSpec


def crop_face(image: Image.Image, landmarks: NDArray[np.floating], spec: InputSpec) -> NDArray[np.uint8]:
    """Aligned RGB crop ``(H, W, 3)`` of the face with 5 ``landmarks`` ``(5, 2)`` onto the spec's template."""
    template = np.asarray(spec.template, dtype=np.float64)
    return align_antialiased(image, landmarks, template, (spec.width, spec.height))


def to_tensor(crops: NDArray[np.uint8], spec: InputSpec) -> NDArray[np.float32]:
    """RGB crops ``(N, H, W, 3)`` uint8 -> input tensor ``(N, 3, H, W)`` float32: colour order, mean, std."""
    pixels = crops.astype(np.float32)
    if spec.colour_order == "BGR":
        pixels = pixels[..., ::-1]
    if spec.mean != (0.0, 0.0, 0.0):
        pixels -= np.asarray(spec.mean, dtype=np.float32)
    if spec.std != (1.0, 1.0, 1.0):
        pixels /= np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))
