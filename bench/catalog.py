"""Which models the benchmark runs: the teachers, their ensemble and the students, read from the manifests.

Everything about a model's graphs (file, input name and size, output name, flip averaging, the sha256 the
manifest promises) comes from the manifest the service itself would load, so the benchmark times exactly
what would be served. Extra student ONNX files can be added from the command line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx

from service.detection import DetectorConfig
from service.manifest import Component, EmbeddingModel, load_manifest

log = logging.getLogger(__name__)

Kind = Literal["teacher", "ensemble", "student"]
TEACHER_LABELS = {"sface": "T1 SFace", "dlib": "T2 dlib ResNet-29"}
ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class Graph:
    """One ONNX file as a model component uses it."""

    path: Path
    input_name: str
    height: int
    width: int
    output_name: str
    manifest_sha256: str | None = None


@dataclass(frozen=True)
class BenchModel:
    """A model to benchmark: one graph (teacher, student) or several run on the same face (the ensemble)."""

    name: str
    kind: Kind
    graphs: tuple[Graph, ...]
    flip_average: bool = False
    crops_per_face: int = 1
    """Test-time crops per face as served (the manifest's ``shifts``), each embedded (and mirrored) on its own."""
    source: str = ""
    manifest_lfw: dict[str, Any] = field(default_factory=dict)
    run: str | None = None

    @property
    def label(self) -> str:
        return TEACHER_LABELS.get(self.name, "T1+T2 ensemble" if self.kind == "ensemble" else self.name)

    @property
    def served_passes(self) -> int:
        """Graph passes per face as served: each crop, and its mirror when flip averaging."""
        return (2 if self.flip_average else 1) * self.crops_per_face

    @property
    def served_how(self) -> str:
        """What the served passes are, for the report's row labels."""
        crops = f"{self.crops_per_face} shifted crops" if self.crops_per_face > 1 else "crop"
        return f"{crops} + mirror" if self.flip_average else crops


def _graph(manifest_path: Path, component: Component) -> Graph:
    spec = component.input
    return Graph(
        path=(manifest_path.parent / component.file).resolve(),
        input_name=spec.name,
        height=spec.height,
        width=spec.width,
        output_name=component.output.name,
        manifest_sha256=component.sha256,
    )


def _model(manifest_path: Path, name: str, spec: EmbeddingModel, kind: Kind) -> BenchModel:
    return BenchModel(
        name=name,
        kind=kind,
        graphs=tuple(_graph(manifest_path, c) for c in spec.components),
        flip_average=any(c.flip_average for c in spec.components),
        crops_per_face=max(c.crops_per_face for c in spec.components),
        source=str(manifest_path),
        manifest_lfw=spec.lfw.model_dump(exclude_none=True) if spec.lfw else {},
        run=spec.provenance.run if spec.provenance else None,
    )


def teachers(manifest_path: Path) -> list[BenchModel]:
    """T1, T2 and their ensemble from the teacher manifest; empty (with a warning) if a file is missing."""
    if not manifest_path.is_file():
        log.warning("no teacher manifest at %s (run `python -m training teachers`): teachers skipped", manifest_path)
        return []
    manifest = load_manifest(manifest_path)
    missing = [name for name in TEACHER_LABELS if name not in manifest.models]
    if missing:
        log.warning("teacher manifest %s lacks %s: teachers skipped", manifest_path, missing)
        return []
    found = [_model(manifest_path, name, manifest.models[name], "teacher") for name in TEACHER_LABELS]
    absent = [str(g.path) for model in found for g in model.graphs if not g.path.is_file()]
    if absent:
        log.warning("teacher files absent: %s: teachers skipped", absent)
        return []
    if ENSEMBLE in manifest.models:
        ensemble = _model(manifest_path, ENSEMBLE, manifest.models[ENSEMBLE], "ensemble")
    else:  # evaluate-teachers has not (re)written the manifest yet: the ensemble is T1 + T2 on the same face
        log.warning("teacher manifest %s has no %r model: using T1 + T2", manifest_path, ENSEMBLE)
        ensemble = BenchModel(ENSEMBLE, "ensemble", tuple(g for m in found for g in m.graphs), source="T1 + T2")
    return [*found, ensemble]


def students(manifest_path: Path) -> tuple[list[BenchModel], str | None]:
    """Every model in the student manifest and its default model; ``([], None)`` if there is no manifest yet."""
    if not manifest_path.is_file():
        log.warning("no student manifest at %s (the training pipeline publishes it)", manifest_path)
        return [], None
    manifest = load_manifest(manifest_path)
    models = [_model(manifest_path, name, spec, "student") for name, spec in manifest.models.items()]
    return models, manifest.default_model


def extra_student(path: Path) -> BenchModel:
    """A student ONNX file given on the command line; name and flip averaging from a results.json beside it."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    graph_input = next(i for i in graph.input if i.name not in initializers)
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    results_path = path.parent / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    name = results.get("name", path.stem) if path.name == "student.onnx" else path.stem
    return BenchModel(
        name=name,
        kind="student",
        graphs=(Graph(path.resolve(), graph_input.name, dims[2], dims[3], graph.output[0].name),),
        flip_average=bool(results.get("flip_average", False)),
        source=str(path),
    )


def detector(manifest_paths: list[Path]) -> tuple[Path, DetectorConfig] | None:
    """The YuNet file and settings named by the first of these manifests that exists."""
    for manifest_path in manifest_paths:
        if manifest_path.is_file():
            spec = load_manifest(manifest_path).detector
            config = DetectorConfig(
                max_side=spec.max_side,
                min_side=spec.min_side,
                score_threshold=spec.score_threshold,
                nms_threshold=spec.nms_threshold,
            )
            return (manifest_path.parent / spec.file).resolve(), config
    return None
