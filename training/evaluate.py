"""LFW verification protocol: official 6,000 pairs, 10-fold cross-validation.

The threshold is picked on 9 folds (maximum accuracy) and scored on the held-out fold; we report the mean
and standard deviation of the 10 held-out accuracies, the ROC AUC over all pairs and TAR at FAR = 1e-3.
LFW is test data only: nothing here feeds back into training or selection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

from training.paths import DATA


@dataclass(frozen=True)
class Pairs:
    """``left``/``right`` index into an image list; ``same`` (P,) bool; ``fold`` (P,) int 0-9."""

    left: NDArray[np.int64]
    right: NDArray[np.int64]
    same: NDArray[np.bool_]
    fold: NDArray[np.int64]

    def images(self) -> NDArray[np.int64]:
        """Sorted indices of the images the pairs use."""
        return np.unique(np.concatenate([self.left, self.right]))

    def on_images(self) -> tuple[NDArray[np.int64], Pairs]:
        """The images the pairs use (:meth:`images`) and the same pairs indexing that shorter list instead."""
        used = self.images()
        local = np.searchsorted(used, self.left), np.searchsorted(used, self.right)
        return used, Pairs(local[0], local[1], self.same, self.fold)


def read_pairs(files: list[str], limit_per_fold: int | None = None) -> Pairs:
    """Parse ``lfw/pairs.txt`` against ``files`` (relative paths as returned by ``data.lfw_files``)."""
    index = {f: i for i, f in enumerate(files)}
    lines = (DATA / "lfw/pairs.txt").read_text().split("\n")
    folds, per_class = (int(x) for x in lines[0].split())

    def path(name: str, number: str) -> str:
        return f"lfw/images_deepfunneled/{name}/{name}_{int(number):04d}.jpg"

    left, right, same, fold = [], [], [], []
    row = 1
    for k in range(folds):
        for is_same in (True, False):
            for j in range(per_class):
                parts = lines[row].split()
                row += 1
                if limit_per_fold is not None and j >= limit_per_fold // 2:
                    continue
                a, b = (
                    ((parts[0], parts[1]), (parts[0], parts[2]))
                    if is_same
                    else ((parts[0], parts[1]), (parts[2], parts[3]))
                )
                left.append(index[path(*a)])
                right.append(index[path(*b)])
                same.append(is_same)
                fold.append(k)
    return Pairs(np.array(left), np.array(right), np.array(same), np.array(fold))


def _best_threshold(scores: NDArray[np.float64], same: NDArray[np.bool_]) -> float:
    """Threshold maximising accuracy (midpoint between consecutive sorted scores)."""
    order = np.argsort(scores)
    s, y = scores[order], same[order]
    # accepting everything at or above s[i]: correct = positives at/above + negatives below
    pos_at_or_above = np.cumsum(y[::-1])[::-1]
    neg_below = np.concatenate([[0], np.cumsum(~y)[:-1]])
    best = int(np.argmax(pos_at_or_above + neg_below))
    return float(s[best] if best == 0 else (s[best - 1] + s[best]) / 2)


def roc_auc(scores: NDArray[np.float64], same: NDArray[np.bool_]) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    ranks[order] = np.arange(1, len(scores) + 1)
    # average ranks over ties
    _, inverse, counts = np.unique(sorted_scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks[order])
    ranks[order] = (sums / counts)[inverse]
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    return float((ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tar_at_far(scores: NDArray[np.float64], same: NDArray[np.bool_], far: float) -> float:
    """True-accept rate at the threshold where at most ``far`` of the negative pairs are accepted."""
    negatives = np.sort(scores[~same])[::-1]
    allowed = int(np.floor(far * len(negatives)))
    threshold = negatives[allowed] if allowed < len(negatives) else -np.inf
    return float(np.mean(scores[same] > threshold))


def roc_curve(scores: NDArray[np.float64], same: NDArray[np.bool_]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(FAR, TAR) points over every threshold, for plotting."""
    order = np.argsort(-scores)
    y = same[order]
    tar = np.concatenate([[0], np.cumsum(y) / max(1, y.sum())])
    far = np.concatenate([[0], np.cumsum(~y) / max(1, (~y).sum())])
    return far, tar


@dataclass(frozen=True)
class Verification:
    accuracy: float
    accuracy_std: float
    fold_accuracies: list[float]
    thresholds: list[float]
    threshold_mean: float
    roc_auc: float
    tar_at_far_1e3: float
    pairs: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _unit(rows: NDArray[np.floating]) -> NDArray[np.float64]:
    e = np.asarray(rows, dtype=np.float64)
    unit: NDArray[np.float64] = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return unit


def cosine_scores(embeddings: NDArray[np.floating], pairs: Pairs) -> NDArray[np.float64]:
    e = _unit(embeddings)
    scores: NDArray[np.float64] = np.sum(e[pairs.left] * e[pairs.right], axis=1)
    return scores


def row_cosine(pred: NDArray[np.floating], target: NDArray[np.floating]) -> NDArray[np.float64]:
    """Cosine of each row of ``pred`` with the same row of ``target``: how closely a student fits its target."""
    cos: NDArray[np.float64] = np.sum(_unit(pred) * _unit(target), axis=1)
    return cos


def fold_thresholds(scores: NDArray[np.float64], pairs: Pairs) -> dict[int, float]:
    """Each fold's threshold, picked (maximum accuracy) on the pairs of the other folds."""
    thresholds = {}
    for k in np.unique(pairs.fold):
        train = pairs.fold != k
        thresholds[int(k)] = _best_threshold(scores[train], pairs.same[train])
    return thresholds


def _correct_at(scores: NDArray[np.float64], pairs: Pairs, thresholds: dict[int, float]) -> NDArray[np.bool_]:
    correct = np.zeros(len(scores), bool)
    for k, t in thresholds.items():
        test = pairs.fold == k
        correct[test] = (scores[test] >= t) == pairs.same[test]
    return correct


def fold_correct(scores: NDArray[np.float64], pairs: Pairs) -> NDArray[np.bool_]:
    """``(P,)`` whether each pair is answered right at its fold's threshold, picked on the other folds: the
    10-fold protocol pair by pair (for accuracy over any subset of the pairs, e.g. by head pose)."""
    return _correct_at(scores, pairs, fold_thresholds(scores, pairs))


def ten_fold(scores: NDArray[np.float64], pairs: Pairs) -> Verification:
    """10-fold protocol on similarity ``scores`` (P,) for ``pairs``."""
    thresholds = fold_thresholds(scores, pairs)
    correct = _correct_at(scores, pairs, thresholds)
    accs = [float(np.mean(correct[pairs.fold == k])) for k in thresholds]
    return Verification(
        accuracy=float(np.mean(accs)),
        accuracy_std=float(np.std(accs)),
        fold_accuracies=accs,
        thresholds=list(thresholds.values()),
        threshold_mean=float(np.mean(list(thresholds.values()))),
        roc_auc=roc_auc(scores, pairs.same),
        tar_at_far_1e3=tar_at_far(scores, pairs.same, 1e-3),
        pairs=len(scores),
    )
