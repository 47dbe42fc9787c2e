"""Model-level benchmark in ONNX Runtime: size, MACs and ms/face of the teachers, their ensemble and the students.

Every model gets one session per thread count (1 and 2 intra-op threads, the service's session options),
all in this process, and is timed at batch 1 and batch 32 faces by :func:`bench.timing.interleave`. The
teacher ensemble is T1 then T2 on the same face(s): one timed call runs both graphs, and T1's and T2's
own numbers are the two halves of those same calls. A flip-averaging student is timed both as one pass
(batch B) and as served (the crop and its mirror: batch 2B) per face. Detection (YuNet, decoding and NMS
included) is timed per photo on a 250x250 LFW photo and on a 640x480 one, in the same rounds.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

from bench.catalog import BenchModel, Graph
from bench.flops import count_macs
from bench.timing import Case, Samples, interleave, summarise
from service.detection import DetectorConfig, FaceDetector
from service.manifest import sha256_of
from service.sessions import session_options
from training.paths import shown

log = logging.getLogger(__name__)

DETECTION_SIZES = ((250, 250), (640, 480))  # (width, height): an LFW photo, a VGA photo


@dataclass(frozen=True)
class TimingPlan:
    threads: tuple[int, ...] = (1, 2)
    batches: tuple[int, ...] = (1, 32)
    rounds: int = 40
    budget: float = 150.0
    spinning: bool = False


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")  # inputs 1 and 2: scale and zero point, not learned weights


@functools.cache
def file_facts(path: Path) -> tuple[int, int, str]:
    """(parameters, file bytes, sha256) of an ONNX file. Parameters are the elements of its weight
    initializers: the floating-point ones, and in an int8 (QDQ) graph the integer weights and biases too,
    but not the quantization scales and zero points."""
    model = onnx.load(str(path))
    quant = {name for node in model.graph.node if node.op_type in QDQ_OPS for name in node.input[1:3]}
    quantized = {node.input[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    params = sum(
        int(np.prod(t.dims))
        for t in model.graph.initializer
        if t.name not in quant
        and (t.name in quantized or onnx.helper.tensor_dtype_to_np_dtype(t.data_type).kind == "f")
    )
    return params, path.stat().st_size, sha256_of(path)


def static_facts(model: BenchModel) -> dict[str, Any]:
    """Parameters, bytes, sha256s and MACs of a model (summed over its graphs); per face, one pass and served."""
    files, params, size, macs = [], 0, 0, 0
    for graph in model.graphs:
        graph_params, graph_bytes, sha = file_facts(graph.path)
        params, size = params + graph_params, size + graph_bytes
        macs += count_macs(graph.path, (1, 3, graph.height, graph.width))
        expected = graph.manifest_sha256
        files.append(
            {
                "path": shown(graph.path),
                "bytes": graph_bytes,
                "sha256": sha,
                "manifest_sha256": expected,
                "sha256_matches_manifest": None if expected is None else sha == expected,
            }
        )
    passes = model.served_passes
    return {
        "name": model.name,
        "label": model.label,
        "kind": model.kind,
        "source": model.source,
        "flip_average": model.flip_average,
        "served_passes": passes,
        "served_how": model.served_how,
        "crops_per_face": model.crops_per_face,
        "run": model.run,
        "manifest_lfw": model.manifest_lfw,
        "files": files,
        "params": params,
        "onnx_bytes": size,
        "macs_per_face": {"one_pass": macs, "served": macs * passes},
        "flops_per_face": {"one_pass": 2 * macs, "served": 2 * macs * passes},
    }


class SessionCache:
    """One ORT session per (file, thread count), shared by every model that uses the file."""

    def __init__(self, spinning: bool) -> None:
        self.spinning = spinning
        self._sessions: dict[tuple[Path, int], ort.InferenceSession] = {}

    def get(self, path: Path, threads: int) -> ort.InferenceSession:
        if (path, threads) not in self._sessions:
            options = session_options(threads, self.spinning)
            self._sessions[path, threads] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return self._sessions[path, threads]


def _runner(session: ort.InferenceSession, graph: Graph, batch: int, rng: np.random.Generator) -> Any:
    feed = {graph.input_name: rng.uniform(0, 255, (batch, 3, graph.height, graph.width)).astype(np.float32)}
    return functools.partial(session.run, [graph.output_name], feed)


def key(name: str, threads: int, faces: int, mode: str) -> str:
    return f"{name}|t{threads}|b{faces}|{mode}"


def model_cases(models: Sequence[BenchModel], sessions: SessionCache, plan: TimingPlan) -> list[Case]:
    """Cases for every model, thread count, batch and pass mode; teachers inside the ensemble ride along in it."""
    rng = np.random.default_rng(0)
    single = {m.graphs[0].path: m.name for m in models if m.kind == "teacher"}
    ensembles = [m for m in models if m.kind == "ensemble"]
    riding = {single[g.path] for m in ensembles for g in m.graphs if g.path in single}
    cases = []
    for threads in plan.threads:
        for faces in plan.batches:
            for model in models:
                if model.name in riding:
                    continue
                served = model.served_passes
                modes = [("one_pass", 1), ("served", served)] if served > 1 else [("one_pass", 1)]
                for mode, passes in modes:
                    steps = [
                        (
                            key(single.get(g.path, f"{model.name}#{i}"), threads, faces, mode),
                            _runner(sessions.get(g.path, threads), g, faces * passes, rng),
                        )
                        for i, g in enumerate(model.graphs)
                    ]
                    cases.append(Case(key(model.name, threads, faces, mode), steps))
    return cases


def detection_photos(lfw_jpeg: bytes) -> dict[str, np.ndarray]:
    """RGB arrays: the LFW photo as is, and the same photo scaled to 480x480 on a grey 640x480 canvas."""
    photo = Image.open(io.BytesIO(lfw_jpeg)).convert("RGB")
    canvas = Image.new("RGB", (640, 480), (128, 128, 128))
    canvas.paste(photo.resize((480, 480), Image.Resampling.BILINEAR), (80, 0))
    return {f"{photo.width}x{photo.height}": np.asarray(photo), "640x480": np.asarray(canvas)}


def detection_cases(
    detector: tuple[Path, DetectorConfig], photos: dict[str, np.ndarray], sessions: SessionCache, plan: TimingPlan
) -> list[Case]:
    path, config = detector
    cases = []
    for threads in plan.threads:
        yunet = FaceDetector(sessions.get(path, threads), config)
        for size, image in photos.items():
            cases.append(Case(f"detector|t{threads}|{size}", [("detect", functools.partial(yunet.detect, image))]))
    return cases


def _timing(model: BenchModel, samples: Samples, plan: TimingPlan) -> dict[str, Any]:
    """``timing["t2"]["b1"]["served"]`` = per-face stats; ``served`` is ``one_pass`` without flip averaging."""
    table: dict[str, Any] = {}
    for threads in plan.threads:
        for faces in plan.batches:
            cell = {}
            for mode, passes in (("one_pass", 1), ("served", model.served_passes)):
                values = samples.seconds.get(key(model.name, threads, faces, mode))
                if values is None:
                    values = samples.seconds[key(model.name, threads, faces, "one_pass")]
                cell[mode] = {**summarise(values).per(faces), "call_batch": faces * passes, "faces": faces}
            table.setdefault(f"t{threads}", {})[f"b{faces}"] = cell
    return table


def _yunet_input(height: int, width: int, config: DetectorConfig) -> tuple[int, int]:
    """YuNet's input size for a photo, as :class:`FaceDetector` makes it: rescaled into range, padded to 32."""
    scale = 1.0
    if max(height, width) > config.max_side:
        scale = config.max_side / max(height, width)
    elif min(height, width) < config.min_side:
        scale = min(config.min_side / min(height, width), config.max_side / max(height, width))
    scaled_h, scaled_w = max(1, round(height * scale)), max(1, round(width * scale))
    return -(-scaled_h // 32) * 32, -(-scaled_w // 32) * 32


def _detection(
    detector: tuple[Path, DetectorConfig], photos: dict[str, np.ndarray], samples: Samples, plan: TimingPlan
) -> dict[str, Any]:
    path = detector[0]
    result: dict[str, Any] = {"file": shown(path), "sha256": sha256_of(path), "per_photo": {}, "macs": {}}
    for size, image in photos.items():
        height, width = _yunet_input(image.shape[0], image.shape[1], detector[1])
        result["macs"][size] = count_macs(path, (1, 3, height, width))
        for threads in plan.threads:
            stats = summarise(samples.seconds[f"detector|t{threads}|{size}"]).per(1)
            result["per_photo"].setdefault(f"t{threads}", {})[size] = stats
    return result


def run(
    models: Sequence[BenchModel], detector: tuple[Path, DetectorConfig] | None, lfw_jpeg: bytes, plan: TimingPlan
) -> dict[str, Any]:
    """The whole model-level section: static facts, interleaved timings, ratios against the ensemble."""
    facts = [static_facts(model) for model in models]
    log.info("static facts done for %d models; creating sessions", len(models))
    sessions = SessionCache(plan.spinning)
    cases = model_cases(models, sessions, plan)
    photos = detection_photos(lfw_jpeg)
    if detector is not None:
        cases += detection_cases(detector, photos, sessions, plan)
    log.info("timing %d cases interleaved: up to %d rounds, budget %.0f s", len(cases), plan.rounds, plan.budget)
    samples = interleave(cases, plan.rounds, plan.budget)
    for model, entry in zip(models, facts, strict=True):
        entry["timing"] = _timing(model, samples, plan)
    result: dict[str, Any] = {
        "ort": {
            "version": ort.__version__,
            "intra_op_threads": list(plan.threads),
            "inter_op_threads": 1,
            "spinning": plan.spinning,
            "graph_optimization": "ORT_ENABLE_ALL",
        },
        "batches": list(plan.batches),
        "rounds": samples.rounds,
        "seconds": round(samples.elapsed, 1),
        "models": facts,
        "detection": None if detector is None else _detection(detector, photos, samples, plan),
    }
    add_ratios(result, plan)
    return result


def add_ratios(result: dict[str, Any], plan: TimingPlan) -> None:
    """Per student: ``vs_ensemble`` = compression (params) and speed-up (median ms/face), served and one pass."""
    ensemble = next((m for m in result["models"] if m["kind"] == "ensemble"), None)
    if ensemble is None:
        return
    for model in result["models"]:
        if model["kind"] != "student":
            continue
        speedup: dict[str, Any] = {}
        for threads, cells in model["timing"].items():
            for faces, cell in cells.items():
                base = ensemble["timing"][threads][faces]["served"]["median_ms"]
                speedup.setdefault(threads, {})[faces] = {mode: base / cell[mode]["median_ms"] for mode in cell}
        model["vs_ensemble"] = {
            "compression": ensemble["params"] / model["params"],
            "macs_ratio": ensemble["macs_per_face"]["served"] / model["macs_per_face"]["served"],
            "speedup": speedup,
        }
