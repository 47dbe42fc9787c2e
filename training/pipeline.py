"""The stages of a distillation run. Each reads what earlier stages left in the cache or run folder.

teachers -> align -> features -> evaluate-teachers -> select -> train -> export -> evaluate -> publish
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from training.config import RunConfig, load_config, save_config
from training.curate import curated_pool, seed_plain_view
from training.data import POOL_SETS, Landmarks, landmarks_for, lfw_files, pool_files
from training.embedding import lfw_teacher_raw
from training.evaluate import Pairs, Verification, cosine_scores, read_pairs, ten_fold
from training.feature_cache import CropSpec, Runner, ViewCache, arcface_crop, onnx_runner
from training.holdout import holdout_mask, holdout_pairs
from training.labels import pool_labels
from training.neurons import NeuronSpace, l2n
from training.paths import CACHE
from training.teachers import Teacher, build_teachers, write_teacher_manifest

log = logging.getLogger(__name__)


class Run:
    """A run folder ``runs/<name>`` and the data its stages share (loaded lazily, once)."""

    def __init__(self, cfg: RunConfig, root: Path) -> None:
        self.cfg = cfg
        self.dir = root / cfg.name
        self.dir.mkdir(parents=True, exist_ok=True)
        saved = self.dir / "config.yaml"
        # A stage call leaves the run's saved config alone unless it trains something else (another hash).
        if not saved.exists() or load_config(saved).hash() != cfg.hash():
            save_config(cfg, saved)
        self._teachers: dict[str, Teacher] | None = None
        self._pool: Landmarks | None = None
        self._lfw: Landmarks | None = None
        self._cache: ViewCache | None = None

    @property
    def teachers(self) -> dict[str, Teacher]:
        if self._teachers is None:
            self._teachers = build_teachers()
        return self._teachers

    @property
    def pool_name(self) -> str:
        """Cache key of the configured slice of the pool ("pool" for all of it)."""
        limit, sets = self.cfg.data.limit_per_set, self.cfg.data.sets
        if self.cfg.data.curated:
            if limit is not None:
                raise ValueError("data.limit_per_set does not apply to a curated pool (use data.fraction)")
            return f"curated-{'-'.join(sets)}"
        if limit is None and set(sets) == set(POOL_SETS):
            return "pool"
        return f"pool-{'-'.join(sets)}-{limit}"

    @property
    def pool(self) -> Landmarks:
        if self._pool is None:
            if self.cfg.data.curated:
                self._pool = curated_pool(tuple(self.cfg.data.sets))
            else:
                files = pool_files(tuple(self.cfg.data.sets), self.cfg.data.limit_per_set)
                self._pool = landmarks_for(self.pool_name, files)
        return self._pool

    @property
    def lfw(self) -> Landmarks:
        if self._lfw is None:
            self._lfw = landmarks_for("lfw", lfw_files())
        return self._lfw

    def cache(self) -> ViewCache:
        """The pool's view cache (opened once per run; view 0 seeded from the data stage's per-set caches)."""
        if self._cache is None:
            self._cache = ViewCache(CACHE / "features" / self.pool_name, self.pool)
            seed_plain_view(self._cache, tuple(self.cfg.data.sets))
        return self._cache

    def lfw_pairs(self) -> Pairs:
        return read_pairs(self.lfw.files, self.cfg.data.lfw_pairs_per_fold)

    def student_crop_name(self) -> str:
        return f"arcface{self.cfg.student.input_size}"


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


def lfw_teacher_outputs(run: Run, pairs: Pairs) -> dict[str, NDArray[np.float32]]:
    """Raw teacher outputs on the LFW images the pairs use (cached per teacher; evaluation only)."""
    needed = pairs.images()
    return {
        name: lfw_teacher_raw(name, run.teachers[name].crop, run.teachers[name].file, run.lfw, needed)
        for name in run.cfg.teachers
    }


def neuron_space(run: Run) -> NeuronSpace:
    cache = run.cache()
    valid = cache.valid
    return NeuronSpace.fit({t: np.asarray(cache.load(t, 0))[valid] for t in run.cfg.teachers})


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


def stage_align(run: Run) -> None:
    _ = run.pool, run.lfw


def holdout(run: Run) -> tuple[NDArray[np.bool_], Pairs]:
    labels = pool_labels(run.pool.files)
    mask = holdout_mask(run.pool.files, labels) & run.cache().valid
    return mask, holdout_pairs(mask, labels)
