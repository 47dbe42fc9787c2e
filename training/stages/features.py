"""The ``align`` and ``features`` stages: landmarks of the pool and LFW, then teacher outputs and student crops
for every configured view of the pool."""

from __future__ import annotations

from training.data.feature_cache import CropSpec, Runner, arcface_crop, onnx_runner
from training.stages.run import Run


def stage_align(run: Run) -> None:
    _ = run.pool, run.lfw


def stage_features(run: Run) -> None:
    """Teacher neurons and student crops for every configured view of the pool."""
    cache = run.cache()
    size = run.cfg.student.input_size
    for view in run.cfg.data.views:
        outputs: dict[str, tuple[CropSpec, Runner | None]] = {
            t: (run.teachers[t].crop, onnx_runner(run.teachers[t].file)) for t in run.cfg.teachers
        }
        outputs[run.student_crop_name()] = (arcface_crop(size), None)
        cache.build(view, outputs)
