"""The student: a small plain CNN in the spirit of the released MobileID student.

MobileID's student is 3 x [conv 64, ReLU, max-pool] + FC 500 + FC 500 + FC (selected neurons). Plain 3x3
convolutions with ReLU are what a CPU runs fastest at batch 1 (depthwise blocks were slower per FLOP here),
so we keep that shape and tune widths, depth, input size and the head:

* ``downsample="pool"`` is the MobileID layout: conv then 2x2 max-pool at every stage.
* ``downsample="stride"`` moves each stage's transition conv to stride 2 (a quarter of its cost) and spends
  the saved multiply-adds on ``blocks[i]`` residual 3x3 convs at the stage's resolution: a deeper network
  for the same time per face. ``stem_blocks`` adds residual convs right after the stem, at the highest
  resolution: each costs few parameters (the stem is the narrowest layer) but many multiply-adds.

``tail_blocks`` adds bottleneck residual blocks (:class:`Bottleneck`: 1x1 down to ``tail_width`` channels, 3x3,
1x1 back up) after the last stage, at its resolution: the last stage is the widest, where a full 3x3 residual
conv would cost more parameters than the compression budget has left (147 k at 128 channels); a bottleneck of
width 32 costs 17 k.

The head replaces the big flattened FC by a global depthwise conv (GDC, as in MobileFaceNet) so that
parameters stay under the compression budget while keeping spatial weighting.

``inverted_stages`` builds the last stages (each one's transition and residual blocks) from MobileNetV2's
inverted residual blocks (:class:`InvertedResidual`: 1x1 expand, depthwise 3x3, linear 1x1 project), as
MobileFaceNet does. A full 3x3 conv costs 9 x channels parameters per output channel, a depthwise one 9: at the
narrow 8x8 and 4x4 stages, where a full conv's parameters are dearest (147 k for one at 128 channels), the same
budget buys far more width. Each inverted block is two or three graph nodes, and at these sizes a node's fixed
cost rivals its arithmetic, so the early, cheap stages keep full convs. Plain students only (no ``reparam``).

``reparam`` trains every 3x3 conv as a structural re-parameterisation (RepVGG, Ding et al. 2021): a 3x3 conv,
a 1x1 conv and, where shapes allow, an identity, each with its own BN, summed (:class:`RepConv`). All three are
linear until the ReLU, so :meth:`Student.fused` folds them into the single 3x3 conv of the plain net: what is
exported and served is the plain net, at the plain net's cost; only training sees the extra branches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class StudentConfig:
    """Architecture of a student. ``out_dim`` = number of selected teacher neurons it regresses."""

    input_size: int = 64
    channels: list[int] = field(default_factory=lambda: [32, 64, 96, 128])
    stem_stride: int = 2  # the first conv downsamples: most of the cost sits at full resolution
    downsample: str = "pool"  # "pool" (conv + max-pool) or "stride" (stride-2 conv)
    blocks: list[int] = field(default_factory=list)  # residual 3x3 convs after each stage's downsampling
    stem_blocks: int = 0  # residual 3x3 convs at the stem's resolution: few parameters, many multiply-adds
    hidden: int = 256  # the head's hidden layer; 0: the GDC's output goes straight to the output layer
    out_dim: int = 256
    dropout: float = 0.0
    reparam: bool = False  # train multi-branch convs (RepConv), served fused as the plain net (Student.fused)
    tail_blocks: int = 0  # bottleneck residual blocks after the last stage (Bottleneck), never re-parameterised
    tail_width: int = 32  # their inner width
    inverted_stages: int = 0  # the last stages built from InvertedResidual blocks instead of full 3x3 convs
    expansion: int = 2  # an inverted block's inner width, as a multiple of its input's (1: no expanding conv)


def _conv(cin: int, cout: int, stride: int = 1, reparam: bool = False) -> list[nn.Module]:
    if reparam:
        return [RepConv(cin, cout, stride), nn.ReLU(inplace=True)]
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _fold(conv: nn.Conv2d | None, bn: nn.BatchNorm2d, cin: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv (``None``: the identity) followed by an eval-mode BN, as one 3x3 kernel and a bias."""
    if conv is None:
        kernel = torch.zeros(bn.num_features, cin, 3, 3)
        kernel[torch.arange(cin), torch.arange(cin), 1, 1] = 1.0
    else:
        kernel = conv.weight.detach()
        if kernel.shape[-1] == 1:
            kernel = F.pad(kernel, [1, 1, 1, 1])
    assert bn.running_var is not None and bn.running_mean is not None  # BN layers here always track stats
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return kernel * scale.view(-1, 1, 1, 1), bn.bias.detach() - bn.running_mean * scale


