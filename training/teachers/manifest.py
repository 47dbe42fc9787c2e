"""The teachers' manifest: each teacher and their ensemble as models the service can serve (for benchmarks).

``<cache>/teachers/manifest.json`` names the teacher files built by ``training.teachers.build`` and the detector,
all copied beside it; LFW results calibrate the thresholds of the models they were measured for.
"""

from __future__ import annotations

import json
import shutil
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
from training.paths import MODELS, TEACHER_DIR
from training.teachers.build import YUNET_FILE, Teacher, build_yunet


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
