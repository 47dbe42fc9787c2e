"""The teacher stages: ``teachers`` (build their ONNX files and their servable manifest) and ``evaluate-teachers``
(LFW 10-fold for each teacher and their ensemble)."""

from __future__ import annotations

import json
import logging

import numpy as np

from training.evaluate import Verification, cosine_scores, ten_fold
from training.neurons import l2n
from training.stages.run import Run, lfw_teacher_outputs, neuron_space
from training.teachers.manifest import write_teacher_manifest

log = logging.getLogger(__name__)


def stage_teachers(run: Run) -> None:
    """Build the teacher files in the git-ignored cache (idempotent) and their manifest."""
    write_teacher_manifest(run.teachers)


def stage_evaluate_teachers(run: Run) -> dict[str, dict[str, object]]:
    """LFW 10-fold for each teacher and the ensemble (standardised concatenation, and mean of similarities)."""
    pairs = run.lfw_pairs()
    raw = lfw_teacher_outputs(run, pairs)
    results: dict[str, Verification] = {name: ten_fold(cosine_scores(raw[name], pairs), pairs) for name in raw}
    if len(raw) > 1:
        space = neuron_space(run)
        key = "+".join(run.cfg.teachers)
        results[key] = ten_fold(cosine_scores(space.transform(raw), pairs), pairs)
        mean_sim = np.mean([cosine_scores(l2n(raw[t]), pairs) for t in raw], axis=0)
        results[f"{key} (mean similarity)"] = ten_fold(mean_sim, pairs)
    out = {k: v.to_dict() for k, v in results.items()}
    for k, v in results.items():
        log.info(
            "LFW %-28s %.4f +/- %.4f  AUC %.5f  TAR@1e-3 %.4f",
            k,
            v.accuracy,
            v.accuracy_std,
            v.roc_auc,
            v.tar_at_far_1e3,
        )
    (run.dir / "teachers_lfw.json").write_text(json.dumps(out, indent=1))
    # Only the full protocol calibrates the shared teacher manifest: a slice (the CI smoke run) must not overwrite it.
    write_teacher_manifest(run.teachers, out if run.cfg.data.lfw_pairs_per_fold is None else None)
    return out
