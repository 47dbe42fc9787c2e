"""The model manifest: the contract between training and serving.

``models/manifest.json`` lists every model file with its sha256 and everything needed to use it: input
name and size, alignment template, colour order, normalisation, the preprocessing version, output name and
embedding dim, the threshold and its operating points with how they were calibrated, LFW accuracy and
provenance. The service never guesses preprocessing: it reads it here.

The schema is strict both ways: an unknown key (a typo such as ``flip_avarage``) is an error, not a silently
applied default, and training writes the manifest through the same models (:func:`save_manifest` validates
before writing). File names are relative to the manifest's folder and may not leave it.

An embedding model is one or more *components* (ONNX graphs, each with its own crop); the embedding is
the concatenation of the L2-normalised component outputs, L2-normalised again. A distilled student has one
component; the teacher ensemble (SFace + dlib ResNet) has two.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION: Literal[2] = 2
PREPROCESSING_VERSION = 1
"""Version of the crop and tensor conversion (``service.preprocessing``: antialiased 5-point similarity warp,
then colour order, mean and std). Bump it whenever their output changes, so that a model trained or calibrated
on other crops is refused instead of served on crops it has never seen."""


class ManifestError(RuntimeError):
    """The manifest or a model file it names is missing, malformed or does not match its sha256."""


def _inside_folder(file: str) -> str:
    """A file name relative to the manifest's folder that stays inside it (no absolute path, no ``..``)."""
    posix, windows = PurePosixPath(file), PureWindowsPath(file)
    if not file or posix.is_absolute() or windows.is_absolute() or windows.drive:
        raise ValueError(f"{file!r} must be a path relative to the manifest's folder")
    if ".." in posix.parts or ".." in windows.parts:
        raise ValueError(f"{file!r} leaves the manifest's folder ('..')")
    return file


