"""Operating points: thresholds for a chosen false-accept rate, from all genuine and impostor pairs of a set.

A verification decision is ``similarity >= threshold`` (``service.similarity.is_match``), so at threshold ``t``
FAR is the share of impostor pairs scoring ``>= t`` and TAR the share of genuine pairs scoring ``>= t``.
Thresholds live on a grid of :data:`STEP` (the manifest's 4 decimals) and are rounded *up*, so the false-accept
rate measured on the calibration pairs never exceeds the rate asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

STEP = 1e-4  # threshold grid: the manifest stores 4 decimals


@dataclass(frozen=True)
class PairScores:
    """Similarities of every pair of a set of embeddings: ``genuine`` (same identity) and ``impostor``."""

    genuine: NDArray[np.float32]
    impostor: NDArray[np.float32]


def all_pair_scores(embeddings: NDArray[np.float32], identities: NDArray[np.int64], block: int = 1024) -> PairScores:
    """Cosine similarity of every unordered pair of unit ``embeddings`` ``(N, D)``, split by ``identities`` ``(N,)``.

    Row blocks against the columns after them: memory is ``block x N``, never ``N x N``.
    """
    count = len(embeddings)
    same_pairs = int(sum(n * (n - 1) // 2 for n in np.unique(identities, return_counts=True)[1]))
    genuine = np.empty(same_pairs, np.float32)
    impostor = np.empty(count * (count - 1) // 2 - same_pairs, np.float32)
    g = i = 0
    for lo in range(0, count, block):
        hi = min(lo + block, count)
        sims = embeddings[lo:hi] @ embeddings[lo:].T  # (rows, N - lo): column c is image lo + c
        upper = np.triu(np.ones((hi - lo, count - lo), bool), k=1)
        same = identities[lo:hi, None] == identities[None, lo:]
        kept_genuine, kept_impostor = sims[upper & same], sims[upper & ~same]
        genuine[g : g + len(kept_genuine)] = kept_genuine
        impostor[i : i + len(kept_impostor)] = kept_impostor
        g, i = g + len(kept_genuine), i + len(kept_impostor)
    assert g == len(genuine) and i == len(impostor)
    return PairScores(genuine, impostor)


def accepted(scores: NDArray[np.floating], threshold: float) -> int:
    """How many of ``scores`` the threshold accepts (``>=``, in float64 as the service compares)."""
    return int(np.count_nonzero(np.asarray(scores, dtype=np.float64) >= threshold))


def threshold_at_far(impostor: NDArray[np.floating], far: float) -> float:
    """The lowest grid threshold at which at most ``far`` of the ``impostor`` scores are accepted.

    With ``k = floor(far * N)`` impostors allowed, the threshold must lie above the ``(k+1)``-th highest
    impostor score; it is the first grid point strictly above it.
    """
    if not 0 < far < 1:
        raise ValueError(f"far must be in (0, 1), got {far}")
    allowed = math.floor(far * len(impostor) + 1e-9)
    if allowed >= len(impostor):
        return -1.0
    # the (allowed+1)-th highest score, without sorting all of them
    limit = float(np.partition(impostor, len(impostor) - 1 - allowed)[len(impostor) - 1 - allowed])
    step = math.floor(limit / STEP + 1e-9) + 1
    while round(step * STEP, 4) <= limit:  # float rounding of the grid point
        step += 1
    return round(step * STEP, 4)


def balanced_threshold(genuine: NDArray[np.floating], impostor: NDArray[np.floating]) -> float:
    """The grid threshold maximising balanced accuracy ``(TAR + 1 - FAR) / 2`` (genuine and impostor pairs
    weigh equally, however many of each there are); the lowest such threshold on ties."""
    grid = np.round(np.arange(-1.0, 1.0 + STEP / 2, STEP), 4)
    gen, imp = np.sort(np.asarray(genuine, np.float64)), np.sort(np.asarray(impostor, np.float64))
    tar = 1.0 - np.searchsorted(gen, grid, side="left") / len(gen)
    far = 1.0 - np.searchsorted(imp, grid, side="left") / len(imp)
    return float(grid[int(np.argmax(tar - far))])


@dataclass(frozen=True)
class Rates:
    """TAR and FAR at one threshold, with the counts they rest on."""

    threshold: float
    tar: float
    far: float
    genuine_pairs: int
    impostor_pairs: int
    genuine_accepted: int
    impostor_accepted: int


def rates(scores: PairScores, threshold: float) -> Rates:
    """TAR and FAR of ``scores`` at ``threshold``."""
    gen, imp = accepted(scores.genuine, threshold), accepted(scores.impostor, threshold)
    return Rates(
        threshold=threshold,
        tar=gen / len(scores.genuine),
        far=imp / len(scores.impostor),
        genuine_pairs=len(scores.genuine),
        impostor_pairs=len(scores.impostor),
        genuine_accepted=gen,
        impostor_accepted=imp,
    )
