"""A held-out verification set from the training pool, for model selection without touching LFW.

CelebA-in-the-wild identities whose id is divisible by 5 (about 60 people, ~1,100 photos) are never trained
on. Same-person and different-person pairs among them form a small LFW-like protocol scored 10-fold.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from training.data.labels import PoolLabels
from training.evaluate import Pairs


def holdout_mask(files: list[str], labels: PoolLabels) -> NDArray[np.bool_]:
    """``(N,)`` True for images held out of training."""
    wild = np.array(["celeba_wild" in f for f in files])
    held: NDArray[np.bool_] = wild & (labels.identity >= 0) & (labels.identity % 5 == 0)
    return held


def holdout_pairs(mask: NDArray[np.bool_], labels: PoolLabels, per_class: int = 1500, seed: int = 0) -> Pairs:
    """``per_class`` same and different pairs among held-out images, split into 10 folds."""
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(mask)
    ids = labels.identity[idx]
    same_pairs: list[tuple[int, int]] = []
    for person in np.unique(ids):
        members = idx[ids == person]
        same_pairs += [(int(a), int(b)) for k, a in enumerate(members) for b in members[k + 1 :]]
    chosen = rng.choice(len(same_pairs), min(per_class, len(same_pairs)), replace=False)
    same = [same_pairs[k] for k in chosen]
    diff: list[tuple[int, int]] = []
    while len(diff) < len(same):
        a, b = rng.choice(idx, 2, replace=False)
        if labels.identity[a] != labels.identity[b]:
            diff.append((int(a), int(b)))
    pairs = same + diff
    fold = np.concatenate([np.arange(len(same)) % 10, np.arange(len(diff)) % 10])
    return Pairs(
        np.array([p[0] for p in pairs]),
        np.array([p[1] for p in pairs]),
        np.array([True] * len(same) + [False] * len(diff)),
        fold,
    )