class RepConv(nn.Module):
    """``bn(conv3x3(x)) + bn(conv1x1(x)) [+ bn(x)]`` at training; :meth:`fold` gives the one 3x3 conv (kernel
    and bias) it equals in eval mode. The identity branch exists when input and output shapes match."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.cin = cin
        self.conv3 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn0 = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch 2.13 CPU corrupts the heap in the backward pass of a strided 1x1 conv on a channels-last input
        # (the trainer's crops arrive as permuted NHWC): give that branch a contiguous NCHW copy.
        x1 = x.contiguous() if self.conv1.stride != (1, 1) else x
        out: torch.Tensor = self.bn3(self.conv3(x)) + self.bn1(self.conv1(x1))
        return out + self.bn0(x) if self.bn0 is not None else out

    def fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        branches: list[tuple[nn.Conv2d | None, nn.BatchNorm2d]] = [(self.conv3, self.bn3), (self.conv1, self.bn1)]
        if self.bn0 is not None:
            branches.append((None, self.bn0))
        kernels, biases = zip(*(_fold(conv, bn, self.cin) for conv, bn in branches), strict=True)
        return torch.stack(kernels).sum(0), torch.stack(biases).sum(0)


class Residual(nn.Module):
    """``x + relu(bn(conv3x3(x)))``: an extra layer that starts close to the identity."""

    def __init__(self, channels: int, reparam: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv(channels, channels, reparam=reparam))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual: torch.Tensor = self.body(x)
        return x + residual


class Bottleneck(nn.Module):
    """``x + bn(conv1x1(relu(bn(conv3x3(relu(bn(conv1x1(x))))))))``: a residual block whose 3x3 conv runs at
    ``width`` channels. The sum is linear (no ReLU after the last BN), as in ResNet's and MobileNetV2's blocks."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual: torch.Tensor = self.body(x)
        return x + residual


