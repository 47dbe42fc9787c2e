"""The data stage, once per machine (``python -m training data``): extract the extra sources, detect, cache view 0
of every set, and curate the training pool (the rules: ``training.data.curate``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from training.data.curate import (
    ALL_SETS,
    CURATED_SETS,
    STUDENT_CROP,
    Decision,
    curate,
    set_cache,
    set_landmarks,
    write_decisions,
)
from training.data.feature_cache import CropSpec, Runner, arcface_crop, onnx_runner
from training.data.landmarks import landmarks_for
from training.data.sets import lfw_files
from training.data.sources import SOURCES, extract
from training.neurons import l2n
from training.paths import MORE
from training.teachers.build import Teacher, build_teachers
from training.teachers.embedding import lfw_teacher_raw


def view0_outputs(teachers: dict[str, Teacher], threads: int = 2) -> dict[str, tuple[CropSpec, Runner | None]]:
    outputs: dict[str, tuple[CropSpec, Runner | None]] = {
        t: (teachers[t].crop, onnx_runner(teachers[t].file, threads)) for t in ("sface", "dlib")
    }
    outputs[f"arcface{STUDENT_CROP}"] = (arcface_crop(STUDENT_CROP), None)
    return outputs


def lfw_sface(teachers: dict[str, Teacher]) -> NDArray[np.float32]:
    """Unit SFace embeddings of every LFW image (the evaluation's cached teacher outputs, extended to all)."""
    lfw = landmarks_for("lfw", lfw_files())
    sface = teachers["sface"]
    return l2n(lfw_teacher_raw("sface", sface.crop, sface.file, lfw, np.arange(len(lfw.files))))


def stage_data(sources: Path | None, threads: int = 2) -> dict[str, Decision]:
    """Extract (when ``sources`` is given), detect, cache view 0 of every set, curate."""
    if sources is not None:
        extract(sources, MORE)
    missing = [s.name for s in SOURCES if not (MORE / s.name).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"sources {missing} not in {MORE}: pass --sources DIR (the folder of the fetched "
            "or cloned repositories; see shared/data/more/README.md)"
        )
    teachers = build_teachers()
    landmarks = {name: set_landmarks(name) for name in ALL_SETS}
    sface = {}
    outputs = view0_outputs(teachers, threads)
    for name in ALL_SETS:
        cache = set_cache(name, landmarks[name])
        cache.build(0, outputs)
        sface[name] = np.asarray(cache.load("sface", 0), np.float32)
    lfw = lfw_sface(teachers)
    lfw_names = landmarks_for("lfw", lfw_files()).files
    test_valid = ~np.isnan(landmarks["celeba_test"].points[:, 0, 0])
    test = l2n(sface["celeba_test"][test_valid])
    test_names = [f for f, v in zip(landmarks["celeba_test"].files, test_valid, strict=True) if v]
    decisions = curate({n: landmarks[n] for n in CURATED_SETS}, sface, lfw, lfw_names, test, test_names)
    write_decisions(decisions, landmarks)
    return decisions
