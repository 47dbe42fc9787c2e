"""int8 export: which nodes stay float when the tail is kept."""

from __future__ import annotations

from pathlib import Path

import onnx

from training.export import export_onnx
from training.quantize import float_tail
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
