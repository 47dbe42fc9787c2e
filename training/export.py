"""Export a student or a teacher to ONNX (dynamic batch axis), check it, and verify ORT-vs-PyTorch parity."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import torch

from training.data.feature_cache import onnx_runner
from training.student import Student

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4


def export_onnx(model: torch.nn.Module, size: int, dst: Path) -> float:
    """Write ``model`` to ``dst`` (input ``input`` (N, 3, size, size) RGB 0-255, output ``embedding``, dynamic
    batch), run the ONNX checker and ORT-vs-PyTorch parity; returns the parity, raises if it is >= the tolerance."""
    model = model.eval()
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, size, size),),
        str(dst),
        input_names=["input"],
        output_names=["embedding"],
        dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(dst)))
    diff = parity(model, dst, size)
    if diff >= PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX export of {dst} differs from PyTorch by {diff:.2e} (>= {PARITY_TOLERANCE})")
    return diff


def export_student(model: Student, dst: Path) -> Path:
    """Write the student to ``dst`` and check it (see :func:`export_onnx`)."""
    diff = export_onnx(model, model.cfg.input_size, dst)
    log.info("exported %s (parity max |diff| %.2e)", dst, diff)
    return dst


def parity(model: torch.nn.Module, path: Path, size: int, batch: int = 8, seed: int = 0) -> float:
    """Max absolute difference between PyTorch and ONNX Runtime on random 0-255 crops of ``size`` pixels."""
    crops = np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = model(torch.from_numpy(crops).permute(0, 3, 1, 2).float()).numpy()
    return float(np.abs(onnx_runner(path)(crops) - ref).max())