class InvertedResidual(nn.Module):
    """MobileNetV2's block: ``relu(bn(conv1x1))`` to ``cin * expansion`` channels, ``relu(bn(depthwise 3x3))``
    (stride 1 or 2), ``bn(conv1x1)`` to ``cout``, no ReLU after it; plus ``x`` where shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expansion: int = 2) -> None:
        super().__init__()
        width = cin * expansion
        self.skip = stride == 1 and cin == cout
        expand: list[nn.Module] = []
        if expansion > 1:
            expand = [nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(
            *expand,
            nn.Conv2d(width, width, 3, stride, 1, groups=width, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return x + out if self.skip else out


class Student(nn.Module):
    """``(N, 3, S, S)`` RGB 0-255 -> ``(N, out_dim)`` regressed teacher neurons (normalisation is in the graph)."""

    mean: torch.Tensor  # buffers registered in __init__, declared for the type checker
    scale: torch.Tensor

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        stages = len(cfg.channels) - 1
        blocks = cfg.blocks or [0] * stages
        if len(blocks) != stages:
            raise ValueError(f"student.blocks needs one count per stage ({stages}), got {blocks}")
        if not 0 <= cfg.inverted_stages <= stages or cfg.expansion < 1:
            raise ValueError(f"student.inverted_stages must be 0-{stages} and expansion >= 1: {cfg}")
        if cfg.inverted_stages and (cfg.reparam or cfg.downsample != "stride"):
            raise ValueError("student.inverted_stages needs downsample 'stride' and no reparam")
        size = cfg.input_size // cfg.stem_stride // 2**stages
        self.features = nn.Sequential(*self._trunk(cfg, blocks))
        last = cfg.channels[-1]
        # Outside ``features``: Student.fused and warm_start walk the re-parameterisable trunk only.
        self.tail = nn.Sequential(*(Bottleneck(last, cfg.tail_width) for _ in range(cfg.tail_blocks)))
        self.gdc = nn.Sequential(
            nn.Conv2d(last, last, size, groups=last, bias=False), nn.BatchNorm2d(last), nn.Flatten()
        )
        if cfg.hidden < 0:
            raise ValueError(f"student.hidden must be >= 0 (0: no hidden layer), not {cfg.hidden}")
        hidden: list[nn.Module] = []
        if cfg.hidden:
            hidden = [
                nn.Linear(last, cfg.hidden),
                nn.BatchNorm1d(cfg.hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(cfg.dropout),
            ]
        self.head = nn.Sequential(*hidden, nn.Linear(cfg.hidden or last, cfg.out_dim))
        self.register_buffer("mean", torch.tensor([127.5, 127.5, 127.5]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(1 / 128.0))

    @staticmethod
    def _trunk(cfg: StudentConfig, blocks: list[int]) -> list[nn.Module]:
        rep = cfg.reparam
        if cfg.downsample not in ("pool", "stride"):
            raise ValueError(f"student.downsample must be 'pool' or 'stride', not {cfg.downsample!r}")
        layers: list[nn.Module] = _conv(3, cfg.channels[0], cfg.stem_stride, rep)
        layers += [Residual(cfg.channels[0], rep) for _ in range(cfg.stem_blocks)]
        first_inverted = len(blocks) - cfg.inverted_stages
        for stage, (cin, cout, extra) in enumerate(zip(cfg.channels[:-1], cfg.channels[1:], blocks, strict=True)):
            if stage >= first_inverted:
                layers.append(InvertedResidual(cin, cout, 2, cfg.expansion))
                layers += [InvertedResidual(cout, cout, 1, cfg.expansion) for _ in range(extra)]
                continue
            if cfg.downsample == "stride":
                layers += _conv(cin, cout, 2, rep)
            else:
                layers += [*_conv(cin, cout, reparam=rep), nn.MaxPool2d(2)]
            layers += [Residual(cout, rep) for _ in range(extra)]
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.scale
        out: torch.Tensor = self.head(self.gdc(self.tail(self.features(x))))
        return out

    @torch.no_grad()
    def fused(self) -> Student:
        """The plain student (``reparam`` off) that computes what this one computes in eval mode: each
        :class:`RepConv` folded into its 3x3 conv, whose BN then only adds the folded bias. A plain student is
        returned as it is."""
        if not self.cfg.reparam:
            return self
        plain = Student(dataclasses.replace(self.cfg, reparam=False))
        plain.load_state_dict(self.state_dict(), strict=False)  # tail, GDC, head and buffers: same names
        reps = [m for m in self.features.modules() if isinstance(m, RepConv)]
        convs = [m for m in plain.features.modules() if isinstance(m, nn.Conv2d)]
        bns = [m for m in plain.features.modules() if isinstance(m, nn.BatchNorm2d)]
        for rep, conv, bn in zip(reps, convs, bns, strict=True):
            kernel, bias = rep.fold()
            conv.weight.copy_(kernel)
            bn.weight.fill_(1.0)
            bn.bias.copy_(bias)
            bn.running_mean.zero_()  # type: ignore[union-attr]  # tracked stats: never None here
            bn.running_var.fill_(1.0 - bn.eps)  # type: ignore[union-attr]  # (x - 0) / sqrt(1 - eps + eps) = x
        return plain.eval()


def _stage_units(model: Student) -> list[list[tuple[str, ...]]]:
    """``features`` state-dict prefixes per stage (stem first): the stage's conv + BN, then each residual block."""
    stages: list[list[tuple[str, ...]]] = []
    for i, layer in enumerate(model.features):
        if isinstance(layer, nn.Conv2d):
            stages.append([(f"features.{i}.", f"features.{i + 1}.")])
        elif isinstance(layer, Residual):
            stages[-1].append((f"features.{i}.",))
    return stages


NEW_BLOCK_SCALE = 0.1  # BN scale of a residual block that warm start adds: small, but not zero (see warm_start)


