"""Post-training int8 quantization of an exported student (ONNX Runtime static quantization, QDQ format).

Weights become int8 per output channel and activations uint8 per tensor, with activation ranges calibrated on
training-pool crops (never LFW). The QDQ format keeps standard ONNX ops: each float op is wrapped in
QuantizeLinear/DequantizeLinear nodes, which ONNX Runtime fuses into integer kernels when it loads the graph.
On this CPU that halves a small student's time per face (README, "Models"); the cost in accuracy is measured,
not assumed: :func:`fidelity` compares the two graphs on held-out crops and the evaluate stage scores LFW
with both.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from training.data.feature_cache import onnx_runner

log = logging.getLogger(__name__)


class _Crops(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no type hints (no py.typed)
    """Feeds ``(N, S, S, 3)`` uint8 crops to the calibrator as float NCHW batches."""

    def __init__(self, crops: NDArray[np.uint8], input_name: str, batch: int = 64) -> None:
        self._batches: Iterator[dict[str, NDArray[np.float32]]] = (
            {input_name: np.ascontiguousarray(crops[i : i + batch].transpose(0, 3, 1, 2), dtype=np.float32)}
            for i in range(0, len(crops), batch)
        )

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        return next(self._batches, None)


CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}


def float_tail(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes from the last full (not depthwise) convolution to the output: the last stage's
    conv and the head. Quantization errors made upstream add up there; on 4x4 maps these nodes cost little."""
    full = [
        i
        for i, node in enumerate(graph.node)
        if node.op_type == "Conv" and all(a.name != "group" or a.i == 1 for a in node.attribute)
    ]
    return [node.name for node in graph.node[full[-1] :]] if full else []


def quantize_int8(
    src: Path, dst: Path, calibration: NDArray[np.uint8], method: str = "minmax", keep_tail: bool = False
) -> Path:
    """Write the int8 (QDQ) version of the float student ``src`` to ``dst``, its activation ranges calibrated
    on ``calibration`` crops by ``method`` (a key of :data:`CALIBRATION_METHODS`). ``keep_tail`` leaves the
    nodes of :func:`float_tail` in float."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"export.calibration must be one of {sorted(CALIBRATION_METHODS)}, not {method!r}")
    input_name = onnx.load(str(src)).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))  # shape inference + graph clean-up, as ORT recommends
        exclude = float_tail(onnx.load(str(prepared)).graph) if keep_tail else []
        quantize_static(
            str(prepared),
            str(dst),
            _Crops(calibration, input_name),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CALIBRATION_METHODS[method],
            nodes_to_exclude=exclude,
        )
    onnx.checker.check_model(onnx.load(str(dst)))
    log.info(
        "quantized %s -> %s on %d calibration crops (%s); kept in float: %s",
        src.name,
        dst,
        len(calibration),
        method,
        exclude or "nothing",
    )
    return dst


def fidelity(reference: Path, quantized: Path, crops: NDArray[np.uint8]) -> dict[str, float]:
    """How close the int8 graph's outputs are to the float graph's on ``crops``: cosine (mean, 1st percentile,
    min) and the largest absolute difference relative to the float outputs' RMS."""
    ref, out = onnx_runner(reference)(crops), onnx_runner(quantized)(crops)
    cos = np.sum(ref * out, 1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(out, axis=1)
    rms = float(np.sqrt(np.mean(ref**2)))
    return {
        "crops": len(crops),
        "cosine_mean": float(cos.mean()),
        "cosine_p01": float(np.percentile(cos, 1)),
        "cosine_min": float(cos.min()),
        "max_abs_diff_over_rms": float(np.abs(ref - out).max() / rms),
    }
