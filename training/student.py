"""The student: a small plain CNN in the spirit of the released MobileID student.

MobileID's student is 3 x [conv 64, ReLU, max-pool] + FC 500 + FC 500 + FC (selected neurons). Plain 3x3
convolutions with ReLU and max-pooling are what a CPU runs fastest at batch 1 (depthwise blocks were slower
per FLOP here), so we keep that shape and tune widths, input size and the head. The head replaces the big
flattened FC by a global depthwise conv (GDC, as in MobileFaceNet) so that parameters stay under the
compression budget while keeping spatial weighting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class StudentConfig:
    """Architecture of a student. ``out_dim`` = number of selected teacher neurons it regresses."""

    input_size: int = 64
    channels: list[int] = field(default_factory=lambda: [32, 64, 96, 128])
    stem_stride: int = 2  # the first conv downsamples: most of the cost sits at full resolution
    hidden: int = 256
    out_dim: int = 256
    dropout: float = 0.0


def _conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Student(nn.Module):
    """``(N, 3, S, S)`` RGB 0-255 -> ``(N, out_dim)`` regressed teacher neurons (normalisation is in the graph)."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = _conv(3, cfg.channels[0], cfg.stem_stride)
        size = cfg.input_size // cfg.stem_stride
        for cin, cout in zip(cfg.channels[:-1], cfg.channels[1:], strict=True):
            layers += _conv(cin, cout)
            layers.append(nn.MaxPool2d(2))
            size //= 2
        self.features = nn.Sequential(*layers)
        last = cfg.channels[-1]
        self.gdc = nn.Sequential(
            nn.Conv2d(last, last, size, groups=last, bias=False), nn.BatchNorm2d(last), nn.Flatten()
        )
        self.head = nn.Sequential(
            nn.Linear(last, cfg.hidden),
            nn.BatchNorm1d(cfg.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.out_dim),
        )
        self.register_buffer("mean", torch.tensor([127.5, 127.5, 127.5]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(1 / 128.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.scale
        return self.head(self.gdc(self.features(x)))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
