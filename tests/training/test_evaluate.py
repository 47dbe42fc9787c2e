"""The verification metrics every model decision rests on, on pairs small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import (
    Pairs,
    _best_threshold,
    cosine_scores,
    fold_correct,
    fold_thresholds,
    roc_auc,
    row_cosine,
    tar_at_far,
    ten_fold,
)


def test_best_threshold_is_the_midpoint_below_the_most_accurate_cut() -> None:
    # Sorted: 0.1 (diff), 0.35 (same), 0.4 (diff), 0.8 (same). Accepting from 0.35 up gets 3 of 4 right
    # (as does accepting only 0.8); the first best cut wins and sits halfway between 0.1 and 0.35.
    scores, same = np.array([0.4, 0.1, 0.8, 0.35]), np.array([False, False, True, True])
    assert _best_threshold(scores, same) == pytest.approx(0.225)
    # Everything the same person: accept all, at the lowest score itself.
    assert _best_threshold(np.array([0.3, 0.7]), np.array([True, True])) == 0.3


def test_roc_auc_counts_ordered_pairs_and_half_of_ties() -> None:
    same = np.array([True, True, False, False])
    # positives 0.8, 0.35 vs negatives 0.1, 0.4: 3 of the 4 (positive, negative) pairs are ordered right.
    assert roc_auc(np.array([0.8, 0.35, 0.1, 0.4]), same) == pytest.approx(0.75)
    # positives 0.5, 0.9 vs negatives 0.5, 0.2: one tie (half) and three right: 3.5 / 4.
    assert roc_auc(np.array([0.5, 0.9, 0.5, 0.2]), same) == pytest.approx(0.875)
    assert roc_auc(np.array([0.9, 0.8, 0.1, 0.2]), same) == 1.0


def test_tar_at_far() -> None:
    negatives, positives = np.arange(10) / 10, np.array([0.95, 0.85, 0.5])  # negatives 0.0 .. 0.9
    scores = np.concatenate([negatives, positives])
    same = np.concatenate([np.zeros(10, bool), np.ones(3, bool)])
    # FAR 10%: one negative (0.9) may be accepted, so positives must beat 0.8: 0.95 and 0.85.
    assert tar_at_far(scores, same, 0.1) == pytest.approx(2 / 3)
    # FAR 1e-3 of 10 negatives allows none: positives must beat 0.9.
    assert tar_at_far(scores, same, 1e-3) == pytest.approx(1 / 3)
    assert tar_at_far(scores, same, 1.0) == 1.0


def test_ten_fold_picks_each_folds_threshold_on_the_others() -> None:
    # Fold 0: same 0.9, different 0.2. Fold 1: same 0.6, different 0.7 (an impostor scores higher).
    scores = np.array([0.9, 0.2, 0.6, 0.7])
    pairs = Pairs(
        np.zeros(4, np.int64), np.zeros(4, np.int64), np.array([True, False, True, False]), np.array([0, 0, 1, 1])
    )
    result = ten_fold(scores, pairs)
    # Fold 0 is scored at fold 1's best cut (accept from 0.6: 1 of 2 right) -> 2/2 right.
    # Fold 1 is scored at fold 0's best cut ((0.2 + 0.9) / 2 = 0.55) -> 0.6 accepted, 0.7 wrongly too: 1/2.
    assert result.thresholds == pytest.approx([0.6, 0.55])
    assert result.fold_accuracies == [1.0, 0.5]
    assert (result.accuracy, result.accuracy_std) == pytest.approx((0.75, 0.25))
    assert result.threshold_mean == pytest.approx(0.575)
    assert result.roc_auc == pytest.approx(0.75) and result.pairs == 4


def _three_folds() -> tuple[np.ndarray, Pairs]:
    scores = np.array([0.9, 0.1, 0.8, 0.15, 0.3, 0.7])
    same = np.array([True, False, True, False, True, False])
    return scores, Pairs(np.zeros(6, np.int64), np.zeros(6, np.int64), same, np.array([0, 0, 1, 1, 2, 2]))


def test_fold_correct_scores_each_fold_at_the_threshold_of_the_others() -> None:
    scores, pairs = _three_folds()
    # Fold 0 from folds 1-2: sorted 0.15 (diff), 0.3 (same), 0.7 (diff), 0.8 (same): accepting from 0.3 up or only
    # 0.8 gets 3 of 4; the first wins, halfway between 0.15 and 0.3. Fold 1 from folds 0 and 2 alike: (0.1 + 0.3) / 2.
    # Fold 2 from folds 0-1: 0.1, 0.15 (diff) below 0.8, 0.9 (same): all 4 right halfway between 0.15 and 0.8.
    assert fold_thresholds(scores, pairs) == pytest.approx({0: 0.225, 1: 0.2, 2: 0.475})
    # Folds 0 and 1 are separated by those thresholds; fold 2 is upside down (same 0.3, different 0.7): both wrong.
    assert fold_correct(scores, pairs).tolist() == [True, True, True, True, False, False]


def test_ten_fold_is_fold_correct_averaged_per_fold() -> None:
    """One implementation of the protocol: ten_fold's per-fold figures are fold_correct's, fold by fold."""
    scores, pairs = _three_folds()
    result, correct = ten_fold(scores, pairs), fold_correct(scores, pairs)
    assert result.fold_accuracies == [float(correct[pairs.fold == k].mean()) for k in range(3)] == [1.0, 1.0, 0.0]
    assert result.thresholds == list(fold_thresholds(scores, pairs).values())
    assert result.accuracy == pytest.approx(2 / 3)


def test_cosine_scores_normalise_first() -> None:
    embeddings = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    pairs = Pairs(np.array([0, 0, 2]), np.array([1, 2, 2]), np.ones(3, bool), np.zeros(3, np.int64))
    np.testing.assert_allclose(cosine_scores(embeddings, pairs), [0.0, 1 / np.sqrt(2), 1.0])


def test_pairs_on_images_index_the_shorter_list_of_the_images_they_use() -> None:
    pairs = Pairs(np.array([7, 2, 9]), np.array([2, 11, 7]), np.array([True, False, True]), np.array([0, 1, 2]))
    used, local = pairs.on_images()
    assert used.tolist() == [2, 7, 9, 11]
    assert used[local.left].tolist() == pairs.left.tolist() and used[local.right].tolist() == pairs.right.tolist()
    assert local.same is pairs.same and local.fold is pairs.fold


def test_row_cosine_compares_each_row_with_its_own_target_only() -> None:
    pred = np.array([[1.0, 0.0], [3.0, 3.0], [0.0, -2.0]])
    target = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 5.0]])  # same direction, 45 degrees, opposite
    np.testing.assert_allclose(row_cosine(pred, target), [1.0, np.sqrt(0.5), -1.0])
