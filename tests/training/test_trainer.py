"""The training losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import TrainConfig
from training.paths import checkpoint_path
from training.student import StudentConfig
from training.trainer import TrainData, contrastive_loss, mirror, regression_loss, relational_loss, train_student


def test_relational_loss_compares_pairwise_cosines_only() -> None:
    torch.manual_seed(0)
    target = torch.randn(16, 32)
    # Pairwise cosines do not change when each row is rescaled: the relational term is zero...
    assert relational_loss(target * torch.rand(16, 1).add(0.5), target) < 1e-10
    # ...nor under a rotation of the whole space, although every row moved.
    rotation, _ = torch.linalg.qr(torch.randn(32, 32))
    assert relational_loss(target @ rotation, target) < 1e-10
    # Noise that changes the angles between faces is penalised.
    assert relational_loss(target + torch.randn(16, 32), target) > 1e-2


def test_regression_loss_adds_the_relational_term_only_when_weighted() -> None:
    torch.manual_seed(0)
    pred, target = torch.randn(8, 16), torch.randn(8, 16)
    plain = regression_loss(pred, target, TrainConfig())
    weighted = regression_loss(pred, target, TrainConfig(relational_weight=2.0))
    torch.testing.assert_close(weighted, plain + 2.0 * relational_loss(pred, target))


def test_mirror_flips_a_share_of_the_images_left_right_and_leaves_the_batch_alone() -> None:
    x = torch.rand(64, 3, 8, 8)
    before = x.clone()
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(mirror(x, 1.0, gen), x.flip(3))
    torch.testing.assert_close(mirror(x, 0.0, gen), x)
    out = mirror(x, 0.5, gen)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped | kept).all() and 16 < int(flipped.sum()) < 48
    torch.testing.assert_close(x, before)  # the caller's batch is not modified in place


def test_contrastive_loss_rewards_each_face_for_matching_its_own_target_only() -> None:
    torch.manual_seed(0)
    target = torch.randn(32, 64)
    own = contrastive_loss(target * 3.0, target, 0.1)  # scale-free: cosines only
    shuffled = contrastive_loss(target[torch.randperm(32)], target, 0.1)
    assert own < 0.01 < shuffled
    # A student collapsed onto one direction cannot tell the batch's faces apart: about log(batch).
    collapsed = contrastive_loss(target[:1].expand(32, -1), target, 0.1)
    assert collapsed > 1.0


def test_regression_loss_adds_the_contrastive_term_only_when_weighted() -> None:
    torch.manual_seed(0)
    pred, target = torch.randn(8, 16), torch.randn(8, 16)
    plain = regression_loss(pred, target, TrainConfig())
    cfg = TrainConfig(contrastive_weight=0.5, contrastive_temperature=0.2)
    torch.testing.assert_close(regression_loss(pred, target, cfg), plain + 0.5 * contrastive_loss(pred, target, 0.2))


def test_a_checkpoint_of_other_training_inputs_is_refused_not_resumed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = TrainData(rng.integers(0, 256, (32, 64, 64, 3), dtype=np.uint8), rng.normal(size=(32, 8)).astype(np.float32))
    student = StudentConfig(64, [8, 16, 16, 32], downsample="stride", hidden=16, out_dim=8)
    cfg = TrainConfig(epochs=1, batch_size=16, threads=1, max_minutes=None)
    run = tmp_path / "run"
    run.mkdir()
    train_student(cfg, student, data, run, lambda model: {}, config_hash="aaaa")
    assert checkpoint_path(run).exists()
    # The same inputs resume (nothing left to train); other inputs are refused with a message that says what to do.
    train_student(cfg, student, data, run, lambda model: {}, config_hash="aaaa")
    with pytest.raises(ValueError, match="other training inputs"):
        train_student(cfg, student, data, run, lambda model: {}, config_hash="bbbb")
