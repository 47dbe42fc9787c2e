"""Train a student to regress selected teacher neurons on cached views of the training pool.

Every (image, view) pair is a sample: the student's input is its uint8 crop of the view, the target is the
teachers' standardised neurons on the same view. Photometric augmentation (brightness, contrast, colour,
grey, blur, a black top band like UTKFace's out-of-image border) is applied to the student's input only:
the target stays the teacher's answer on the clean view, which teaches invariance for free.
Checkpoints are written every epoch, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from tqdm import tqdm

from training.config import TrainConfig
from training.paths import checkpoint_path
from training.student import Student, StudentConfig, warm_start

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    """Samples for training: ``crops`` (M, S, S, 3) uint8 and ``targets`` (M, K) float32; an epoch shows each once,
    or, with ``weights`` (M,), draws M samples with replacement in proportion to them."""

    crops: NDArray[np.uint8]
    targets: NDArray[np.float32]
    weights: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.crops)

    def epoch(self, rng: np.random.Generator) -> NDArray[np.int64]:
        if self.weights is None:
            return rng.permutation(len(self.crops))
        return rng.choice(len(self.crops), len(self.crops), p=self.weights / self.weights.sum())

    def batch(self, idx: NDArray[np.int64]) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
        return self.crops[idx], self.targets[idx]


@dataclass
class SampledViews:
    """Many cached views, few at a time: an epoch shows every training image in ``per_epoch`` of its views, drawn
    at random without replacement. The crops stay memory-mapped (one ``(N, S, S, 3)`` file per view over the
    whole pool; ``rows`` are the training images), so the number of views is bounded by disk, not memory.

    Sample ``s`` is image ``rows[s % R]`` in view ``s // R`` (``R = len(rows)``).
    """

    crops: list[NDArray[np.uint8]]
    targets: list[NDArray[np.float32]]  # per view, (R, K)
    rows: NDArray[np.int64]
    per_epoch: int

    def __len__(self) -> int:
        return len(self.rows) * self.per_epoch

    def epoch(self, rng: np.random.Generator) -> NDArray[np.int64]:
        n, views = len(self.rows), len(self.crops)
        chosen = np.argsort(rng.random((n, views)), axis=1)[:, : self.per_epoch]
        return rng.permutation((chosen * n + np.arange(n)[:, None]).reshape(-1))

    def batch(self, idx: NDArray[np.int64]) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
        n = len(self.rows)
        view, image = idx // n, idx % n
        crops = np.empty((len(idx), *self.crops[0].shape[1:]), np.uint8)
        targets = np.empty((len(idx), self.targets[0].shape[1]), np.float32)
        for v in np.unique(view):
            at = np.flatnonzero(view == v)
            crops[at] = self.crops[v][self.rows[image[at]]]
            targets[at] = self.targets[v][image[at]]
        return crops, targets


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Photometric jitter of an ``(N, 3, S, S)`` 0-255 batch."""
    n = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, 1, 1, 1, generator=gen) * (hi - lo) + lo

    grey = x.mean(dim=1, keepdim=True)
    sat = torch.where(torch.rand(n, 1, 1, 1, generator=gen) < 0.1, torch.zeros(n, 1, 1, 1), u(0.6, 1.4))
    x = grey + (x - grey) * sat
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.7, 1.3) + mean * u(0.7, 1.3)
    blur = torch.rand(n, generator=gen) < 0.15
    if blur.any():
        x[blur] = F.avg_pool2d(x[blur], 3, 1, 1, count_include_pad=False)
    band = torch.rand(n, generator=gen) < 0.25
    if band.any():
        rows = torch.arange(x.shape[2]).view(1, -1)
        height = (torch.rand(n, 1, generator=gen) * x.shape[2] * 0.18).long()
        mask = (rows < height) & band.view(-1, 1)
        x = x * (~mask).view(n, 1, -1, 1)
    return x.clamp(0, 255)


