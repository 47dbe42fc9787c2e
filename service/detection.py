"""YuNet face detector in ONNX Runtime, with its anchor-free output decoding and NMS in numpy.

YuNet (OpenCV Zoo, MIT) predicts, on strides 8/16/32, a class and an objectness score, a box offset and
five landmark offsets per grid cell. OpenCV's ``FaceDetectorYN`` does the decoding in C++; we do it here so
the serving path needs no OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Face:
    """One detected face, in the coordinates of the image given to :meth:`FaceDetector.detect`.

    Attributes:
        box: ``(4,)`` x, y, width, height.
        score: detector confidence in [0, 1].
        landmarks: ``(5, 2)`` x, y of: eye on the image's left, eye on the image's right, nose tip,
            mouth corner on the image's left, mouth corner on the image's right.
    """

    box: NDArray[np.float32]
    score: float
    landmarks: NDArray[np.float32]


@dataclass(frozen=True)
class DetectorConfig:
    """How photos are scaled for detection and which candidates are kept."""

    max_side: int = 640  # YuNet is trained on faces ~10-300 px: larger photos are downscaled
    min_side: int = 160  # tiny photos (tight crops) are upscaled so the face is not bigger than the net sees
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    top_k: int = 5000


def _scale_for(height: int, width: int, cfg: DetectorConfig) -> float:
    long_side, short_side = max(height, width), min(height, width)
    if long_side > cfg.max_side:
        return cfg.max_side / long_side
    if short_side < cfg.min_side:
        return min(cfg.min_side / short_side, cfg.max_side / long_side)
    return 1.0


def _to_input(image: Image.Image, scale: float) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """RGB photo -> YuNet input ``(1, 3, H', W')`` (BGR, 0-255, padded to a multiple of 32) and the per-axis
    factor ``(2,)`` that maps input pixels back to the photo's pixels."""
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        # reducing_gap: a large photo is box-reduced first, so the downscale does not alias.
        resized = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0 if scale < 1 else None)
        back = np.array([image.width / resized.width, image.height / resized.height], dtype=np.float32)
        image = resized
    else:
        back = np.ones(2, dtype=np.float32)
    width, height = image.size
    blob = np.zeros((1, 3, height + -height % 32, width + -width % 32), dtype=np.float32)
    for channel, band in enumerate(reversed(image.split())):  # contiguous planes, BGR: 1.5x faster than a transpose
        blob[0, channel, :height, :width] = np.asarray(band)
    return blob, back


@lru_cache(maxsize=64)  # a few sizes recur (LFW photos, the quick pass): not one per photo size
def _anchors(rows: int, cols: int) -> NDArray[np.float32]:
    """``(rows * cols, 2)`` x, y of every grid cell, row by row."""
    grid_y, grid_x = np.divmod(np.arange(rows * cols, dtype=np.float32), cols)
    return np.stack([grid_x, grid_y], axis=1)


def _decode(
    outputs: dict[str, NDArray[np.float32]], height: int, width: int, threshold: float
) -> tuple[NDArray[np.float32], ...]:
    """Decode the grid cells scoring at least ``threshold`` into (scores (N,), boxes (N, 4) xywh, landmarks
    (N, 5, 2)) in input pixels. Only those cells are decoded: they are a few dozen of the thousands."""
    scores, boxes, landmarks = [], [], []
    for stride in STRIDES:
        rows, cols = height // stride, width // stride
        cls = outputs[f"cls_{stride}"].reshape(-1)
        obj = outputs[f"obj_{stride}"].reshape(-1)
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        keep = np.flatnonzero(score >= threshold)
        anchors = _anchors(rows, cols)[keep]
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
        kps = outputs[f"kps_{stride}"].reshape(-1, 5, 2)[keep]
        scores.append(score[keep])
        centre = (anchors + bbox[:, :2]) * stride
        size = np.exp(bbox[:, 2:]) * stride
        boxes.append(np.concatenate([centre - size / 2, size], axis=1))
        landmarks.append((kps + anchors[:, None, :]) * stride)
    return np.concatenate(scores), np.concatenate(boxes), np.concatenate(landmarks)


def nms(boxes: NDArray[np.float32], scores: NDArray[np.float32], threshold: float) -> list[int]:
    """Greedy non-maximum suppression on ``(N, 4)`` xywh boxes; returns kept indices, best first."""
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    areas = boxes[:, 2] * boxes[:, 3]
    order = np.argsort(-scores)
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        inter_w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        inter_h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = inter_w * inter_h
        iou = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = rest[iou <= threshold]
    return keep


class FaceDetector:
    """YuNet on one ONNX Runtime session. Thread-safe: ``InferenceSession.run`` may be called concurrently."""

    def __init__(self, session: ort.InferenceSession, config: DetectorConfig | None = None) -> None:
        self.session = session
        self.config = config or DetectorConfig()
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]

    def input_pixels(self, size: tuple[int, int]) -> int:
        """Memory of detecting on a ``size`` (width, height) photo, in RGB-pixel units (3 bytes): its resized
        copy (1 per pixel) and the float32 network input (4 per pixel, padded to a multiple of 32)."""
        scale = _scale_for(size[1], size[0], self.config)
        width, height = max(1, round(size[0] * scale)), max(1, round(size[1] * scale))
        return width * height + 4 * (width + -width % 32) * (height + -height % 32)

    def detect(self, image: Image.Image | NDArray[np.uint8], scale: float | None = None) -> list[Face]:
        """Find faces in an RGB photo (Pillow image or ``(H, W, 3)`` uint8), in its full-resolution coordinates.

        Large photos are downscaled (and tiny ones upscaled) to the configured sizes for the network only, or by
        ``scale`` when given (1: as it is); faces come back best score first.
        """
        cfg = self.config
        photo = image if isinstance(image, Image.Image) else Image.fromarray(image)
        blob, back = _to_input(photo, _scale_for(photo.height, photo.width, cfg) if scale is None else scale)
        raw = self.session.run(self.output_names, {self.input_name: blob})
        outputs = dict(zip(self.output_names, raw, strict=True))
        scores, boxes, landmarks = _decode(outputs, blob.shape[2], blob.shape[3], cfg.score_threshold)
        candidates = np.argsort(-scores)[: cfg.top_k]
        kept = candidates[nms(boxes[candidates], scores[candidates], cfg.nms_threshold)]
        return [
            Face(
                box=(boxes[i] * np.tile(back, 2)).astype(np.float32),
                score=float(scores[i]),
                landmarks=(landmarks[i] * back).astype(np.float32),
            )
            for i in kept
        ]


def main_face_index(faces: list[Face], height: int, width: int) -> int:
    """Index of the main face: largest area, penalised by 2 x squared offset of its centre from the image centre.

    This is insightface's rule: it keeps portraits right and does not pick a bigger bystander near the edge.
    """
    centre = np.array([width / 2, height / 2], dtype=np.float32)
    values = [float(f.box[2] * f.box[3] - 2.0 * np.sum((f.box[:2] + f.box[2:] / 2 - centre) ** 2)) for f in faces]
    return int(np.argmax(values))
