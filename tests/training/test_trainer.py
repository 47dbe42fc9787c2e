"""The training losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import TrainConfig
from training.paths import checkpoint_path
from training.student import StudentConfig
from training.trainer import (
    TrainData,
    contrastive_loss,
    jitter,
    mirror,
    regression_loss,
    relational_loss,
    train_student,
)


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


def _tiny_run() -> tuple[TrainData, StudentConfig]:
    rng = np.random.default_rng(0)
    data = TrainData(rng.integers(0, 256, (48, 64, 64, 3), dtype=np.uint8), rng.normal(size=(48, 8)).astype(np.float32))
    return data, StudentConfig(64, [8, 16, 16, 32], downsample="stride", hidden=16, out_dim=8)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_an_interrupted_run_resumed_from_its_carried_checkpoint_trains_what_an_uninterrupted_one_trains(
    tmp_path: Path,
) -> None:
    data, student = _tiny_run()
    cfg = TrainConfig(epochs=2, batch_size=16, threads=1, max_minutes=None, augment=True, mirror=0.5)
    straight = tmp_path / "straight"
    straight.mkdir()
    expected = _weights(train_student(cfg, student, data, straight, lambda model: {}, config_hash="aaaa"))

    # The same run stopped after its first epoch (a budget it spends at once), on a machine that is then lost:
    # only the carried copy survives, and the run resumes from it in another run folder.
    first, carry = tmp_path / "first", tmp_path / "repo" / "rebuild" / "checkpoint.pt"
    first.mkdir()
    budget = TrainConfig(**{**vars(cfg), "max_minutes": 1e-9})
    train_student(budget, student, data, first, lambda model: {}, config_hash="aaaa", carry=carry)
    halfway = torch.load(carry, weights_only=False)
    assert halfway["epoch"] == 1 and "opt" in halfway  # the round in progress carries its optimizer state
    second = tmp_path / "second"
    second.mkdir()
    resumed = train_student(cfg, student, data, second, lambda model: {}, config_hash="aaaa", carry=carry)
    for name, value in _weights(resumed).items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)

    # Once done, the carried copy keeps the weights only, and is enough to skip the training (and warm start from).
    done = torch.load(carry, weights_only=False)
    assert done["epoch"] == 2 and "opt" not in done
    # A run folder whose own checkpoint is behind the carried one (here: the first run's, stopped at epoch 1) takes
    # the carried one, also as the checkpoint that warm starts and exports read from that folder.
    skipped = train_student(cfg, student, data, first, lambda model: {}, config_hash="aaaa", carry=carry)
    assert torch.load(checkpoint_path(first), weights_only=False)["epoch"] == 2
    for name, value in _weights(skipped).items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)


def test_a_carried_checkpoint_without_optimizer_state_cannot_resume_an_unfinished_run(tmp_path: Path) -> None:
    data, student = _tiny_run()
    run, carry = tmp_path / "run", tmp_path / "carry.pt"
    run.mkdir()
    cfg = TrainConfig(epochs=1, batch_size=16, threads=1, max_minutes=None)
    train_student(cfg, student, data, run, lambda model: {}, carry=carry)
    more = tmp_path / "more"
    more.mkdir()
    with pytest.raises(ValueError, match="no optimizer state"):
        train_student(TrainConfig(**{**vars(cfg), "epochs": 2}), student, data, more, lambda model: {}, carry=carry)


def test_weighted_training_data_draws_an_epoch_of_samples_in_proportion_to_the_weights() -> None:
    crops, targets = np.zeros((400, 8, 8, 3), np.uint8), np.zeros((400, 2), np.float32)
    assert sorted(TrainData(crops, targets).epoch(np.random.default_rng(0))) == list(range(400))  # each once
    weights = np.where(np.arange(400) < 100, 3.0, 1.0)  # a quarter of the samples, 3x as likely: half the draws
    weighted = TrainData(crops, targets, weights)
    epochs = [weighted.epoch(np.random.default_rng(seed)) for seed in range(50)]
    assert {len(e) for e in epochs} == {400}  # epochs keep their length
    assert abs(np.mean(np.concatenate(epochs) < 100) - 0.5) < 0.015  # 4 standard deviations of 20,000 draws


def test_jitter_moves_the_chosen_share_of_a_batch_and_a_pure_shift_is_a_translation() -> None:
    x = torch.rand(64, 3, 16, 16) * 255
    assert torch.equal(jitter(x, TrainConfig(jitter=0.0), torch.Generator().manual_seed(0)), x)
    out = jitter(x, TrainConfig(jitter=0.5), torch.Generator().manual_seed(0))
    moved = (out != x).flatten(1).any(1)
    assert out.shape == x.shape and 16 < int(moved.sum()) < 48  # about half of them; the others untouched
    # A horizontal ramp (value = column) under a pure shift of d px (|d| <= 1) is the ramp minus d, inside the edges.
    ramp = torch.arange(16.0).repeat(8, 3, 16, 1)
    shift = TrainConfig(jitter=1.0, jitter_shift=1.0, jitter_scale=0.0, jitter_rotate=0.0)
    offset = (jitter(ramp, shift, torch.Generator().manual_seed(1)) - ramp)[..., 2:-2]
    per_image = offset.flatten(1)
    torch.testing.assert_close(per_image, per_image[:, :1].expand_as(per_image), atol=1e-4, rtol=0)
    assert per_image.abs().max() <= 1 + 1e-4 and per_image[:, 0].std() > 0  # shifts differ from image to image


def test_self_distillation_needs_a_warm_start_and_a_share_in_0_1(tmp_path: Path) -> None:
    from training.config import load_config
    from training.stages.run import Run
    from training.stages.train import _flip_averaged_parent

    assert _flip_averaged_parent(Run(load_config(None, ["name=plain"]), tmp_path), [0]) is None
    for overrides in (["train.self_weight=0.5"], ["train.self_weight=1.5", "train.init_from=runs/ensemble-deep9"]):
        run = Run(load_config(None, ["name=selfish", *overrides]), tmp_path)
        with pytest.raises(ValueError, match="train.self_weight"):
            _flip_averaged_parent(run, [0])
