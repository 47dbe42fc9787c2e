"""The ``export`` stage: ONNX of the trained student (checker and parity in ``training.export``); with
``export.quantize: int8`` the shipped graph is its int8 version (``training.quantize``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from training.export import export_student
from training.quantize import fidelity, quantize_int8
from training.stages.run import Run, pool_split
from training.stages.train import load_trained

log = logging.getLogger(__name__)


FP32_ONNX = "student-fp32.onnx"  # the float graph beside a quantized student.onnx


def stage_export(run: Run) -> Path:
    """ONNX of the trained student; with ``export.quantize: int8`` the shipped graph is its int8 version."""
    model = load_trained(run.dir, run.cfg.student)
    shipped = run.dir / "student.onnx"
    quantize = run.cfg.export.quantize
    if quantize == "none":
        return export_student(model, shipped)
    if quantize != "int8":
        raise ValueError(f"export.quantize must be 'none' or 'int8', not {quantize!r}")
    fp32 = export_student(model, run.dir / FP32_ONNX)
    crops = run.cache().load(run.student_crop_name(), 0)
    rows, pairs = pool_split(run)
    count = min(run.cfg.export.calibration_images, len(rows))
    calibration = np.sort(np.random.default_rng(run.cfg.train.seed).choice(rows, count, replace=False))
    method, tail = run.cfg.export.calibration, run.cfg.export.float_tail
    quantize_int8(fp32, shipped, np.asarray(crops[calibration]), method, keep_tail=tail)
    check = fidelity(fp32, shipped, np.asarray(crops[pairs.images()]))
    record = {"format": "int8 QDQ", "calibration": method, "float_tail": tail, **check}
    (run.dir / "quantization.json").write_text(json.dumps(record, indent=1))
    log.info(
        "int8 vs float on %d held-out crops: cosine mean %.4f, min %.4f",
        check["crops"],
        check["cosine_mean"],
        check["cosine_min"],
    )
    return shipped
