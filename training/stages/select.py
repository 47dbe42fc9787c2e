"""The ``select`` stage: MobileID neuron selection on the labelled pool (``training.selection``)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np

from training.data.labels import pool_labels
from training.neurons import whitened_components
from training.paths import REPO
from training.selection import plot_selection, save_selection, select
from training.stages.run import Run, holdout, neuron_space

log = logging.getLogger(__name__)


def stage_select(run: Run) -> list[int]:
    """Score and select teacher neurons on the labelled pool (view 0; held-out identities excluded), or take
    the parent run's (``selection.method: inherit``)."""
    if run.cfg.selection.method == "inherit":
        return inherit_selection(run)
    cache = run.cache()
    mask, _ = holdout(run)
    train_rows = cache.valid & ~mask
    space = neuron_space(run)
    space.save(run.dir / "neurons.npz")
    z = space.transform({t: np.asarray(cache.load(t, 0)) for t in run.cfg.teachers})[train_rows]
    labels = pool_labels(run.pool.files)
    sub = type(labels)(labels.attribute_names, labels.attributes[train_rows], labels.identity[train_rows])
    chosen, scores, effects = select(z, sub, run.cfg.selection, seed=run.cfg.train.seed)
    dims = {t: 128 for t in run.cfg.teachers}
    if run.cfg.selection.method == "pca":
        # The target is a projection, not a subset: the run's space maps to its whitened components, and the
        # "selected" indices are all of them (every later stage reads the target as space.transform(...)[:, chosen]).
        space = dataclasses.replace(space, basis=whitened_components(z, len(chosen)))
        space.save(run.dir / "neurons.npz")
        save_selection(run.dir / "selection.json", chosen, scores, run.cfg.selection, dims)
        log.info("target: %d whitened principal components of %d neurons", len(chosen), z.shape[1])
        return chosen
    save_selection(run.dir / "selection.json", chosen, scores, run.cfg.selection, dims)
    plot_selection(
        run.dir / "selection.png",
        chosen,
        scores,
        effects,
        labels.attribute_names,
        f"{'+'.join(run.cfg.teachers)} ({run.cfg.selection.method})",
    )
    log.info("selected %d of %d neurons (%s)", len(chosen), z.shape[1], run.cfg.selection.method)
    return chosen


def inherit_selection(run: Run) -> list[int]:
    """The neurons of the run ``train.init_from`` names, and its standardisation of them (``neurons.npz``),
    copied as they are: a round on other images (another pool) goes on regressing the target its parent was
    trained to, so that it can be warm-started from it. Selecting again on the new pool would pick other
    neurons (and standardise them otherwise), and the parent's weights would regress the wrong outputs."""
    parent = run.cfg.train.init_from
    if not parent:
        raise ValueError("selection.method: inherit needs train.init_from (the run whose neurons are regressed)")
    source = REPO / parent
    for name in ("neurons.npz", "selection.json"):
        if not (source / name).exists():
            raise FileNotFoundError(f"selection.method: inherit: {source / name} not found (run {parent} first)")
        shutil.copyfile(source / name, run.dir / name)
    if (source / "selection.png").exists():  # the figure, when the parent drew one
        shutil.copyfile(source / "selection.png", run.dir / "selection.png")
    chosen = selected(run)
    log.info("inherited %d neurons from %s", len(chosen), parent)
    return chosen


def selected(run: Run) -> list[int]:
    """The teacher neurons the select stage chose (indices into the standardised concatenation)."""
    chosen: list[int] = json.loads((run.dir / "selection.json").read_text())["selected"]
    return chosen
