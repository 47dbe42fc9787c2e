"""Where the main face of a photo is: a quick pass over a small copy, then its landmarks refined on a close-up.

YuNet's cost grows with its input's pixels (3.7 ms at 640 px, 1.1 ms at 320 px, 0.5 ms at 192 px on this
machine's CPU), and so does the cost of shrinking the photo for it (Pillow's bilinear resize to 640 px cost as
much as YuNet). A photo whose long side is at least 1.5 x :data:`COARSE_SIDE` is therefore searched on a copy
box-reduced by the integer factor that brings its long side nearest ``COARSE_SIDE`` (192-384 px; the cheapest
anti-aliased shrink Pillow has). 240 and 320 px find the same main face as 640 px on every real photo of
``../shared/data/photos`` and a face on every LFW and training-pool image (``python -m bench.detector_size``).
Landmarks from a face a few dozen pixels wide are coarse and the 64x64 crop is sensitive to them, so the main
face alone is detected again on a close-up: a square of :data:`REFINE_CONTEXT` times its box cut from the
decoded photo and box-reduced to about :data:`REFINE_SIDE` px (never enlarged), where a large face is 64-145 px
wide, as LFW's and the training crops' faces are when they are detected, from pixels at least as sharp as a
640 px pass would see.

Smaller photos (LFW's 250x250, tight crops) are searched as they always were, in one pass at the detector's
configured sizes, so their faces and embeddings are unchanged. So are photos whose quick pass finds nothing (a
face too small for it gets a second chance at 640 px) and requests with ``require_single_face``, whose face
count must be as complete as the detector can make it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.detection import Face, FaceDetector, main_face_index
from service.errors import MultipleFaces, NoFace

COARSE_SIDE = 288
"""Long side, in pixels, about which a large photo is searched for faces (an integer reduction: 192-384 px)."""
REFINE_SIDE = 192
"""Side of the close-up on which the main face's landmarks are measured again (an integer reduction of it)."""
REFINE_CONTEXT = 2.0
"""Close-up side / the face box's long side: room for YuNet to see the whole head."""
MIN_REFINE_IOU = 0.3
"""A close-up detection is the main face when its box overlaps the quick pass's by at least this IoU."""


@dataclass(frozen=True)
class Located:
    """The main face (in the coordinates of the image searched), faces found on the whole photo, and the pass:
    ``"full"`` (one pass at the configured sizes), ``"refined"`` (quick pass + close-up) or ``"coarse"`` (quick
    pass; the close-up did not find that face again, so its quick-pass landmarks are used)."""

    face: Face
    count: int
    method: str


def locate(detector: FaceDetector, image: Image.Image, *, require_single_face: bool) -> Located:
    """The main face of an RGB ``image`` and how many faces it has (see the module docstring).

    Raises:
        NoFace: no face at all. MultipleFaces: ``require_single_face`` and more than one face.
    """
    if not require_single_face and coarse_factor(image.size) > 1:
        faces = coarse_faces(detector, image)
        if faces:
            main = faces[main_face_index(faces, image.height, image.width)]
            refined = refine(detector, image, main)
            return Located(refined or main, len(faces), "refined" if refined else "coarse")
    faces = detector.detect(image)
    if not faces:
        raise NoFace("no face was found")
    if require_single_face and len(faces) > 1:
        raise MultipleFaces(f"{len(faces)} faces were found and require_single_face is set")
    return Located(faces[main_face_index(faces, image.height, image.width)], len(faces), "full")


def coarse_factor(size: tuple[int, int]) -> int:
    """The integer box reduction of the quick pass: long side nearest :data:`COARSE_SIDE` (1: none)."""
    return max(1, round(max(size) / COARSE_SIDE))


def coarse_faces(detector: FaceDetector, image: Image.Image) -> list[Face]:
    """Faces found on ``image`` box-reduced by :func:`coarse_factor`, in ``image`` pixels."""
    factor = coarse_factor(image.size)
    faces = detector.detect(image.reduce(factor) if factor > 1 else image, scale=1.0)
    return [_mapped(face, factor, (0, 0)) for face in faces]


def refine(detector: FaceDetector, image: Image.Image, face: Face) -> Face | None:
    """``face`` detected again on a close-up of itself (see the module docstring), in ``image`` pixels; ``None``
    when the close-up shows no face overlapping it."""
    x, y, width, height = (float(v) for v in face.box)
    side = REFINE_CONTEXT * max(width, height)
    factor = max(1, round(side / REFINE_SIDE))
    left, top = round(x + width / 2 - side / 2), round(y + height / 2 - side / 2)
    box = (max(0, left), max(0, top), min(image.width, round(left + side)), min(image.height, round(top + side)))
    if box[2] - box[0] < factor or box[3] - box[1] < factor:
        return None
    close_up = image.reduce(factor, box=box) if factor > 1 else image.crop(box)
    found = [_mapped(f, factor, box[:2]) for f in detector.detect(close_up, scale=1.0)]
    overlaps = [iou(f.box, face.box) for f in found]
    if not found or max(overlaps) < MIN_REFINE_IOU:
        return None
    return found[int(np.argmax(overlaps))]


def _mapped(face: Face, factor: int, origin: tuple[int, int]) -> Face:
    """A face found on an image box-reduced by ``factor`` from a region at ``origin``, in the source's pixels:
    reduced pixel ``i`` averages source pixels ``[i f, (i + 1) f)``, centre ``(i + 0.5) f - 0.5``."""
    if factor == 1 and origin == (0, 0):
        return face
    shift = np.asarray(origin, dtype=np.float32) + 0.5 * (factor - 1)
    corner = face.box[:2] * factor + shift
    box = np.concatenate([corner, face.box[2:] * factor]).astype(np.float32)
    return Face(box=box, score=face.score, landmarks=(face.landmarks * factor + shift).astype(np.float32))


def iou(first: np.ndarray, second: np.ndarray) -> float:
    """Intersection over union of two ``(4,)`` x, y, width, height boxes."""
    x1, y1 = max(first[0], second[0]), max(first[1], second[1])
    x2 = min(first[0] + first[2], second[0] + second[2])
    y2 = min(first[1] + first[3], second[1] + second[3])
    inter = max(0.0, float(x2 - x1)) * max(0.0, float(y2 - y1))
    return inter / (float(first[2] * first[3] + second[2] * second[3]) - inter + 1e-9)
