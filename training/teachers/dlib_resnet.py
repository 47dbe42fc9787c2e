"""T2 teacher: dlib's face-recognition ResNet-29, read from its ``.dat`` file into PyTorch and exported to ONNX.

The ``.dat`` file (package ``face-recognition-models``, CC0) is dlib's own serialisation of the whole network
object, ``loss_metric<fc_no_bias<128, avg_pool_everything<...>>>`` from ``dnn_face_recognition_ex.cpp``. Read byte
by byte it is: the loss layer's fields; one version number per layer wrapper from the output inwards (2 =
``add_layer``, 1 = tag/skip layer, 3 = the ``add_layer`` on the input layer); the input layer; then every layer's
fields from the input outwards, each followed by three bool chars and three empty tensors (``x_grad``,
``cached_output``, ``params_grad``), the first one also by its sample expansion factor. Integers are dlib's
varints (a size byte, bit 7 = sign, then little-endian bytes), floats a (mantissa, exponent) pair of such
integers, tensors version 2, n, k, nr, nc then raw float32. The reader walks all of it and insists on ending
exactly at the last byte, so a misread cannot go unnoticed; the module then checks every layer kind, kernel,
stride and padding in the file against its own plan.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from service.manifest import PREPROCESSING_VERSION, Component, InputSpec, OutputSpec, sha256_of
from training.paths import TEACHER_DIR

log = logging.getLogger(__name__)

DLIB_FILE = "dlib_face_recognition_resnet_model_v1.dat"
ONNX_FILE = "dlib_resnet_v1.onnx"
CHIP_SIZE = 150

# Where YuNet's 5 landmarks (eye image-left, eye image-right, nose tip, mouth image-left, mouth image-right) land
# in dlib's chip, get_face_chip(img, shape5, size=150, padding=0.25), which is made from dlib's own landmarks (eye
# corners, nose base). Derived by ``python -m training.teachers.dlib_template``: on 290 training-pool faces (100
# drawn from each of CelebA-10k, CelebA-wild, UTKFace; no LFW) dlib's HOG detector + 5-point predictor gave the chip
# transform, YuNet's landmarks on the original photo were mapped through it, and averaged (per-point std 3-7 px: the
# two landmark sets disagree face by face, so no fixed template reproduces dlib's chip exactly). Validation on 206 other
# pool faces, dlib descriptors on our crops (service.alignment.align onto this template) vs on dlib's chips:
# Euclidean mean 0.184 (median 0.170, 95th pct 0.297; dlib's same-person threshold is 0.6), cosine mean 0.991
# (min 0.960). The ArcFace template scaled to 150 px gives 0.632 / 0.903 instead.
DLIB_150_TEMPLATE: tuple[tuple[float, float], ...] = (
    (47.57, 45.32),
    (102.28, 45.96),
    (73.98, 77.33),
    (51.42, 101.89),
    (98.06, 102.52),
)


class DlibFormatError(ValueError):
    """The ``.dat`` file is not the network this module reproduces, or is not a dlib serialisation at all."""


def dlib_model_path(name: str = DLIB_FILE) -> Path:
    """Path of a model file inside the installed ``face_recognition_models`` package.

    Found via the import system, not ``face_recognition_models.*_location()``: those import ``pkg_resources``,
    which recent setuptools no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package face-recognition-models is not installed (pip install '.[training]')")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / name


# ---------------------------------------------------------------------------------------------- reader


@dataclass(frozen=True)
class DlibLayer:
    """One computational layer from the file. ``config``: con (filters, nr, nc, stride_y, stride_x, pad_y, pad_x);
    max_pool/avg_pool (nr, nc, stride_y, stride_x, pad_y, pad_x); fc (outputs, inputs); others ()."""

    kind: str
    config: tuple[int, ...] = ()
    params: NDArray[np.float32] | None = None


@dataclass(frozen=True)
class DlibNet:
    mean_rgb: tuple[float, float, float]
    size: tuple[int, int]
    layers: list[DlibLayer]


