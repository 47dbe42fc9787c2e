"""Turn OpenCV Zoo's block-int8 ONNX files into plain fp32 graphs that ONNX Runtime accepts.

The shipped SFace and YuNet files keep their weights as int8 graph inputs feeding
``DequantizeLinear(block_size=...)`` nodes, which ONNX Runtime refuses. We dequantise every weight
once, constant-fold the weight reshapes, drop initialisers from ``graph.input`` and make the batch
(and for the detector, the spatial) dimensions symbolic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper, numpy_helper


def _dequantize(
    q: NDArray[np.generic], scale: NDArray[np.floating], zero: NDArray[np.generic], axis: int, block: int
) -> NDArray[np.float32]:
    """Blocked dequantisation: ``(q - zero) * scale`` with scale/zero repeated ``block`` times on ``axis``."""
    scale_full = np.repeat(scale.astype(np.float32), block, axis=axis)
    zero_full = np.repeat(zero.astype(np.float32), block, axis=axis)
    # The last block may be partial: trim the repeated tensors to the weight's extent.
    index = tuple(slice(0, n) for n in q.shape)
    return ((q.astype(np.float32) - zero_full[index]) * scale_full[index]).astype(np.float32)


def dequantize_model(model: onnx.ModelProto, dynamic_dims: dict[int, str]) -> onnx.ModelProto:
    """Return a copy of ``model`` with every constant DequantizeLinear/Reshape folded into fp32 initialisers.

    Args:
        model: the block-quantised model.
        dynamic_dims: input dimension index -> symbolic name, for every graph input (e.g. ``{0: "batch"}``).
    """
    graph = model.graph
    consts: dict[str, NDArray[Any]] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    kept_nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "DequantizeLinear" and all(i in consts for i in node.input):
            q, scale, zero = (consts[i] for i in node.input)
            if scale.ndim == 0 or scale.size == 1:
                consts[node.output[0]] = ((q.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32)
            else:
                consts[node.output[0]] = _dequantize(
                    q, scale, zero, int(attrs.get("axis", 1)), int(attrs["block_size"])
                )
        elif node.op_type == "Reshape" and all(i in consts for i in node.input):
            consts[node.output[0]] = consts[node.input[0]].reshape(consts[node.input[1]])
        else:
            kept_nodes.append(node)

    used = {i for n in kept_nodes for i in n.input}
    initializers = [numpy_helper.from_array(v, name=k) for k, v in consts.items() if k in used]
    init_names = {i.name for i in initializers}
    # Keep only real data inputs: weights are initialisers now, and the shipped SFace also lists
    # stale weight names as inputs that no node reads.
    inputs = [i for i in graph.input if i.name in used and i.name not in init_names and i.name not in consts]
    for inp in inputs:
        dims = inp.type.tensor_type.shape.dim
        for index, name in dynamic_dims.items():
            dims[index].ClearField("dim_value")
            dims[index].dim_param = name
    outputs = list(graph.output)
    for out in outputs:
        # Fixed output shapes would clash with dynamic inputs: make every output dim symbolic.
        for k, dim in enumerate(out.type.tensor_type.shape.dim):
            dim.ClearField("dim_value")
            dim.dim_param = f"{out.name}_{k}"

    new_graph = helper.make_graph(kept_nodes, graph.name, inputs, outputs, initializers)
    opset = max(13, min(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))
    new_model = helper.make_model(new_graph, opset_imports=[helper.make_opsetid("", min(opset, 17))])
    new_model.ir_version = 8
    onnx.checker.check_model(new_model)
    return new_model


def rewrite_file(src: Path, dst: Path, dynamic_dims: dict[int, str]) -> Path:
    """Rewrite ``src`` to a plain fp32 ONNX file at ``dst``."""
    model = dequantize_model(onnx.load(str(src)), dynamic_dims)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst
