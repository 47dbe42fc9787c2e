"""Multiply-accumulates of an ONNX graph, counted from its Conv, Gemm and MatMul nodes.

Shapes come from ``onnx`` shape inference after the dynamic input dimensions are pinned (batch 1, the
detector's height and width); where inference gives up (dlib's zero-padded shortcut sums compute their pad
widths at run time), one ONNX Runtime pass on a zero input with those values exposed as outputs reads them.
Only these three op types are counted: they hold the weights and nearly all the multiplies; element-wise
ops, pooling and normalisation are left out. FLOPs are reported as ``2 * MACs`` (a multiply and an add).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference

COUNTED_OPS = ("Conv", "Gemm", "MatMul")


class FlopsError(RuntimeError):
    """A counted node's input or output shape could not be inferred."""


def count_macs(path: Path, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass of the ONNX file at ``path`` on an input of ``input_shape`` (e.g. (1, 3, 64, 64)).

    Raises:
        FlopsError: shape inference left a Conv/Gemm/MatMul shape unknown.
    """
    model = onnx.load(str(path))
    _pin_input(model, input_shape)
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes = _known_shapes(inferred)
    weights = {init.name: tuple(init.dims) for init in inferred.graph.initializer}
    shapes.update(weights)
    missing = [
        name
        for node in inferred.graph.node
        if node.op_type in COUNTED_OPS
        for name in (*node.input[:2], node.output[0])
        if name not in shapes
    ]
    if missing:
        shapes.update(_runtime_shapes(inferred, input_shape, missing))
    total = 0
    for node in inferred.graph.node:
        if node.op_type in COUNTED_OPS:
            total += _node_macs(node, shapes)
    return total


def _pin_input(model: onnx.ModelProto, input_shape: tuple[int, ...]) -> None:
    """Replace the first graph input's dimensions by concrete values (symbolic batch, height, width)."""
    initializers = {init.name for init in model.graph.initializer}
    graph_input = next(i for i in model.graph.input if i.name not in initializers)
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise FlopsError(f"{graph_input.name} has rank {len(dims)}, not {len(input_shape)}")
    for dim, value in zip(dims, input_shape, strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = value
    # Inferred shapes of intermediate values left in the file would keep the symbolic batch: drop them.
    del model.graph.value_info[:]


def _known_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    return shapes


def _runtime_shapes(
    model: onnx.ModelProto, input_shape: tuple[int, ...], names: list[str]
) -> dict[str, tuple[int, ...]]:
    """Shapes of the intermediate values ``names``, from one ONNX Runtime pass on a zero input."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for name in dict.fromkeys(names):
        if name not in existing:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every value
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.zeros(input_shape, dtype=np.float32)}
    wanted = list(dict.fromkeys(names))
    return {name: tuple(value.shape) for name, value in zip(wanted, session.run(wanted, feed), strict=True)}


def _shape(shapes: dict[str, tuple[int, ...]], name: str, node: onnx.NodeProto) -> tuple[int, ...]:
    if name not in shapes:
        raise FlopsError(f"shape of {name!r} ({node.op_type} node {node.name!r}) is unknown after shape inference")
    return shapes[name]


def _node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    if node.op_type == "Conv":
        # Each output element reads (C_in / group) * kernel elements of the input: weight is (C_out, C_in/g, *k).
        weight = _shape(shapes, node.input[1], node)
        output = _shape(shapes, node.output[0], node)
        return math.prod(output) * math.prod(weight[1:])
    if node.op_type == "Gemm":
        a = _shape(shapes, node.input[0], node)
        output = _shape(shapes, node.output[0], node)
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        inner = a[0] if trans_a else a[1]
        return math.prod(output) * inner
    # MatMul (numpy semantics): every output element is a dot product over A's last axis.
    a = _shape(shapes, node.input[0], node)
    output = _shape(shapes, node.output[0], node)
    return math.prod(output) * a[-1]