class _Stream:
    """dlib's serialisation primitives over the file's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise DlibFormatError(f"file ends inside a {size}-byte field at offset {self.pos}")
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def int_(self) -> int:
        head = self.take(1)[0]  # low bits: byte count; bit 7: sign
        if head & 0x7F > 8:
            raise DlibFormatError(f"bad integer size byte {head:#x} at offset {self.pos - 1}")
        value = int.from_bytes(self.take(head & 0x7F), "little")
        return -value if head & 0x80 else value

    def float_(self) -> float:
        mantissa = self.int_()
        return math.ldexp(mantissa, self.int_())

    def str_(self) -> str:
        return self.take(self.int_()).decode("latin-1")

    def bool_(self) -> bool:
        return self.take(1) == b"1"

    def shape(self, version: int) -> tuple[int, ...]:
        if (found := self.int_()) != version:
            raise DlibFormatError(f"tensor version {found} at offset {self.pos}, expected {version}")
        return tuple(self.int_() for _ in range(4))

    def tensor(self) -> NDArray[np.float32]:
        count = math.prod(self.shape(2))
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)


def _read_con(s: _Stream) -> DlibLayer:
    params = s.tensor()
    config = tuple(s.int_() for _ in range(7))
    s.shape(1), s.shape(1)  # alias tensors: filters, biases
    [s.float_() for _ in range(4)]  # learning-rate and weight-decay multipliers
    return DlibLayer("con", config, params)


def _read_affine(s: _Stream) -> DlibLayer:
    params = s.tensor()  # gamma || beta
    s.shape(1), s.shape(1), s.int_()  # gamma, beta aliases; mode
    return DlibLayer("affine", (), params)


def _read_pool(kind: str) -> Callable[[_Stream], DlibLayer]:
    return lambda s: DlibLayer(kind, tuple(s.int_() for _ in range(6)))


def _read_fc(s: _Stream) -> DlibLayer:
    config = (s.int_(), s.int_())
    params = s.tensor()  # (inputs, outputs) row-major: y = x @ W
    s.shape(1), s.shape(1), s.int_()  # weights, biases aliases; bias mode
    [s.float_() for _ in range(4)]
    return DlibLayer("fc", config, params)


_READERS: dict[str, Callable[[_Stream], DlibLayer]] = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": lambda s: DlibLayer("relu"),
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "add_prev_": lambda s: DlibLayer("add_prev"),
    "fc_2": _read_fc,
}


def _read_layer(s: _Stream) -> DlibLayer:
    name = s.str_()
    if name not in _READERS:
        raise DlibFormatError(f"unsupported dlib layer {name!r} before offset {s.pos}")
    layer = _READERS[name](s)
    [s.bool_() for _ in range(3)]  # this_layer_setup_called, gradient_input_is_stale, output disabled
    if any(math.prod(s.shape(2)) for _ in range(3)):
        raise DlibFormatError(f"non-empty gradient/output tensor after {name!r} (offset {s.pos})")
    return layer


def read_dlib_dat(path: Path | None = None) -> DlibNet:
    """Parse dlib's serialised metric-learning network into its layers, input-to-output order."""
    s = _Stream(Path(path or dlib_model_path()).read_bytes())
    if s.int_() != 1 or s.str_() != "loss_metric_2":
        raise DlibFormatError("not a dlib loss_metric network")
    s.float_(), s.float_()  # margin, distance threshold
    wrappers: list[int] = []
    while (version := s.int_()) != 3:
        if version not in (1, 2) or len(wrappers) > 10_000:
            raise DlibFormatError(f"unexpected layer wrapper version {version} at offset {s.pos}")
        wrappers.append(version)
    if s.str_() != "input_rgb_image_sized":
        raise DlibFormatError("expected an input_rgb_image_sized input layer")
    mean = (s.float_(), s.float_(), s.float_())
    size = (s.int_(), s.int_())
    layers = [_read_layer(s)]
    if s.int_() != 1:  # the input-side add_layer also stores its sample expansion factor
        raise DlibFormatError("expected a sample expansion factor of 1")
    layers += [_read_layer(s) for version in reversed(wrappers) if version == 2]
    if s.pos != len(s.data):
        raise DlibFormatError(f"{len(s.data) - s.pos} unread bytes at the end of the file")
    return DlibNet(mean, size, layers)


