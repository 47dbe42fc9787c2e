"""Operating points on hand-computed pairs: all-pairs scores, the threshold for a FAR, the balanced default."""

from __future__ import annotations

import numpy as np
import pytest

from training.operating_points import PairScores, all_pair_scores, balanced_threshold, rates, threshold_at_far

# Four unit vectors, identities 1, 1, 2, 2: genuine pairs (0,1) = 0.6 and (2,3) = 0;
# impostor pairs (0,2) = 0, (0,3) = -1, (1,2) = 0.8, (1,3) = -0.6.
EMBEDDINGS = np.array([[1, 0], [0.6, 0.8], [0, 1], [-1, 0]], np.float32)
IDENTITIES = np.array([1, 1, 2, 2])


@pytest.mark.parametrize("block", [1, 3, 1024])
def test_all_pairs_are_split_into_genuine_and_impostor(block: int) -> None:
    scores = all_pair_scores(EMBEDDINGS, IDENTITIES, block=block)
    np.testing.assert_allclose(np.sort(scores.genuine), [0.0, 0.6], atol=1e-6)
    np.testing.assert_allclose(np.sort(scores.impostor), [-1.0, -0.6, 0.0, 0.8], atol=1e-6)


def test_rates_count_what_the_threshold_accepts() -> None:
    scores = all_pair_scores(EMBEDDINGS, IDENTITIES)
    at = rates(scores, 0.6)  # accepts the genuine 0.6 and the impostor 0.8
    assert (at.tar, at.far, at.genuine_accepted, at.impostor_accepted) == (0.5, 0.25, 1, 1)
    assert (at.genuine_pairs, at.impostor_pairs) == (2, 4)


def test_threshold_at_far_allows_at_most_that_share_of_impostors() -> None:
    impostor = np.arange(100) / 100  # 0.00 .. 0.99
    # FAR 5%: 5 impostors may pass; the 6th highest is 0.94, so the first grid point above it.
    assert threshold_at_far(impostor, 0.05) == 0.9401
    assert int(np.sum(impostor >= 0.9401)) == 5
    # In float32, 0.94 is 0.93999999761...: the grid point 0.94 is already above it, and accepts 5.
    single = impostor.astype(np.float32)
    assert threshold_at_far(single, 0.05) == 0.94 and int(np.sum(single.astype(np.float64) >= 0.94)) == 5
    assert threshold_at_far(impostor, 0.001) == 0.9901  # none may pass: above the highest
    assert threshold_at_far(impostor, 0.5) == 0.4901
    with pytest.raises(ValueError, match="far must be in"):
        threshold_at_far(impostor, 0.0)


def test_the_default_maximises_balanced_accuracy() -> None:
    genuine, impostor = np.array([0.6, 0.8]), np.array([0.1, 0.3, 0.5, 0.7])
    # TAR - FAR: 1 - 1/4 for a threshold in (0.5, 0.6]; 1 - 2/4 in (0.3, 0.5]; 1/2 - 0 in (0.7, 0.8].
    assert balanced_threshold(genuine, impostor) == 0.5001
    r = rates(PairScores(genuine.astype(np.float32), impostor.astype(np.float32)), 0.5001)
    assert (r.tar, r.far) == (1.0, 0.25)
