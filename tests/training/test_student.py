"""Student architectures: both layouts give the same output shape; the deep one's cost is as designed."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from training.student import (
    InvertedResidual,
    RepConv,
    Residual,
    Student,
    StudentConfig,
    parameter_count,
    warm_start,
)


def test_pool_and_stride_layouts_agree_on_shapes() -> None:
    x = torch.rand(2, 3, 64, 64) * 255
    for cfg in (
        StudentConfig(64, [16, 32, 64, 128], out_dim=192),
        StudentConfig(64, [24, 32, 64, 128], downsample="stride", blocks=[2, 2, 0], out_dim=192),
    ):
        model = Student(cfg).eval()
        assert model(x).shape == (2, 192)
        # Both end on a 4x4 map that the global depthwise conv reduces to one vector.
        assert model.gdc[0].kernel_size == (4, 4)


def test_deep_student_has_residual_blocks_and_fits_the_compression_bar() -> None:
    model = Student(StudentConfig(64, [24, 32, 64, 128], downsample="stride", blocks=[2, 2, 0], out_dim=192))
    assert sum(isinstance(m, Residual) for m in model.modules()) == 4
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1]
    assert len(convs) == 8
    # Teacher ensemble: SFace 9.63 M + dlib 5.61 M parameters; the bar is >= 51.6x fewer.
    assert 15.24e6 / parameter_count(model) >= 51.6


@pytest.mark.parametrize(
    "kwargs",
    [{"downsample": "avg"}, {"downsample": "stride", "blocks": [1, 1]}, {"blocks": [1, 0, 0, 0]}, {"hidden": -1}],
)
def test_bad_architecture_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="student"):
        Student(StudentConfig(64, [16, 32, 64, 128], **kwargs))


def _deep(blocks: list[int]) -> Student:
    return Student(StudentConfig(64, [24, 32, 64, 128], downsample="stride", blocks=blocks, out_dim=192)).eval()


def test_warm_start_copies_a_trained_student_stage_by_stage() -> None:
    torch.manual_seed(0)
    source, same = _deep([2, 2, 0]), _deep([2, 2, 0])
    for p in source.parameters():
        torch.nn.init.normal_(p)  # any weights unlike a fresh init
    assert warm_start(same, source) == []
    x = torch.rand(2, 3, 64, 64) * 255
    torch.testing.assert_close(same(x), source(x))

    shallow = _deep([1, 1, 0])
    assert warm_start(shallow, source) == []  # every layer of the shallower net has a trained counterpart
    # Stage 2's stride conv sits at index 8 in the source and 7 in the shallow net (one residual block fewer).
    torch.testing.assert_close(shallow.features[7].weight, source.features[8].weight)
    torch.testing.assert_close(shallow.features[6].body[0].weight, source.features[6].body[0].weight)
    torch.testing.assert_close(shallow.head[-1].weight, source.head[-1].weight)

    deeper = _deep([2, 3, 0])
    fresh = warm_start(deeper, source)
    assert fresh and all(key.startswith("features.13.") for key in fresh)  # only the extra block stays fresh
    # The extra block starts near the identity, and it learns: gradient reaches its conv and BN.
    deeper.train()
    deeper(x).square().sum().backward()
    block = deeper.features[13].body
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    source.eval(), deeper.eval()
    identity = deeper.features[13]
    deeper.features[13] = torch.nn.Identity()
    without_block = deeper(x)
    deeper.features[13] = identity
    out = deeper(x)
    assert (out - without_block).norm() < 0.5 * without_block.norm()


def test_warm_start_refuses_a_narrower_student_or_other_stages() -> None:
    with pytest.raises(ValueError, match="at least as wide"):
        warm_start(Student(StudentConfig(64, [16, 32, 64, 128], out_dim=192)), _deep([2, 2, 0]))
    with pytest.raises(ValueError, match="at least as wide"):
        warm_start(Student(StudentConfig(64, [24, 32, 64], out_dim=192)), _deep([2, 2, 0]))


def test_a_wider_student_starts_computing_what_the_narrower_one_does_and_its_new_channels_learn() -> None:
    torch.manual_seed(0)
    source = Student(
        StudentConfig(64, [24, 32, 64, 128], downsample="stride", blocks=[2, 2, 0], stem_blocks=1, out_dim=192)
    )
    for p in source.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.rand(4, 3, 64, 64) * 255
    source.train()
    source(x)  # running BN statistics unlike a fresh init's
    source.eval()
    wide = Student(dataclasses.replace(source.cfg, channels=[32, 48, 96, 192])).eval()
    assert warm_start(wide, source) == []
    torch.testing.assert_close(wide(x), source(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(wide.features[0].weight[:24], source.features[0].weight)
    assert wide.features[4].weight[:32, 24:].abs().sum() == 0  # new inputs do not reach the trained outputs ...
    assert wide.features[4].weight[32:].abs().sum() > 0  # ... while the new outputs start from their fresh init
    wide.train()
    wide(x).square().sum().backward()
    grad = wide.head[0].weight.grad
    assert grad is not None and grad[:, 128:].abs().sum() > 0  # the new channels' way to the output learns


def test_a_stem_block_is_added_by_warm_start_and_keeps_the_trained_layers() -> None:
    torch.manual_seed(0)
    source = _deep([3, 2, 0])
    stem = Student(
        StudentConfig(64, [24, 32, 64, 128], downsample="stride", blocks=[3, 2, 0], stem_blocks=1, out_dim=192)
    ).eval()
    # One 24-channel 3x3 conv at 32x32: 5 k parameters; the deep student plus it still meets the compression bar.
    assert parameter_count(stem) - parameter_count(source) == 24 * 24 * 9 + 2 * 24
    assert 15.28e6 / parameter_count(stem) >= 51.6
    fresh = warm_start(stem, source)
    assert fresh and all(key.startswith("features.3.") for key in fresh)  # the block right after the stem
    torch.testing.assert_close(stem.features[4].weight, source.features[3].weight)  # stage 1's stride conv
    x = torch.rand(2, 3, 64, 64) * 255
    assert (stem(x) - source(x)).norm() < 0.5 * source(x).norm()


def test_a_narrower_head_keeps_the_hidden_units_that_weigh_most() -> None:
    torch.manual_seed(0)
    wide = Student(StudentConfig(64, [24, 32, 64, 128], downsample="stride", hidden=8, out_dim=192)).eval()
    for p in wide.parameters():
        torch.nn.init.normal_(p)
    torch.nn.init.normal_(wide.head[1].running_mean)
    torch.nn.init.uniform_(wide.head[1].running_var, 0.5, 2.0)
    strong = torch.tensor([1, 4, 6])
    with torch.no_grad():  # every other hidden unit reaches the output with zero weight: it computes nothing
        weak = torch.ones(8, dtype=torch.bool)
        weak[strong] = False
        wide.head[4].weight[:, weak] = 0
    narrow = Student(StudentConfig(64, [24, 32, 64, 128], downsample="stride", hidden=3, out_dim=192)).eval()
    assert warm_start(narrow, wide) == []
    x = torch.rand(2, 3, 64, 64) * 255
    torch.testing.assert_close(narrow(x), wide(x), rtol=1e-5, atol=0)  # the same function, 5 units fewer
    torch.testing.assert_close(narrow.head[0].weight, wide.head[0].weight[strong])
    with pytest.raises(ValueError, match="hidden"):
        warm_start(wide, narrow)


def _trained_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BN layer non-trivial running statistics and affine parameters, as training would."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=gen) + 0.5
            m.bias.data = torch.randn(n, generator=gen) * 0.1
            m.running_mean = torch.randn(n, generator=gen) * 0.1
            m.running_var = torch.rand(n, generator=gen) + 0.5


@pytest.mark.parametrize("downsample", ["stride", "pool"])
def test_a_reparameterised_student_fuses_into_the_plain_net_it_equals(downsample: str) -> None:
    cfg = StudentConfig(
        64, [16, 24, 32, 48], downsample=downsample, blocks=[1, 1, 0], stem_blocks=1, tail_blocks=1, out_dim=40
    )
    rep = Student(dataclasses.replace(cfg, reparam=True))
    _trained_bn(rep)
    rep.eval()
    fused = rep.fused()
    assert not fused.cfg.reparam
    assert parameter_count(fused) == parameter_count(Student(cfg))  # served at exactly the plain net's size
    assert parameter_count(rep) > parameter_count(fused)  # the branches exist at training only
    x = torch.rand(4, 3, 64, 64) * 255
    with torch.no_grad():
        torch.testing.assert_close(fused(x), rep(x), rtol=1e-4, atol=1e-4)
    assert Student(cfg).fused() is not None and fused.fused() is fused  # a plain student is its own fusion


def test_the_identity_branch_exists_only_where_shapes_match() -> None:
    same, down = RepConv(8, 8), RepConv(8, 16, stride=2)
    assert same.bn0 is not None and down.bn0 is None
    _trained_bn(same)
    same.eval()
    kernel, bias = same.fold()
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(F.conv2d(x, kernel, bias, padding=1), same(x), rtol=1e-4, atol=1e-5)


def test_warm_start_refuses_a_reparameterised_student() -> None:
    cfg = StudentConfig(64, [16, 32, 64, 128], out_dim=192)
    with pytest.raises(ValueError, match="plain students only"):
        warm_start(Student(dataclasses.replace(cfg, reparam=True)), Student(cfg))


def test_a_reparameterised_student_trains_on_the_trainers_channels_last_crops() -> None:
    """The trainer's crops are NHWC uint8 permuted to NCHW (channels-last strides). torch 2.13's CPU backward of a
    strided 1x1 conv on such an input corrupts the heap (the process aborts), which RepConv works around."""
    torch.manual_seed(0)
    model = Student(StudentConfig(64, [8, 16, 16, 32], downsample="stride", blocks=[1, 0, 0], out_dim=8, reparam=True))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for batch in (64, 23):
        x = (torch.rand(batch, 64, 64, 3) * 255).permute(0, 3, 1, 2)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bottleneck_tail_blocks_cost_what_their_convs_hold_and_start_as_the_trunk_plus_a_residual() -> None:
    base = StudentConfig(64, [24, 32, 64, 128], downsample="stride", blocks=[3, 2, 0], stem_blocks=1, out_dim=192)
    tailed = dataclasses.replace(base, tail_blocks=2, tail_width=32)
    plain, deep = Student(base), Student(tailed)
    # per block: 1x1 128->32, 3x3 32->32, 1x1 32->128, and three BNs (scale and shift)
    per_block = 128 * 32 + 32 * 32 * 9 + 32 * 128 + 2 * (32 + 32 + 128)
    assert parameter_count(deep) - parameter_count(plain) == 2 * per_block
    assert set(plain.state_dict()) < set(deep.state_dict())  # a student without a tail keeps its checkpoint keys
    x = torch.rand(2, 3, 64, 64) * 255
    deep.eval()
    trunk = deep.features((x - deep.mean) * deep.scale)
    with torch.no_grad():
        torch.testing.assert_close(deep.tail[0](trunk), trunk + deep.tail[0].body(trunk))
    assert deep(x).shape == (2, 192)


def test_a_head_without_hidden_layer_maps_the_gdc_output_straight_to_the_outputs() -> None:
    base = StudentConfig(64, [24, 32, 64, 192], downsample="stride", blocks=[3, 2, 0], stem_blocks=1, out_dim=192)
    flat, hidden = Student(dataclasses.replace(base, hidden=0)), Student(base)
    assert [type(m) for m in flat.head] == [nn.Linear]
    # the hidden head: FC 192->256, its BN, FC 256->192; without it: FC 192->192
    assert parameter_count(hidden) - parameter_count(flat) == (192 * 256 + 256 + 2 * 256 + 256 * 192) - 192 * 192
    assert flat.eval()(torch.rand(2, 3, 64, 64) * 255).shape == (2, 192)
    with pytest.raises(ValueError, match="hidden"):
        warm_start(flat, hidden.eval())


def test_inverted_stages_build_the_last_stages_from_depthwise_blocks_at_their_parameter_cost() -> None:
    base = StudentConfig(64, [24, 32, 64, 192], downsample="stride", blocks=[3, 2, 2], stem_blocks=1, hidden=0)
    sep = Student(dataclasses.replace(base, inverted_stages=1, expansion=1, out_dim=192)).eval()
    blocks = [m for m in sep.features if isinstance(m, InvertedResidual)]
    assert [b.skip for b in blocks] == [False, True, True]  # the stride-2 transition, then two residual blocks
    # expansion 1: depthwise 3x3 and 1x1, each with a BN; no expanding conv
    transition = 64 * 9 + 2 * 64 + 64 * 192 + 2 * 192
    residual = 192 * 9 + 2 * 192 + 192 * 192 + 2 * 192
    assert sum(parameter_count(b) for b in blocks) == transition + 2 * residual
    assert [m.groups for b in blocks for m in b.modules() if isinstance(m, nn.Conv2d)] == [64, 1, 192, 1, 192, 1]
    x = torch.rand(2, 3, 64, 64) * 255
    assert sep(x).shape == (2, 192) and sep.gdc[0].kernel_size == (4, 4)
    assert 15.24e6 / parameter_count(sep) >= 51.6
    expanded = InvertedResidual(16, 16, 1, expansion=2).eval()
    assert [m.out_channels for m in expanded.modules() if isinstance(m, nn.Conv2d)] == [32, 32, 16]
    y = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(expanded(y), y + expanded.body(y))


@pytest.mark.parametrize(
    "kwargs",
    [{"inverted_stages": 4}, {"inverted_stages": 1, "expansion": 0}, {"inverted_stages": 1, "reparam": True}],
)
def test_bad_inverted_stages_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="student"):
        Student(StudentConfig(64, [16, 32, 64, 128], downsample="stride", **kwargs))


def test_warm_start_refuses_a_student_with_inverted_stages() -> None:
    cfg = StudentConfig(64, [16, 32, 64, 128], downsample="stride", out_dim=192)
    with pytest.raises(ValueError, match="plain students only"):
        warm_start(Student(dataclasses.replace(cfg, inverted_stages=1)), Student(cfg))