# ---------------------------------------------------------------------------------------------- network

# (channels, down) per residual block, input to output: dnn_face_recognition_ex.cpp's alevel4 ... alevel0.
RESIDUALS: tuple[tuple[int, bool], ...] = (
    ((32, False),) * 3
    + ((64, True),)
    + ((64, False),) * 3
    + ((128, True),)
    + ((128, False),) * 2
    + ((256, True),)
    + ((256, False),) * 2
    + ((256, True),)
)


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - kernel) // stride  # dlib's (and PyTorch's) conv/pool output size


class _Affine(nn.Module):
    """dlib's affine layer: batch norm folded into a per-channel ``gamma * x + beta``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[:, None, None] + self.beta[:, None, None]


class _Residual(nn.Module):
    """dlib's ``ares`` / ``ares_down``: relu(block(x) + shortcut(x)), block = con, affine, relu, con, affine.

    A down block's first conv has stride 2 and (dlib's default for stride != 1) no padding; its shortcut is
    avg_pool 2x2/2. The two branches can then differ in size (3x3 vs 4x4 on the 8x8 map): dlib's add_prev
    sums them into the larger shape, zero-padding the smaller one at the bottom/right and in extra channels.
    """

    def __init__(self, cin: int, cout: int, down: bool, size: int) -> None:
        super().__init__()
        stride, pad = (2, 0) if down else (1, 1)
        self.conv1, self.aff1 = nn.Conv2d(cin, cout, 3, stride, pad), _Affine(cout)
        self.conv2, self.aff2 = nn.Conv2d(cout, cout, 3, 1, 1), _Affine(cout)
        self.down = down
        main = _out_size(size, 3, stride, pad)
        short = _out_size(size, 2, 2, 0) if down else size
        self.out_size = max(main, short)
        self.pad_main = (0, self.out_size - main, 0, self.out_size - main)
        self.pad_short = (0, self.out_size - short, 0, self.out_size - short, 0, cout - cin)

    def plan(self) -> list[tuple[str, tuple[int, ...]]]:
        c1, c2 = self.conv1, self.conv2
        steps = [("con", _con_config(c1)), ("affine", ()), ("relu", ()), ("con", _con_config(c2)), ("affine", ())]
        return steps + [("avg_pool", (2, 2, 2, 2, 0, 0))] * self.down + [("add_prev", ()), ("relu", ())]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        short = F.avg_pool2d(x, 2, 2) if self.down else x
        if any(self.pad_main):
            main = F.pad(main, self.pad_main)
        if any(self.pad_short):
            short = F.pad(short, self.pad_short)
        return F.relu(main + short)


def _con_config(conv: nn.Conv2d) -> tuple[int, ...]:
    assert not isinstance(conv.padding, str)
    return (conv.out_channels, *conv.kernel_size, *conv.stride, *conv.padding)


class DlibResNet(nn.Module):
    """dlib_face_recognition_resnet_model_v1: ``(N, 3, 150, 150)`` RGB 0-255 float -> ``(N, 128)`` descriptors.

    The descriptors are dlib's own (not L2-normalised; norm close to 1; same person below Euclidean 0.6).
    """

    mean: torch.Tensor

    def __init__(self, mean_rgb: tuple[float, float, float] = (122.782, 117.001, 104.298)) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))
        self.conv, self.aff = nn.Conv2d(3, 32, 7, 2, 0), _Affine(32)
        size = _out_size(_out_size(CHIP_SIZE, 7, 2, 0), 3, 2, 0)
        blocks, cin = [], 32
        for cout, down in RESIDUALS:
            blocks.append(_Residual(cin, cout, down, size))
            cin, size = cout, blocks[-1].out_size
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, 128, bias=False)

    def plan(self) -> list[tuple[str, tuple[int, ...]]]:
        """The layers dlib's file must hold, input to output: (kind, config) as in :class:`DlibLayer`."""
        steps = [("con", _con_config(self.conv)), ("affine", ()), ("relu", ()), ("max_pool", (3, 3, 2, 2, 0, 0))]
        for block in self.blocks:
            steps += block.plan()  # type: ignore[operator]
        return steps + [("avg_pool", (0, 0, 1, 1, 0, 0)), ("fc", (128, self.fc.in_features))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.aff(self.conv(x))), 3, 2)
        x = self.blocks(x).mean(dim=(2, 3))
        embedding: torch.Tensor = self.fc(x)
        return embedding


