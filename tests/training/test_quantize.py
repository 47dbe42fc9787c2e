"""int8 export: which nodes stay float when the tail is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from training.export import export_onnx
from training.quantize import float_tail, quantize_int8
from training.student import Student, StudentConfig


def test_the_float_tail_runs_from_the_last_full_conv_to_the_output(tmp_path: Path) -> None:
    model = Student(StudentConfig(32, [8, 16, 16, 32], downsample="stride", blocks=[1, 1, 0], hidden=16, out_dim=8))
    export_onnx(model.eval(), 32, tmp_path / "s.onnx")
    graph = onnx.load(str(tmp_path / "s.onnx")).graph
    tail = float_tail(graph)
    nodes = {n.name: n for n in graph.node}
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    first = nodes[tail[0]]
    assert first.op_type == "Conv" and all(a.i == 1 for a in first.attribute if a.name == "group")
    # The stage-3 stride conv (the last full conv) and the depthwise head conv after it; nothing earlier.
    assert [c for c in convs if c in tail] == convs[-2:]
    assert tail[-1] == graph.node[-1].name and nodes[tail[-1]].op_type == "Gemm"
    assert tail == [n.name for n in graph.node][-len(tail) :]  # one stretch, to the output


def test_percentile_calibration_quantizes_and_an_unknown_method_is_refused(tmp_path: Path) -> None:
    model = Student(StudentConfig(32, [8, 16, 16, 32], downsample="stride", blocks=[1, 0, 0], hidden=16, out_dim=8))
    export_onnx(model.eval(), 32, tmp_path / "s.onnx")
    crops = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    quantize_int8(tmp_path / "s.onnx", tmp_path / "p.onnx", crops, method="percentile")
    assert "DequantizeLinear" in {n.op_type for n in onnx.load(str(tmp_path / "p.onnx")).graph.node}
    with pytest.raises(ValueError, match="export.calibration"):
        quantize_int8(tmp_path / "s.onnx", tmp_path / "x.onnx", crops, method="entropy")


def test_with_inverted_stages_the_float_tail_starts_at_the_last_pointwise_conv(tmp_path: Path) -> None:
    cfg = StudentConfig(32, [8, 16, 16, 32], downsample="stride", blocks=[1, 0, 1], hidden=0, out_dim=8)
    cfg.inverted_stages, cfg.expansion = 1, 1
    model = Student(cfg)
    export_onnx(model.eval(), 32, tmp_path / "s.onnx")
    graph = onnx.load(str(tmp_path / "s.onnx")).graph
    tail = float_tail(graph)
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    # ... depthwise 3x3, then the tail: 1x1 (the last full conv), the residual Add, the GDC, the output layer
    assert tail[0] == convs[-2]
    assert [n.op_type for n in graph.node if n.name in tail] == ["Conv", "Add", "Conv", "Flatten", "Gemm"]
    crops = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    quantize_int8(tmp_path / "s.onnx", tmp_path / "q.onnx", crops, keep_tail=True)
