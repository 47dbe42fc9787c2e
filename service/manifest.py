"""The model manifest: the contract between training and serving.

``models/manifest.json`` lists every model file with its sha256 and everything needed to use it: input
name and size, alignment template, colour order, normalisation, output name and embedding dim, the
calibrated threshold and how it was calibrated, LFW accuracy and provenance. The service never guesses
preprocessing: it reads it here.

An embedding model is one or more *components* (ONNX graphs, each with its own crop); the embedding is
the concatenation of the L2-normalised component outputs, L2-normalised again. A distilled student has one
component; the teacher ensemble (SFace + dlib ResNet) has two.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ManifestError(RuntimeError):
    """The manifest or a model file it names is missing, malformed or does not match its sha256."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class InputSpec(_Strict):
    """How an aligned crop becomes the graph's input tensor: ``((pixels - mean) / std)`` in ``colour_order``."""

    name: str
    width: int
    height: int
    colour_order: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: Literal["NCHW"] = "NCHW"
    template: list[tuple[float, float]] = Field(min_length=5, max_length=5)
    """Where the 5 landmarks go in the crop (image coordinates of a ``width`` x ``height`` crop)."""


class OutputSpec(_Strict):
    name: str
    dim: int


class Component(_Strict):
    """One ONNX graph and its crop."""

    file: str
    sha256: str
    input: InputSpec
    output: OutputSpec
    flip_average: bool = False
    """Embed the crop and its mirror image and add the two outputs (the student is trained for this)."""


class EmbeddingModel(_Strict):
    """An embedding model as served: its components, threshold and model card."""

    version: str
    components: list[Component] = Field(min_length=1)
    threshold: float
    """Cosine similarity at or above which two faces are called the same person."""
    threshold_calibration: str
    description: str = ""
    lfw: dict[str, Any] = Field(default_factory=dict)
    teachers: list[str] = Field(default_factory=list)
    provenance: dict[str, Any] = Field(default_factory=dict)

    @property
    def dim(self) -> int:
        return sum(c.output.dim for c in self.components)


class DetectorSpec(_Strict):
    file: str
    sha256: str
    input_name: str = "input"
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    max_side: int = 640
    min_side: int = 160
    provenance: dict[str, Any] = Field(default_factory=dict)


class Manifest(_Strict):
    schema_version: int = 1
    default_model: str
    detector: DetectorSpec
    models: dict[str, EmbeddingModel]


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest file; raise :class:`ManifestError` with a clear message if it is unusable."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ManifestError(f"model manifest not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(f"model manifest {path} is not valid JSON: {exc}") from exc
    try:
        manifest = Manifest.model_validate(data)
    except ValueError as exc:
        raise ManifestError(f"model manifest {path} is malformed: {exc}") from exc
    if manifest.default_model not in manifest.models:
        raise ManifestError(f"default_model {manifest.default_model!r} is not among the manifest's models")
    return manifest


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_file(manifest_path: Path, file: str, expected_sha256: str) -> Path:
    """Path of a model file named relative to the manifest, checked against its sha256."""
    path = (manifest_path.parent / file).resolve()
    if not path.is_file():
        raise ManifestError(f"model file {file!r} listed in {manifest_path} does not exist at {path}")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ManifestError(
            f"model file {path} has sha256 {actual}, but {manifest_path} expects {expected_sha256}: "
            "the file is corrupt or the manifest is stale"
        )
    return path
