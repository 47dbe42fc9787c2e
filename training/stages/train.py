"""The ``train`` stage: the student regresses the selected teacher neurons on every cached view of the pool
(``training.trainer``), scored each epoch on the held-out identities."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from training.config import load_config
from training.data.landmarks import estimated_yaw
from training.evaluate import cosine_scores, row_cosine, ten_fold
from training.neurons import NeuronSpace
from training.paths import REPO, checkpoint_path
from training.stages.run import Run, pool_split
from training.stages.select import selected
from training.student import Student, StudentConfig
from training.trainer import SampledViews, TrainData, predict, train_student

log = logging.getLogger(__name__)


def stage_train(run: Run) -> Student:
    """Train the student on every cached view of the non-held-out pool (or a seeded share of its images)."""
    cache = run.cache()
    chosen = selected(run)
    space = NeuronSpace.load(run.dir / "neurons.npz")
    rows, pairs = pool_split(run)
    fraction = run.cfg.data.fraction
    if not 0 < fraction <= 1:
        raise ValueError(f"data.fraction must be in (0, 1], got {fraction}")
    if fraction < 1:
        rng = np.random.default_rng(run.cfg.train.seed)
        rows = np.sort(rng.choice(rows, max(1, round(fraction * len(rows))), replace=False))
    crops, targets = [], []
    sampled = run.cfg.train.views_per_epoch
    own = _flip_averaged_parent(run, chosen)
    for view in run.cfg.data.views:
        mapped = cache.load(run.student_crop_name(), view)
        view_crops = mapped if sampled else np.asarray(mapped)[rows]
        crops.append(view_crops)
        raw = {t: np.asarray(cache.load(t, view))[rows] for t in run.cfg.teachers}
        target = space.transform(raw)[:, chosen]
        if own is not None:
            weight = run.cfg.train.self_weight
            own_crops = np.asarray(mapped)[rows] if sampled else view_crops  # the training rows, gathered once
            target = ((1 - weight) * target + weight * own(own_crops)).astype(np.float32)
        targets.append(target)
    data: TrainData | SampledViews
    weights = turned_weights(run, rows)
    if sampled:
        if weights is not None:
            raise ValueError("train.turned_weight needs train.views_per_epoch: null (every view in memory)")
        data = SampledViews(crops, targets, np.asarray(rows, np.int64), min(sampled, len(crops)))
    else:
        tiled = None if weights is None else np.tile(weights, len(crops))
        data = TrainData(np.concatenate(crops), np.concatenate(targets), tiled)
    size: dict[str, int | float] = {"images": len(rows), "views": len(run.cfg.data.views), "samples": len(data)}
    if weights is not None:
        size["turned_images"] = int((weights != 1).sum())
        size["turned_share_of_draws"] = round(float(weights[weights != 1].sum() / weights.sum()), 4)
    (run.dir / "train_data.json").write_text(json.dumps(size))
    log.info(
        "training on %d samples per epoch (%d images, %d views), %d targets",
        len(data),
        len(rows),
        len(run.cfg.data.views),
        len(chosen),
    )
    hold_idx, local = pairs.on_images()
    hold_crops = np.asarray(cache.load(run.student_crop_name(), 0))[hold_idx]
    hold_mirrored = np.ascontiguousarray(hold_crops[:, :, ::-1])  # once, not at every epoch's validation
    hold_target = space.transform({t: np.asarray(cache.load(t, 0))[hold_idx] for t in run.cfg.teachers})[:, chosen]

    def scores(pred: np.ndarray, prefix: str) -> dict[str, float]:
        ver = ten_fold(cosine_scores(pred, local), local)
        return {
            f"{prefix}cos_to_teacher": float(row_cosine(pred, hold_target).mean()),
            f"{prefix}accuracy": ver.accuracy,
            f"{prefix}auc": ver.roc_auc,
        }

    def validate(model: Student) -> dict[str, float]:
        """Held-out scores of the flip-averaged student (``holdout_*``, as in every run's history) and of one
        pass (``holdout_1pass_*``: what a student served without flip averaging delivers)."""
        plain = predict(model, hold_crops)
        mirrored = predict(model, hold_mirrored)
        return {**scores(plain + mirrored, "holdout_"), **scores(plain, "holdout_1pass_")}

    run.cfg.student.out_dim = len(chosen)
    # The source run is loaded only if this run starts fresh (a resumed run needs nothing from it).
    init_from = run.cfg.train.init_from
    init = (lambda: _init_student(run, chosen, init_from)) if init_from else None
    carry = run.carry / "checkpoint.pt" if run.carry else None
    return train_student(
        run.cfg.train, run.cfg.student, data, run.dir, validate, init=init, config_hash=run.cfg.hash(), carry=carry
    )


def _flip_averaged_parent(run: Run, chosen: list[int]) -> Callable[[np.ndarray], np.ndarray] | None:
    """With ``train.self_weight``: the warm start's answer on crops, averaged over each crop and its mirror image
    (what its ``-flip`` variant serves, as a mean so that it stays on the target's scale)."""
    weight, parent = run.cfg.train.self_weight, run.cfg.train.init_from
    if not weight:
        return None
    if not 0 < weight <= 1 or not parent:
        raise ValueError(f"train.self_weight must be in (0, 1] and needs train.init_from, not {weight} / {parent}")
    model = _init_student(run, chosen, parent)

    def flip_averaged(crops: np.ndarray) -> np.ndarray:
        log.info("the warm start's flip-averaged answer on %d crops (train.self_weight %g)", len(crops), weight)
        mirrored = np.ascontiguousarray(crops[:, :, ::-1])
        return np.asarray((predict(model, crops) + predict(model, mirrored)) / 2)

    return flip_averaged


def turned_weights(run: Run, rows: np.ndarray) -> np.ndarray | None:
    """Per training image, ``train.turned_weight`` where its face is turned by ``train.turned_yaw`` degrees or
    more and 1 elsewhere; None when the weight is 1 (every image once per epoch)."""
    weight, yaw = run.cfg.train.turned_weight, run.cfg.train.turned_yaw
    if weight == 1:
        return None
    if weight <= 0:
        raise ValueError(f"train.turned_weight must be > 0, not {weight}")
    turned = estimated_yaw(np.nan_to_num(run.cache().landmarks.points[rows])) >= yaw
    log.info(
        "%d of %d training images turned by %g degrees or more, drawn %gx as often",
        turned.sum(),
        len(rows),
        yaw,
        weight,
    )
    return np.where(turned, weight, 1.0)


def _init_student(run: Run, chosen: list[int], init_from: str) -> Student:
    """The trained student ``init_from`` (``train.init_from``), after checking that it regresses the same neurons."""
    source = REPO / init_from
    if not checkpoint_path(source).exists():
        raise FileNotFoundError(f"train.init_from: {checkpoint_path(source)} not found (train that run first)")
    theirs, ours = NeuronSpace.load(source / "neurons.npz"), NeuronSpace.load(run.dir / "neurons.npz")
    same = json.loads((source / "selection.json").read_text())["selected"] == chosen and theirs.same_as(ours)
    if not same:
        raise ValueError(f"train.init_from: {source} regresses other neurons than {run.dir}; warm start refused")
    return load_trained(source, load_config(source / "config.yaml").student)


def load_trained(run_dir: Path, student: StudentConfig) -> Student:
    """The student trained in ``run_dir`` (its last checkpoint), in eval mode and as served: a re-parameterised
    one fused into its plain net (:meth:`training.student.Student.fused`)."""
    student.out_dim = len(json.loads((run_dir / "selection.json").read_text())["selected"])
    model = Student(student)
    model.load_state_dict(torch.load(checkpoint_path(run_dir), weights_only=False)["model"])
    return model.eval().fused()
