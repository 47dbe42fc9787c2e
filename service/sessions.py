"""ONNX Runtime sessions for the manifest's model files: created once, checked against the manifest, warmed up.

Anything wrong here (missing file, wrong sha256, input or output not as declared) raises
:class:`~service.manifest.ManifestError` with a message naming the file and what differs, so start-up fails
loudly instead of serving wrong embeddings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from service.detection import STRIDES, DetectorConfig, FaceDetector
from service.manifest import Component, DetectorSpec, ManifestError, resolve_file

log = logging.getLogger(__name__)

_DETECTOR_OUTPUTS = {f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES}


def session_options(threads: int, spinning: bool = True) -> ort.SessionOptions:
    """CPU session options: ``threads`` intra-op, 1 inter-op (the graphs are chains), all graph optimisations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's warnings are not JSON and say nothing actionable
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class SessionPool:
    """One session per model file, however many components name it."""

    def __init__(self, manifest_path: Path, options: ort.SessionOptions) -> None:
        self.manifest_path = manifest_path
        self.options = options
        self._sessions: dict[Path, ort.InferenceSession] = {}

    def get(self, file: str, sha256: str) -> tuple[Path, ort.InferenceSession]:
        path = resolve_file(self.manifest_path, file, sha256)
        if path not in self._sessions:
            try:
                self._sessions[path] = ort.InferenceSession(str(path), self.options, providers=["CPUExecutionProvider"])
            # ORT raises its own exception types (Fail, InvalidProtobuf, ...); all mean the file is unusable.
            except Exception as exc:
                raise ManifestError(f"ONNX Runtime cannot load model file {path}: {exc}") from exc
        return path, self._sessions[path]


@dataclass(frozen=True)
class LoadedComponent:
    """A manifest component bound to its session."""

    spec: Component
    path: Path
    session: ort.InferenceSession

    def run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(N, 3, H, W)`` input -> ``(N, dim)`` raw output."""
        (output,) = self.session.run([self.spec.output.name], {self.spec.input.name: batch})
        return np.asarray(output, dtype=np.float32)


def load_detector(pool: SessionPool, spec: DetectorSpec) -> FaceDetector:
    """YuNet session with the manifest's thresholds; checks its I/O names and warms it up."""
    path, session = pool.get(spec.file, spec.sha256)
    inputs = [i.name for i in session.get_inputs()]
    if inputs != [spec.input_name]:
        raise ManifestError(f"detector {path} has inputs {inputs}; the manifest declares {spec.input_name!r}")
    missing = _DETECTOR_OUTPUTS - {o.name for o in session.get_outputs()}
    if missing:
        raise ManifestError(f"detector {path} lacks the YuNet outputs {sorted(missing)}")
    config = DetectorConfig(
        max_side=spec.max_side,
        min_side=spec.min_side,
        score_threshold=spec.score_threshold,
        nms_threshold=spec.nms_threshold,
    )
    detector = FaceDetector(session, config)
    for height, width in ((256, 256), (480, 640)):  # a typical small photo, and a downscaled large one
        detector.detect(np.zeros((height, width, 3), dtype=np.uint8))
    return detector


def load_component(pool: SessionPool, spec: Component) -> LoadedComponent:
    """Bind a component to its session; check input and output against the manifest with a warm-up run."""
    path, session = pool.get(spec.file, spec.sha256)
    _check_input(path, session, spec)
    outputs = [o.name for o in session.get_outputs()]
    if spec.output.name not in outputs:
        raise ManifestError(f"{path} has outputs {outputs}; the manifest declares {spec.output.name!r}")
    component = LoadedComponent(spec=spec, path=path, session=session)
    # Warm up with the batch sizes a request really runs (2 faces for /verify, times the test-time crops,
    # doubled by flip averaging), so the first client does not pay for ORT's allocations; the output shape is
    # checked on the way.
    per_face = (2 if spec.flip_average else 1) * spec.crops_per_face
    for faces in (1, 2):
        batch = faces * per_face
        dummy = np.full((batch, 3, spec.input.height, spec.input.width), 0.5, dtype=np.float32)
        try:
            output = component.run(dummy)
        except Exception as exc:  # ORT's own error types; the message says what the graph expected
            raise ManifestError(f"{path} failed on a {dummy.shape} input as the manifest declares: {exc}") from exc
        if output.shape != (batch, spec.output.dim):
            raise ManifestError(
                f"{path} output {spec.output.name!r} has shape {output.shape} for a batch of {batch}; "
                f"the manifest declares dim {spec.output.dim}, i.e. shape ({batch}, {spec.output.dim})"
            )
        if not np.all(np.isfinite(output)):
            raise ManifestError(f"{path} produced non-finite outputs on the warm-up batch")
    return component


def _check_input(path: Path, session: ort.InferenceSession, spec: Component) -> None:
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if spec.input.name not in inputs:
        raise ManifestError(f"{path} has inputs {list(inputs)}; the manifest declares {spec.input.name!r}")
    shape = inputs[spec.input.name]
    expected = (3, spec.input.height, spec.input.width)
    static = [(got, want) for got, want in zip(shape[1:], expected, strict=False) if isinstance(got, int)]
    if len(shape) != 4 or any(got != want for got, want in static):
        raise ManifestError(
            f"{path} input {spec.input.name!r} has shape {shape}; the manifest declares (N, 3, H, W) = {expected}"
        )