def similarity_warp(
    x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, scale: torch.Tensor, radians: torch.Tensor
) -> torch.Tensor:
    """An ``(N, 3, S, S)`` batch, each image moved about its centre by its own ``(N,)`` shift (``dx``, ``dy`` px),
    ``scale`` and turn (``radians``): bilinear, edges repeated."""
    size = x.shape[-1]
    cos, sin = torch.cos(radians) / scale, torch.sin(radians) / scale
    # affine_grid maps output to input coordinates in [-1, 1]: a shift of d px is 2 d / S there
    theta = torch.stack([torch.stack([cos, -sin, dx * 2 / size], 1), torch.stack([sin, cos, dy * 2 / size], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def jitter(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Move a ``cfg.jitter`` share of an ``(N, 3, S, S)`` batch by a random similarity transform about the crop's
    centre (:func:`similarity_warp`): shift uniform in +-``jitter_shift`` px per axis, scale in 1 +-
    ``jitter_scale``, rotation in +-``jitter_rotate`` degrees. Targets are untouched."""
    moved = torch.rand(x.shape[0], generator=gen) < cfg.jitter
    n = int(moved.sum())
    if not n:
        return x

    def u(bound: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) * 2 - 1) * bound

    angle, scale = torch.deg2rad(u(cfg.jitter_rotate)), 1 + u(cfg.jitter_scale)
    dx, dy = u(cfg.jitter_shift), u(cfg.jitter_shift)
    x = x.clone()
    x[moved] = similarity_warp(x[moved], dx, dy, scale, angle)
    return x


def mirror(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image of an ``(N, 3, S, S)`` batch left-right with probability ``p`` (targets untouched)."""
    flip = torch.rand(x.shape[0], generator=gen) < p
    if flip.any():
        x = x.clone()
        x[flip] = x[flip].flip(3)
    return x


def regression_loss(pred: torch.Tensor, target: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """L2 on standardised neurons plus a cosine term (verification compares by angle), plus optional batch terms:
    relational on the batch's pairwise cosines (:func:`relational_loss`), contrastive (:func:`contrastive_loss`)."""
    mse = F.mse_loss(pred, target)
    cos = 1 - F.cosine_similarity(pred, target, dim=1).mean()
    loss = cfg.mse_weight * mse + cfg.cos_weight * cos
    if cfg.relational_weight:
        loss = loss + cfg.relational_weight * relational_loss(pred, target)
    if cfg.contrastive_weight:
        loss = loss + cfg.contrastive_weight * contrastive_loss(pred, target, cfg.contrastive_temperature)
    return loss


def contrastive_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """In-batch InfoNCE between student and teacher embeddings: each face's student embedding must be closer
    (in cosine) to its own target than to the targets of the batch's other faces, by a margin the temperature
    sets. The regression pulls each face towards its target; this term also pushes it away from the others',
    which is what a verification threshold needs (the teachers' own training objective is of this kind)."""
    s, t = F.normalize(pred, dim=1), F.normalize(target, dim=1)
    logits = s @ t.T / temperature
    return F.cross_entropy(logits, torch.arange(len(pred), device=pred.device))


def relational_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the off-diagonal batch cosine-similarity matrices of student and target.

    A verification score is the cosine of two faces; this term trains those pairwise cosines directly (most
    pairs in a random batch are different people, so it mostly tightens the impostor scores the per-face loss
    leaves spread out)."""
    s, t = F.normalize(pred, dim=1), F.normalize(target, dim=1)
    off = ~torch.eye(len(pred), dtype=torch.bool, device=pred.device)
    return ((s @ s.T - t @ t.T)[off] ** 2).mean()


def _to_tensor(crops: NDArray[np.uint8]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()


@torch.no_grad()
def predict(model: Student, crops: NDArray[np.uint8], batch: int = 512) -> NDArray[np.float32]:
    model.eval()
    return torch.cat([model(_to_tensor(crops[i : i + batch])) for i in range(0, len(crops), batch)]).numpy()


def train_student(
    cfg: TrainConfig,
    student_cfg: StudentConfig,
    data: TrainData | SampledViews,
    run_dir: Path,
    validate: Callable[[Student], dict[str, float]],
    init: Callable[[], Student] | None = None,
    config_hash: str | None = None,
    carry: Path | None = None,
) -> Student:
    """Train (or resume) a student in ``run_dir``; ``validate(model) -> dict`` is called after each epoch.
    A fresh run starts from the trained layers of the student ``init()`` loads, when given (see
    :func:`training.student.warm_start`); a resumed run never calls it. ``config_hash`` (the run's training
    inputs) is kept in the checkpoint: a checkpoint of other inputs is refused instead of resumed.

    ``carry``: a second copy of every epoch's checkpoint, kept where it outlives the machine (``reproduce
    --carry``: a folder committed with the repository). The run resumes from whichever copy is further on, and
    once its last epoch is done the carried copy keeps only what a warm start or a resume needs (no optimizer
    state), to stay small. Each epoch's shuffling and augmentation are seeded by the seed and the epoch number,
    so a resumed run trains what an uninterrupted one trains."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = Student(student_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(data) // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15)
    ckpt_path, history_path = checkpoint_path(run_dir), run_dir / "history.json"
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    start, history, spent = 0, [], 0.0
    ckpt, found_in = _latest_checkpoint(ckpt_path, carry)
    if ckpt is not None:
        theirs = ckpt.get("config_hash")  # absent from checkpoints written before it was recorded
        if config_hash and theirs and theirs != config_hash:
            raise ValueError(
                f"the checkpoint of {run_dir} was trained from other training inputs (config hash {theirs}, this"
                f" run {config_hash}): delete {ckpt_path} (and {carry}) to train afresh, or give the run another name"
            )
        model.load_state_dict(ckpt["model"])
        start, history, spent = ckpt["epoch"], ckpt["history"], ckpt["seconds"]
        if "opt" in ckpt:
            opt.load_state_dict(ckpt["opt"])
            sched.load_state_dict(ckpt["sched"])
        elif start < cfg.epochs:
            raise ValueError(f"the checkpoint of {run_dir} holds no optimizer state, so epoch {start + 1} can't resume")
        log.info("resuming %s at epoch %d (%.1f min spent)", run_dir, start, spent / 60)
        if found_in != ckpt_path:  # resumed from the carried copy: warm starts and exports read this one
            torch.save(ckpt, ckpt_path)
            history_path.write_text(json.dumps(history, indent=1))
    elif init is not None:
        fresh = warm_start(model, init())
        log.info("warm start from a trained student; freshly initialised: %s", fresh or "nothing")
    for epoch in range(start, cfg.epochs):
        if cfg.max_minutes is not None and spent / 60 >= cfg.max_minutes:
            log.warning("time budget of %.0f min spent: stopping after %d epochs", cfg.max_minutes, epoch)
            break
        t0 = time.time()
        seed = int(np.random.SeedSequence([cfg.seed, epoch]).generate_state(1)[0])
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        model.train()
        order = data.epoch(rng)
        total, bar = (
            0.0,
            tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", mininterval=10),
        )
        for step in bar:
            idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            crops, targets = data.batch(idx)
            x = _to_tensor(crops)
            if cfg.augment:
                x = augment(x, gen)
            if cfg.jitter:
                x = jitter(x, cfg, gen)
            if cfg.mirror:
                x = mirror(x, cfg.mirror, gen)
            loss = regression_loss(model(x), torch.from_numpy(targets), cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            opt.step()
            sched.step()
            total += loss.item()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{total / (step + 1):.4f}")
        spent += time.time() - t0
        record = {"epoch": epoch + 1, "loss": total / steps_per_epoch, "minutes": spent / 60, **validate(model)}
        history.append(record)
        log.info("epoch %d: %s", epoch + 1, json.dumps(record))
        state = {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "epoch": epoch + 1,
            "history": history,
            "seconds": spent,
            "config_hash": config_hash,
        }
        torch.save(state, ckpt_path)
        if carry is not None:
            done = epoch + 1 == cfg.epochs
            _save_atomically({k: v for k, v in state.items() if not done or k not in ("opt", "sched")}, carry)
        history_path.write_text(json.dumps(history, indent=1))
    model.eval()
    return model


def _latest_checkpoint(path: Path, carry: Path | None) -> tuple[dict[str, Any] | None, Path | None]:
    """The checkpoint that is further on of ``path`` and ``carry`` (either may be missing; ``path`` on a tie) and
    where it was found, or ``(None, None)``."""
    found = [(torch.load(p, weights_only=False), p) for p in (path, carry) if p is not None and p.exists()]
    if not found:
        return None, None
    return max(found, key=lambda item: int(item[0]["epoch"]))  # max keeps the first of equals: ``path``


def _save_atomically(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file, so that a copy being committed is never half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
