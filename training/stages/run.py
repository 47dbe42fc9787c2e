"""A run folder and what its stages share: the config, the teachers, the pool and LFW with their landmarks, the
pool's view cache, the held-out identities and the teachers' neuron space (each loaded lazily, once).

The stages themselves (``training.stages``) read what earlier stages left in the cache or the run folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from training.config import RunConfig, load_config, save_config
from training.data.curate import curated_pool, seed_plain_view
from training.data.feature_cache import ViewCache
from training.data.holdout import holdout_mask, holdout_pairs
from training.data.labels import pool_labels
from training.data.landmarks import Landmarks, landmarks_for
from training.data.sets import POOL_SETS, lfw_files, pool_files
from training.evaluate import Pairs, read_pairs
from training.neurons import NeuronSpace
from training.paths import CACHE
from training.teachers.build import Teacher, build_teachers
from training.teachers.embedding import lfw_teacher_raw


class Run:
    """A run folder ``runs/<name>`` and the data its stages share (loaded lazily, once)."""

    def __init__(self, cfg: RunConfig, root: Path, carry: Path | None = None) -> None:
        self.cfg = cfg
        self.dir = root / cfg.name
        # A folder that outlives the machine (``reproduce --carry``): the train stage keeps a copy of every
        # epoch's checkpoint there and resumes from it.
        self.carry = carry
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


def holdout(run: Run) -> tuple[NDArray[np.bool_], Pairs]:
    labels = pool_labels(run.pool.files)
    mask = holdout_mask(run.pool.files, labels) & run.cache().valid
    return mask, holdout_pairs(mask, labels)


def pool_split(run: Run) -> tuple[np.ndarray, Pairs]:
    """Pool rows the student may learn from (valid detections outside the held-out identities), and the
    held-out verification pairs."""
    mask, pairs = holdout(run)
    return np.flatnonzero(run.cache().valid & ~mask), pairs


def neuron_space(run: Run) -> NeuronSpace:
    cache = run.cache()
    valid = cache.valid
    return NeuronSpace.fit({t: np.asarray(cache.load(t, 0))[valid] for t in run.cfg.teachers})


def lfw_teacher_outputs(run: Run, pairs: Pairs) -> dict[str, NDArray[np.float32]]:
    """Raw teacher outputs on the LFW images the pairs use (cached per teacher; evaluation only)."""
    needed = pairs.images()
    return {
        name: lfw_teacher_raw(name, run.teachers[name].crop, run.teachers[name].file, run.lfw, needed)
        for name in run.cfg.teachers
    }
