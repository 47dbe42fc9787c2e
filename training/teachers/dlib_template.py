"""Derive and validate ``DLIB_150_TEMPLATE``: where YuNet's 5 landmarks fall in dlib's 150x150 face chip.

dlib crops with its own 5-point shape predictor (eye corners, base of the nose) and ``get_face_chip(size=150,
padding=0.25)``; the service detects YuNet landmarks (eye centres, nose tip, mouth corners) and warps them onto a
template. For each training-pool face, dlib's chip transform (from ``get_face_chip_details``) maps YuNet's
landmarks, found on the original photo, into the chip; their mean is the template. (That transform is exact:
warping the photo with it through :func:`service.alignment.warp` reproduces dlib's chip pixel for pixel on these
pool photos.) Validation compares dlib descriptors of our aligned crops with those of dlib's own chips, on faces
not used for the mean. No LFW image is used. Run: ``python -m training.teachers.dlib_template``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from numpy.typing import NDArray
from PIL import Image

from service.alignment import ARCFACE_112, align, template_for
from service.detection import FaceDetector, main_face_index
from training.paths import DATA, MODELS
from training.teachers.dlib_resnet import CHIP_SIZE, DLIB_150_TEMPLATE, DlibResNet, dlib_model_path, load_dlib_resnet

log = logging.getLogger(__name__)

SOURCES = ("celeba/img_align_celeba_89x109", "pool/celeba_wild_128", "pool/utkface_128")


@dataclass(frozen=True)
class Sample:
    image: NDArray[np.uint8]  # (H, W, 3) RGB
    landmarks: NDArray[np.float32]  # (5, 2) YuNet, image coordinates
    chip: NDArray[np.uint8]  # (150, 150, 3) dlib's chip
    in_chip: NDArray[np.float64]  # (5, 2) the YuNet landmarks mapped into dlib's chip


def chip_matrix(details: Any) -> NDArray[np.float64]:
    """Image -> chip 2x3 affine of a ``dlib.chip_details``: the inverse of dlib's extract_image_chip mapping, which
    sends the chip's corners (0,0), (cols-1,0), (0,rows-1) to the rect's corners rotated by ``angle`` about its centre.
    """
    rect, angle = details.rect, details.angle
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    corners = [(rect.left(), rect.top()), (rect.right(), rect.top()), (rect.left(), rect.bottom())]
    in_image = np.array([[*(rotation @ (np.array(c) - centre) + centre), 1.0] for c in corners])
    in_chip = np.array([(0.0, 0.0), (details.cols - 1.0, 0.0), (0.0, details.rows - 1.0)])
    return np.linalg.solve(in_image, in_chip).T


class _Pairing:
    """dlib's HOG detector + 5-point predictor and our YuNet detector, run on the same photo."""

    def __init__(self) -> None:
        import dlib

        self.dlib = dlib
        self.hog = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(MODELS / "yunet_2023mar_fp32.onnx"), options, ["CPUExecutionProvider"])
        self.yunet = FaceDetector(session)

    def __call__(self, path: Path) -> Sample | None:
        image = np.asarray(Image.open(path).convert("RGB"))
        rects = self.hog(image, 1) or self.hog(image, 2)  # pool faces are small: upsample for HOG
        faces = self.yunet.detect(image)
        if not rects or not faces:
            return None
        face = faces[main_face_index(faces, *image.shape[:2])]
        rect = max(rects, key=lambda r: r.area())
        x, y = face.landmarks.mean(axis=0)
        if not (rect.left() <= x <= rect.right() and rect.top() <= y <= rect.bottom()):
            return None  # the two detectors chose different faces
        shape = self.predictor(image, rect)
        matrix = chip_matrix(self.dlib.get_face_chip_details(shape, CHIP_SIZE, 0.25))
        chip = np.asarray(self.dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=0.25))
        return Sample(image, face.landmarks, chip, face.landmarks @ matrix[:, :2].T + matrix[:, 2])


def split_files(derive: int, validate: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Per source, a seeded shuffle: the first ``derive`` files build the template, the next ``validate`` test it."""
    rng = random.Random(seed)
    first: list[Path] = []
    second: list[Path] = []
    for source in SOURCES:
        files = sorted((DATA / source).glob("*.jpg"))
        rng.shuffle(files)
        first += files[:derive]
        second += files[derive : derive + validate]
    return first, second


def descriptor_distances(model: DlibResNet, template: NDArray[np.floating], samples: list[Sample]) -> dict[str, float]:
    """dlib descriptors of our aligned crops vs of dlib's chips: Euclidean and cosine statistics."""

    def embed(chips: list[NDArray[np.uint8]]) -> NDArray[np.float32]:
        with torch.no_grad():
            return np.asarray(model(torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()), np.float32)

    size = (CHIP_SIZE, CHIP_SIZE)
    ours = embed([align(Image.fromarray(s.image), s.landmarks, template, size) for s in samples])
    theirs = embed([s.chip for s in samples])
    euclid = np.linalg.norm(ours - theirs, axis=1)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    return {
        "euclidean_mean": float(euclid.mean()),
        "euclidean_median": float(np.median(euclid)),
        "euclidean_p95": float(np.percentile(euclid, 95)),
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
        "faces": len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--derive", type=int, default=100, help="faces per source for the template")
    parser.add_argument("--validate", type=int, default=70, help="other faces per source for validation")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    pairing, model = _Pairing(), load_dlib_resnet()
    derive_files, validate_files = split_files(args.derive, args.validate)
    derive = [s for s in map(pairing, derive_files) if s is not None]
    validate = [s for s in map(pairing, validate_files) if s is not None]
    points = np.stack([s.in_chip for s in derive])
    template = points.mean(axis=0)
    arcface = template_for(np.array(ARCFACE_112), (CHIP_SIZE, CHIP_SIZE), (112, 112))
    report: dict[str, Any] = {
        "faces_used": f"{len(derive)} of {len(derive_files)}",
        "template": np.round(template, 2).tolist(),
        "per_point_std": np.round(points.std(axis=0), 2).tolist(),
        "validation": {
            name: descriptor_distances(model, t, validate)
            for name, t in [
                ("derived", template),
                ("committed", np.array(DLIB_150_TEMPLATE)),
                ("arcface_scaled", arcface),
            ]
        },
    }
    for key, value in report.items():
        log.info("%s: %s", key, json.dumps(value))


if __name__ == "__main__":
    main()
