"""The canonical aligned crop kept (only when the operator enables it) so a gallery can be re-embedded.

Models differ in crop size and template (the student's 64x64, SFace's 112x112, dlib's 150x150), so no one
model's crop serves the next model. The face is kept instead on a model-independent canvas: 256x256 with
its five landmarks at fixed points (the ArcFace template, 1.5x, centred), with room around the face for
the loosest template. A new model re-aligns from it exactly as from a photo: the landmarks are known.
PNG, lossless: re-embedding warps twice (photo -> canvas -> model crop) instead of once, nothing more.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from service.alignment import ARCFACE_112, align_antialiased
from service.detection import Face

SIZE = 256
_SCALE = 1.5
LANDMARKS: NDArray[np.float32] = (np.asarray(ARCFACE_112) * _SCALE + (SIZE - 112 * _SCALE) / 2).astype(np.float32)
"""Where the five landmarks are on the canvas ``(5, 2)``."""


def canonical_crop(image: Image.Image, face: Face) -> bytes:
    """The face of a full-resolution photo on the canonical canvas, as PNG bytes."""
    pixels = align_antialiased(image, face.landmarks, LANDMARKS.astype(np.float64), (SIZE, SIZE))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def crop_face(data: bytes) -> tuple[Image.Image, Face]:
    """A stored crop as a photo and its face, ready for :meth:`service.engine.Engine.embed`."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    box = np.array([0.0, 0.0, SIZE, SIZE], np.float32)
    return image, Face(box=box, score=1.0, landmarks=LANDMARKS.copy())