ModelFile = Annotated[str, AfterValidator(_inside_folder)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Similarity = Annotated[float, Field(ge=-1.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """How an aligned crop becomes the graph's input tensor: ``((pixels - mean) / std)`` in ``colour_order``."""

    name: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    colour_order: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: Literal["NCHW"] = "NCHW"
    template: list[tuple[float, float]] = Field(min_length=5, max_length=5)
    """Where the 5 landmarks go in the crop (image coordinates of a ``width`` x ``height`` crop)."""
    preprocessing: int
    """The :data:`PREPROCESSING_VERSION` the graph was trained and calibrated with."""

    @model_validator(mode="after")
    def _known_preprocessing(self) -> InputSpec:
        if self.preprocessing != PREPROCESSING_VERSION:
            raise ValueError(
                f"preprocessing version {self.preprocessing} is not the one this service implements "
                f"({PREPROCESSING_VERSION}): the model expects other crops"
            )
        return self


class OutputSpec(_Strict):
    name: str
    dim: int = Field(gt=0)


class Component(_Strict):
    """One ONNX graph and its crop."""

    file: ModelFile
    sha256: Sha256
    input: InputSpec
    output: OutputSpec
    flip_average: bool = False
    """Embed the crop and its mirror image and add the two outputs (the student is trained for this)."""
    shifts: list[tuple[float, float]] = Field(default_factory=list, max_length=16)
    """Test-time crops: empty, the one crop on the template; else one crop per ``(dx, dy)``, the template moved by
    that many crop pixels (list ``(0, 0)`` for the centred one), and the crops' outputs are added (with
    ``flip_average``, each crop's mirror image too)."""

    def crop_specs(self) -> list[InputSpec]:
        """The input of every crop this component embeds per face."""
        if not self.shifts:
            return [self.input]
        return [
            self.input.model_copy(update={"template": [(x + dx, y + dy) for x, y in self.input.template]})
            for dx, dy in self.shifts
        ]

    @property
    def crops_per_face(self) -> int:
        return max(1, len(self.shifts))

    @property
    def identity(self) -> str:
        """The file's sha256 when one plain crop per face is embedded; with a mirror image or test-time crops, a
        hash of it and of how it is served: the same graph served otherwise gives other embeddings."""
        if not self.shifts and not self.flip_average:
            return self.sha256
        served = f"{self.sha256} flip_average {self.flip_average} shifts {self.shifts}"
        return hashlib.sha256(served.encode()).hexdigest()


class LfwResult(_Strict):
    """LFW 10-fold protocol (each fold's threshold picked on the other nine); LFW is test data only."""

    accuracy: Unit
    accuracy_std: float
    roc_auc: Unit
    tar_at_far_1e3: Unit
    pairs: int
    fold_accuracies: list[float] | None = None
    thresholds: list[float] | None = None
    threshold_mean: float | None = None
    key: str | None = None
    """Teacher manifest: which entry of the evaluation (``teachers_lfw.json``) this is."""


class Measured(_Strict):
    """Rates at one threshold on one pair set, with the counts of accepted pairs behind them."""

    tar: Unit
    far: Unit
    genuine_accepted: int = Field(ge=0)
    impostor_accepted: int = Field(ge=0)


class LfwAtThreshold(_Strict):
    """LFW's 6,000 protocol pairs at a fixed (calibrated) threshold: nothing is picked on LFW."""

    accuracy: Unit
    fold_accuracy_std: float
    tar: Unit
    far: Unit
    pairs: int
    photos_without_face: int = Field(ge=0)


class PairSet(_Strict):
    """The photos and pairs a set of rates rests on (every genuine and every impostor pair of its photos)."""

    description: str
    identities: int = Field(gt=0)
    photos: int = Field(gt=0)
    photos_without_face: int = Field(ge=0)
    genuine_pairs: int = Field(gt=0)
    impostor_pairs: int = Field(gt=0)


class OperatingPoint(_Strict):
    """A threshold, what it does on the calibration pairs, on held-out pairs and on LFW."""

    far: float | None = Field(default=None, gt=0.0, lt=1.0)
    """The false-accept rate the threshold was calibrated for (``None``: the default operating point)."""
    threshold: Similarity
    calibration: Measured
    held_out: Measured
    held_out_protocol_accuracy: Unit
    """Accuracy on the held-out folds' protocol pairs (balanced: as many same as different pairs)."""
    lfw: LfwAtThreshold


class OperatingPoints(_Strict):
    """Thresholds calibrated on one half of a non-LFW set's identities and measured on the other half."""

    tool: str
    calibrated_on: PairSet
    held_out: PairSet
    default_rule: str
    """How the default threshold was chosen."""
    default: OperatingPoint
    rates: list[OperatingPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct_rates(self) -> OperatingPoints:
        fars = [point.far for point in self.rates]
        if None in fars or len(set(fars)) != len(fars):
            raise ValueError(f"every operating point needs its own far; got {fars}")
        return self

    def threshold_at(self, far: float) -> float | None:
        """The threshold published for ``far``, or None if that rate is not published."""
        for point in self.rates:
            if point.far is not None and math.isclose(point.far, far, rel_tol=1e-6):
                return point.threshold
        return None

    @property
    def fars(self) -> list[float]:
        return [point.far for point in self.rates if point.far is not None]


class Selection(_Strict):
    size: int
    alpha: float
    beta: float
    redundancy: float
    method: str


class Quantization(_Strict):
    format: str
    calibration: str
    float_tail: bool
    crops: int
    cosine_mean: float
    cosine_p01: float
    cosine_min: float
    max_abs_diff_over_rms: float


class Provenance(_Strict):
    """Where a student comes from: its run and the hash of the training inputs (``training.config``)."""

    config_hash: str
    run: str
    params: int
    selection: Selection
    selected_neurons: int
    data: list[str]
    views: list[int]
    warm_start_from: str | None = None
    quantization: Quantization | None = None


class EmbeddingModel(_Strict):
    """An embedding model as served: its components, threshold, operating points and model card."""

    version: str
    description: str = ""
    components: list[Component] = Field(min_length=1)
    threshold: Similarity
    """Cosine similarity at or above which two faces are called the same person (the default)."""
    threshold_calibration: str
    operating_points: OperatingPoints | None = None
    lfw: LfwResult | None = None
    teachers: list[str] = Field(default_factory=list)
    provenance: Provenance | None = None

    @model_validator(mode="after")
    def _default_is_calibrated(self) -> EmbeddingModel:
        points = self.operating_points
        if points is not None and not math.isclose(points.default.threshold, self.threshold, abs_tol=1e-9):
            raise ValueError(
                f"threshold {self.threshold} is not the default operating point's {points.default.threshold}"
            )
        return self

    @property
    def dim(self) -> int:
        return sum(c.output.dim for c in self.components)


class DetectorProvenance(_Strict):
    source: str
    conversion: str


class DetectorSpec(_Strict):
    file: ModelFile
    sha256: Sha256
    input_name: str = "input"
    score_threshold: Unit = 0.6
    nms_threshold: Unit = 0.3
    max_side: int = Field(default=640, gt=0)
    min_side: int = Field(default=160, gt=0)
    provenance: DetectorProvenance | None = None


class Manifest(_Strict):
    schema_version: Literal[2]
    default_model: str
    models: dict[str, EmbeddingModel] = Field(min_length=1)
    detector: DetectorSpec

    @model_validator(mode="after")
    def _default_is_listed(self) -> Manifest:
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not among the models {sorted(self.models)}")
        return self


def _explain(exc: ValidationError) -> str:
    """One line per problem, each with the dotted location of the offending key."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        reason = "unknown key (a typo?)" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"  {where}: {reason}")
    return "\n".join(lines)


def validate_manifest(data: object, source: str) -> Manifest:
    """A :class:`Manifest` from parsed JSON; :class:`ManifestError` listing every problem otherwise."""
    if isinstance(data, dict) and data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(
            f"model manifest {source} has schema_version {data.get('schema_version')!r}; this service reads "
            f"schema_version {SCHEMA_VERSION} only (republish the models, or migrate the file)"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(f"model manifest {source} does not validate:\n{_explain(exc)}") from exc


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest file; raise :class:`ManifestError` with a clear message if it is unusable."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ManifestError(f"model manifest not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(f"model manifest {path} is not valid JSON: {exc}") from exc
    return validate_manifest(data, str(path))


def save_manifest(manifest: Manifest, path: Path) -> None:
    """Validate ``manifest`` again (a hand-built model may skip validation) and write it as JSON."""
    checked = validate_manifest(manifest.model_dump(mode="json"), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(checked.model_dump_json(indent=2, exclude_none=True) + "\n")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_file(manifest_path: Path, file: str, expected_sha256: str) -> Path:
    """Path of a model file named relative to the manifest, checked against its sha256."""
    path = manifest_path.parent / _inside_folder(file)
    if not path.is_file():
        raise ManifestError(f"model file {file!r} listed in {manifest_path} does not exist at {path.resolve()}")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ManifestError(
            f"model file {path} has sha256 {actual}, but {manifest_path} expects {expected_sha256}: "
            "the file is corrupt or the manifest is stale"
        )
    return path.resolve()