def _assign(module: nn.Module, layer: DlibLayer) -> None:
    expected = sum(p.numel() for p in module.parameters())
    if layer.params is None or layer.params.size != expected:
        raise DlibFormatError(f"dlib {layer.kind} layer does not fit {module} ({expected} values expected)")
    params = torch.from_numpy(layer.params.copy())
    if isinstance(module, nn.Conv2d):
        n = module.weight.numel()
        module.weight.data.copy_(params[:n].view_as(module.weight))  # dlib filters are OIHW, row-major
        module.bias.data.copy_(params[n:])  # type: ignore[union-attr]
    elif isinstance(module, _Affine):
        module.gamma.data.copy_(params[: module.gamma.numel()])
        module.beta.data.copy_(params[module.gamma.numel() :])
    elif isinstance(module, nn.Linear):  # dlib stores W as (inputs, outputs) for y = x @ W
        module.weight.data.copy_(params.view(module.in_features, module.out_features).T)


def load_dlib_resnet(path: Path | None = None) -> DlibResNet:
    """Build :class:`DlibResNet` from dlib's ``.dat`` file (default: the installed package's), frozen, in eval mode."""
    net = read_dlib_dat(path)
    model = DlibResNet(net.mean_rgb)
    found = [(layer.kind, layer.config) for layer in net.layers]
    differ = [i for i, (a, b) in enumerate(zip_longest(found, model.plan())) if a != b]
    if net.size != (CHIP_SIZE, CHIP_SIZE) or differ:
        raise DlibFormatError(f"not dlib ResNet-29: input {net.size}, layers differ from index {differ[:1]}")
    weighted = [m for m in model.modules() if isinstance(m, nn.Conv2d | _Affine | nn.Linear)]  # forward order
    for module, layer in zip(weighted, [x for x in net.layers if x.params is not None], strict=True):
        _assign(module, layer)
    return model.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------- ONNX


def export_dlib_onnx(dst: Path = TEACHER_DIR / ONNX_FILE, src: Path | None = None) -> Path:
    """Export dlib ResNet-29 to ONNX (input "input" (N, 3, 150, 150) RGB 0-255, output "embedding" (N, 128)).

    Verified after writing: onnx.checker plus ORT-vs-PyTorch parity; the file is only moved into place then.
    """
    from training.export import export_onnx

    model = load_dlib_resnet(src)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        # The TorchScript exporter (the dynamo one needs onnxscript, not installed) warns that it is legacy and that
        # it cannot fold the reversed-pads Slice of each of the 5 Pad nodes; ORT folds those at session start.
        quiet = "legacy TorchScript|Only steps=1 can be constant folded|feature will be removed"
        warnings.filterwarnings("ignore", message=f".*({quiet}).*")
        diff = export_onnx(model, CHIP_SIZE, tmp)
    tmp.replace(dst)
    log.info("exported %s (ORT vs PyTorch max abs diff %.1e)", dst, diff)
    return dst


def dlib_component(path: Path, relative_to: Path = TEACHER_DIR) -> Component:
    """Manifest component for the exported dlib ResNet (raw 0-255 RGB: the graph normalises itself); ``path``
    must lie in ``relative_to``, the manifest's folder."""
    path, base = Path(path).resolve(), Path(relative_to).resolve()
    return Component(
        file=str(path.relative_to(base)),
        sha256=sha256_of(path),
        input=InputSpec(
            name="input",
            width=CHIP_SIZE,
            height=CHIP_SIZE,
            template=[(float(x), float(y)) for x, y in DLIB_150_TEMPLATE],
            preprocessing=PREPROCESSING_VERSION,
        ),
        output=OutputSpec(name="embedding", dim=128),
    )
