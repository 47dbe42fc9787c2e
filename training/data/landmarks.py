"""Face landmarks of every image of a set, found by the service's own detector, cached per file list.

Training and serving preprocess identically: landmarks come from ``service.detection`` (YuNet + the main-face
rule) and crops from ``service.alignment``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from tqdm import tqdm

from service.detection import DetectorConfig, FaceDetector, main_face_index
from training.data.sets import load_rgb
from training.paths import CACHE, MODELS

log = logging.getLogger(__name__)

NOSE_DEPTH = 0.6


def estimated_yaw(points: NDArray[np.floating]) -> NDArray[np.float64]:
    """``(N,)`` absolute yaw in degrees from ``(N, 5, 2)`` landmarks (left eye, right eye, nose, mouth x2).

    With the nose tip ``NOSE_DEPTH`` eye distances in front of the eye line, a head turned by ``yaw`` moves the nose
    off the eyes' midpoint by ``NOSE_DEPTH * tan(yaw)`` eye distances (the eye distance itself shrinks by
    ``cos(yaw)``, which cancels). Coarse, but monotonic in the true yaw and free."""
    p = np.asarray(points, np.float64)
    eyes = p[:, 1] - p[:, 0]
    distance = np.maximum(np.linalg.norm(eyes, axis=1), 1e-6)
    # the nose's offset from the eyes' midpoint, along the eye line, in eye distances
    offset = np.sum((p[:, 2] - (p[:, 0] + p[:, 1]) / 2) * eyes, axis=1) / distance**2
    yaw: NDArray[np.float64] = np.degrees(np.arctan(np.abs(offset) / NOSE_DEPTH))
    return yaw


@dataclass(frozen=True)
class Landmarks:
    """Detections for a list of images (relative to the data folder), one main face each.

    Attributes:
        files: N relative paths.
        points: ``(N, 5, 2)`` landmarks of the main face (NaN where no face was found).
        boxes: ``(N, 4)`` xywh box of the main face.
        scores: ``(N,)`` detector score (0 where no face).
        faces: ``(N,)`` number of faces detected.
    """

    files: list[str]
    points: NDArray[np.float32]
    boxes: NDArray[np.float32]
    scores: NDArray[np.float32]
    faces: NDArray[np.int32]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path, files=np.array(self.files), points=self.points, boxes=self.boxes, scores=self.scores, faces=self.faces
        )

    @classmethod
    def load(cls, path: Path) -> Landmarks:
        data = np.load(path)
        return cls([str(f) for f in data["files"]], data["points"], data["boxes"], data["scores"], data["faces"])


def make_detector(threads: int = 2) -> FaceDetector:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see feature_cache.onnx_runner
    session = ort.InferenceSession(str(MODELS / "yunet_2023mar_fp32.onnx"), options, providers=["CPUExecutionProvider"])
    return FaceDetector(session, DetectorConfig())


def detect_all(files: list[str], detector: FaceDetector, desc: str) -> Landmarks:
    """Run the detector + the service's main-face rule on every file."""
    n = len(files)
    points = np.full((n, 5, 2), np.nan, dtype=np.float32)
    boxes = np.zeros((n, 4), dtype=np.float32)
    scores = np.zeros(n, dtype=np.float32)
    faces = np.zeros(n, dtype=np.int32)
    for i, rel in enumerate(tqdm(files, desc=desc, unit="img", mininterval=5)):
        image = np.asarray(load_rgb(rel))
        found = detector.detect(image)
        faces[i] = len(found)
        if found:
            main = found[main_face_index(found, image.shape[0], image.shape[1])]
            points[i], boxes[i], scores[i] = main.landmarks, main.box, main.score
    log.info("%s: %d/%d images with a face", desc, int((faces > 0).sum()), n)
    return Landmarks(files, points, boxes, scores, faces)


def landmarks_for(name: str, files: list[str], path: Path | None = None) -> Landmarks:
    """Cached landmarks for a file list (recomputed if the list changed)."""
    path = path or CACHE / "landmarks" / f"{name}.npz"
    if path.exists():
        cached = Landmarks.load(path)
        if cached.files == files:
            return cached
        log.info("landmark cache %s is for another file list: recomputing", path)
    result = detect_all(files, make_detector(), desc=f"detect {name}")
    result.save(path)
    return result
