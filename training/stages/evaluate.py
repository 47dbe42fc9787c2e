"""The ``evaluate`` stage: LFW 10-fold for the exported student, beside its teachers' (``results.json``,
``roc.npz``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from service.manifest import sha256_of
from training.data.feature_cache import arcface_crop, onnx_runner
from training.evaluate import cosine_scores, roc_curve, ten_fold
from training.neurons import NeuronSpace
from training.stages.export import FP32_ONNX
from training.stages.run import Run, lfw_teacher_outputs
from training.stages.select import selected
from training.stages.train import load_trained
from training.student import parameter_count
from training.teachers.embedding import aligned_crops, embed_crops

log = logging.getLogger(__name__)


def stage_evaluate(run: Run) -> dict[str, Any]:
    """LFW 10-fold for the exported student (the shipped ONNX, through the service's preprocessing)."""
    pairs = run.lfw_pairs()
    chosen = selected(run)
    needed = pairs.images()
    crops = aligned_crops(run.lfw, arcface_crop(run.cfg.student.input_size), needed)

    def lfw_scores(graph: Path) -> np.ndarray:
        emb = np.zeros((len(run.lfw.files), len(chosen)), np.float32)
        emb[needed] = embed_crops(crops, onnx_runner(graph), flip_average=run.cfg.flip_average)
        return cosine_scores(emb, pairs)

    scores = lfw_scores(run.dir / "student.onnx")
    result = ten_fold(scores, pairs).to_dict()
    quantized = run.cfg.export.quantize != "none"
    raw = lfw_teacher_outputs(run, pairs)
    space = NeuronSpace.load(run.dir / "neurons.npz")
    teacher_scores = cosine_scores(space.transform(raw)[:, chosen], pairs)
    model = load_trained(run.dir, run.cfg.student)
    summary = {
        "name": run.cfg.name,
        "config_hash": run.cfg.hash(),
        "teachers": run.cfg.teachers,
        "selected_neurons": len(chosen),
        "params": parameter_count(model),
        "onnx_sha256": sha256_of(run.dir / "student.onnx"),
        "onnx_bytes": (run.dir / "student.onnx").stat().st_size,
        "flip_average": run.cfg.flip_average,
        "train_data": json.loads(data.read_text()) if (data := run.dir / "train_data.json").exists() else None,
        "lfw": result,
        # A quantized student: how close it is to its float graph, and the float graph's LFW score beside it.
        "quantization": json.loads((run.dir / "quantization.json").read_text()) if quantized else None,
        "lfw_fp32": ten_fold(lfw_scores(run.dir / FP32_ONNX), pairs).to_dict() if quantized else None,
        "lfw_selected_teacher_neurons": ten_fold(teacher_scores, pairs).to_dict(),
        "history": json.loads((run.dir / "history.json").read_text()),
    }
    (run.dir / "results.json").write_text(json.dumps(summary, indent=1))
    curves = {f"student {run.cfg.name}": scores, "selected teacher neurons": teacher_scores}
    curves.update({f"teacher {t}": cosine_scores(raw[t], pairs) for t in raw})
    arrays = {}
    for key, values in curves.items():
        arrays[f"{key}|far"], arrays[f"{key}|tar"] = roc_curve(values, pairs.same)
    # allow_pickle=True is numpy's default, named so that mypy does not match ``**arrays`` against it
    np.savez(run.dir / "roc.npz", allow_pickle=True, **arrays)
    log.info(
        "LFW %s: %.4f +/- %.4f, AUC %.5f, TAR@FAR1e-3 %.4f",
        run.cfg.name,
        result["accuracy"],
        result["accuracy_std"],
        result["roc_auc"],
        result["tar_at_far_1e3"],
    )
    return summary
