"""MobileID neuron selection on cases small enough to work out by hand."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from training.data.labels import PoolLabels
from training.neurons import NeuronSpace, whitened_components
from training.selection import SelectionConfig, fisher_ratio, greedy_select, select


def test_fisher_ratio_by_hand() -> None:
    # Identities 0 (values 1, 3) and 1 (5, 7); identity 2 has one image and -1 is unknown: both left out.
    z = np.array([[1.0], [3.0], [5.0], [7.0], [100.0], [-50.0]], np.float32)
    identity = np.array([0, 0, 1, 1, 2, -1])
    # means 2 and 6, grand mean 4: within = (1 + 1 + 1 + 1) / (4 - 2) = 2; between = 2 * (4 + 4) / (2 - 1) = 16.
    assert fisher_ratio(z, identity) == pytest.approx([8.0])


def test_greedy_selection_trades_score_against_redundancy() -> None:
    unary = np.array([3.0, 2.9, 1.0, 0.0])
    corr = np.zeros((4, 4))
    corr[0, 1] = corr[1, 0] = 1.0  # neurons 0 and 1 carry the same signal
    assert greedy_select(unary, corr, 2, redundancy=0.0) == [0, 1]
    assert greedy_select(unary, corr, 2, redundancy=1.0) == [0, 1]  # 2.9 - 1 = 1.9 still beats 1.0
    assert greedy_select(unary, corr, 2, redundancy=2.5) == [0, 2]  # 2.9 - 2.5 = 0.4 does not
    assert greedy_select(unary, corr, 4, redundancy=2.5) == [0, 1, 2, 3]


def _pool(seed: int = 0) -> tuple[np.ndarray, PoolLabels]:
    """100 identities x 4 photos; neuron 0 carries identity, neuron 1 the photo's smile, neuron 2 noise."""
    rng = np.random.default_rng(seed)
    identity = np.repeat(np.arange(100), 4)
    smiling = rng.choice([-1.0, 1.0], len(identity))
    male = np.repeat(rng.choice([-1.0, 1.0], 100), 4)
    z = rng.normal(size=(len(identity), 3)).astype(np.float32)
    z[:, 0] += 3 * rng.normal(size=100)[identity]
    z[:, 1] += 3 * smiling
    labels = PoolLabels(["Male", "Smiling"], np.stack([male, smiling], 1).astype(np.float32), identity)
    return z, labels


def test_energy_selection_keeps_identity_and_drops_the_nuisance_neuron() -> None:
    z, labels = _pool()
    chosen, scores, effects = select(z, labels, SelectionConfig(size=2, beta=1.0, redundancy=0.0))
    assert chosen == [0, 2]
    assert effects.shape == (2, 3) and effects[1, 1] > 2 > effects[1, 0]  # Smiling's effect lives on neuron 1
    assert scores.top_nuisance_attr == ["Smiling"] * 3
    assert np.argmax(scores.fisher) == 0


def test_all_and_seeded_random_selection() -> None:
    z, labels = _pool()
    assert select(z, labels, SelectionConfig(size=0))[0] == [0, 1, 2]
    assert select(z, labels, SelectionConfig(size=2, method="all"))[0] == [0, 1, 2]
    first = select(z, labels, SelectionConfig(size=2, method="random"), seed=3)[0]
    assert len(set(first)) == 2 and first == select(z, labels, SelectionConfig(size=2, method="random"), seed=3)[0]


def test_whitened_components_decorrelate_and_keep_the_leading_directions() -> None:
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(6, 6))
    z = (rng.normal(size=(4000, 6)) * np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.1])) @ mixing
    basis = whitened_components(z, 3)
    w = (z - z.mean(axis=0)) @ basis
    np.testing.assert_allclose(np.cov(w, rowvar=False), np.eye(3), atol=1e-4)  # white
    # The three kept directions carry most of the variance: the part of z they leave out is small.
    leading = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)[2][:3]
    kept = np.linalg.svd(basis.T, full_matrices=False)[2]
    assert np.allclose(np.abs(np.linalg.svd(leading @ kept.T)[1]), 1.0, atol=1e-3)  # same subspace
    np.testing.assert_array_equal(basis, whitened_components(z, 3))  # reproducible, signs included


def test_a_space_with_a_basis_maps_to_components_and_survives_saving(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    raw = {"a": rng.normal(size=(500, 8)), "b": rng.normal(size=(500, 8))}
    space = NeuronSpace.fit(raw)
    pca = dataclasses.replace(space, basis=whitened_components(space.transform(raw), 5))
    assert pca.transform(raw).shape == (500, 5)
    pca.save(tmp_path / "n.npz")
    back = NeuronSpace.load(tmp_path / "n.npz")
    assert back.same_as(pca) and not back.same_as(space) and not space.same_as(pca)
    np.testing.assert_array_equal(back.transform(raw), pca.transform(raw))


def test_pca_selects_component_indices_and_unknown_methods_are_refused() -> None:
    z = np.random.default_rng(2).normal(size=(200, 10)).astype(np.float32)
    labels = PoolLabels(["Male", "Smiling"], np.sign(z[:, :2]), np.arange(200) // 2)
    chosen, _, _ = select(z, labels, SelectionConfig(size=4, method="pca"))
    assert chosen == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="selection.method"):
        select(z, labels, SelectionConfig(size=4, method="pcaa"))