def warm_start(model: Student, source: Student) -> list[str]:
    """Initialise ``model`` from a trained ``source`` student, stage by stage, and return what kept its init.

    Both must have the same input size and outputs, and ``model`` as many stages, each at least as wide as the
    source's (a wider student starts from a narrower one: :func:`_widened`). Each stage's conv and its first
    residual blocks are copied; source blocks beyond ``model``'s are dropped (a shallower student starts from a
    deeper one's trained layers). Residual blocks beyond the source's start close to the identity (BN scale
    ``NEW_BLOCK_SCALE``): a deeper student starts out computing nearly what the source computes. Not exactly: with a
    zero scale the block's ReLU sees only zeros, passes no gradient, and the block never trains. A narrower head
    (``hidden``) keeps the source's strongest hidden units (:func:`prune_head`): the parameters it frees can pay for
    more convolutions."""
    if model.cfg.reparam or source.cfg.reparam or model.cfg.inverted_stages or source.cfg.inverted_stages:
        raise ValueError("student warm start works on plain students only (no reparam, no inverted_stages)")
    shared = ("input_size", "stem_stride", "downsample", "out_dim")
    differ = [name for name in shared if getattr(source.cfg, name) != getattr(model.cfg, name)]
    wide, narrow = model.cfg.channels, source.cfg.channels
    if len(wide) != len(narrow) or any(w < n for w, n in zip(wide, narrow, strict=True)):
        differ.append("number of stages, each at least as wide")
    if model.cfg.hidden > source.cfg.hidden or not model.cfg.hidden or not source.cfg.hidden:
        differ.append("hidden (or a narrower one; both with a hidden layer)")
    if differ:
        raise ValueError(
            f"student warm start needs the same {', '.join(differ)}: source {source.cfg}, target {model.cfg}"
        )
    rename: dict[str, str] = {}
    for src_stage, dst_stage in zip(_stage_units(source), _stage_units(model), strict=True):
        for src_unit, dst_unit in zip(src_stage, dst_stage, strict=False):
            rename.update(zip(src_unit, dst_unit, strict=True))
    trained = source.state_dict()
    state = prune_head(trained, model.cfg.hidden)
    for key, value in trained.items():
        if key.startswith("head."):
            continue
        if not key.startswith("features."):
            state[key] = value
            continue
        prefix = next((p for p in rename if key.startswith(p)), None)
        if prefix is not None:
            state[rename[prefix] + key[len(prefix) :]] = value
    fresh = model.state_dict()
    state = {key: _widened(fresh[key], value) if key in fresh else value for key, value in state.items()}
    missing: list[str] = model.load_state_dict(state, strict=False).missing_keys
    for i, layer in enumerate(model.features):
        if isinstance(layer, Residual) and f"features.{i}.body.1.weight" in missing:
            bn = layer.body[1]
            assert isinstance(bn, nn.BatchNorm2d)  # body = conv, BN, ReLU (_conv)
            nn.init.constant_(bn.weight, NEW_BLOCK_SCALE)
    return missing


def _widened(fresh: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
    """``trained`` in the leading slice of a wider layer's ``fresh`` tensor, so that the wider student computes what
    the trained one does on its first channels: the new channels keep their fresh init (weights and BN), and the
    weights from new input channels to trained output channels are zero. New channels reach the output only
    through weights that start at zero, and learn from the first step (their outgoing weights get gradient)."""
    if fresh.shape == trained.shape:
        return trained
    out = fresh.clone()
    out[tuple(slice(0, n) for n in trained.shape)] = trained
    if out.ndim >= 2:  # conv and linear weights: (out, in, ...)
        out[: trained.shape[0], trained.shape[1] :] = 0
    return out


def prune_head(state: dict[str, torch.Tensor], hidden: int) -> dict[str, torch.Tensor]:
    """The head's weights (``head.*`` of a student's state dict) cut down to its ``hidden`` units that weigh
    most in the output: largest ``|BN scale| x ||outgoing weights||``, the spread of the unit's normalised
    activation times how strongly it reaches the outputs. A proxy: the BN shift and the ReLU are left out."""
    head = {key: value for key, value in state.items() if key.startswith("head.")}
    importance = head["head.1.weight"].abs() * head["head.4.weight"].norm(dim=0)
    keep = importance.argsort(descending=True)[:hidden].sort().values
    for key in head:
        if key.startswith(("head.0.", "head.1.")) and head[key].ndim:  # the hidden FC and its BN, per unit
            head[key] = head[key][keep]
    head["head.4.weight"] = head["head.4.weight"][:, keep]
    return head


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
