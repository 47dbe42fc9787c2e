"""Run configuration: typed dataclasses read from a YAML file, with ``key.sub=value`` overrides from the CLI.

The resolved configuration is saved in the run folder next to what it produced, and its hash travels into
the model manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from training.selection import SelectionConfig
from training.student import StudentConfig

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 5e-4
    mse_weight: float = 1.0
    cos_weight: float = 1.0
    # Relational term: mean squared difference between the student's and the target's batch cosine-similarity
    # matrices (off the diagonal), so that pairs of faces keep the teachers' similarity, not only each face its
    # target. 0 turns it off.
    relational_weight: float = 0.0
    # In-batch contrastive term (training.trainer.contrastive_loss): InfoNCE of each face's student embedding
    # against the batch's teacher targets, at this temperature. 0 turns it off.
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.1
    threads: int = 2
    # Stop (keeping the last checkpoint) when this wall-clock budget is spent; None: run every epoch (a run that
    # must be reproducible stops on epochs only, never on time).
    max_minutes: float | None = 45.0
    # Show each image in this many of its cached views per epoch, drawn at random (training.trainer.SampledViews:
    # crops stay memory-mapped). None: every view of every image each epoch, all in memory (as before).
    views_per_epoch: int | None = None
    augment: bool = True
    # Probability of mirroring the student's input while keeping the teachers' answer on the unmirrored view as
    # the target. The best the student can then do is the mean of the teacher on a face and on its mirror: the
    # flip-averaged teacher target, learned in one pass, at no cost per face when serving.
    mirror: float = 0.0
    # Sampling weight of the training images whose face is turned by ``turned_yaw`` degrees or more (estimated from
    # the five landmarks: training.data.landmarks.estimated_yaw), against 1 for the others. Away from 1, an epoch
    # draws its samples with replacement in proportion to the weights (as many as without them).
    turned_weight: float = 1.0
    turned_yaw: float = 30.0
    # Alignment jitter with the target kept (training.trainer.jitter): this share of the student's inputs is moved
    # by up to ``jitter_shift`` pixels along x and y, scaled by up to ``jitter_scale`` and turned by up to
    # ``jitter_rotate`` degrees, while the target stays the teachers' answer on the aligned crop. The served crop
    # moves as much with the detector's landmark noise; the student learns to answer the same. 0: off.
    jitter: float = 0.0
    # Self-distillation from the test-time average: this share of each target is the warm start's (train.init_from)
    # own answer averaged over the crop and its mirror image, which ranks pairs better than one pass of it does
    # (the -flip variants); the rest stays the teachers' neurons. 0: the teachers only.
    self_weight: float = 0.0
    jitter_shift: float = 1.5
    jitter_scale: float = 0.04
    jitter_rotate: float = 4.0
    seed: int = 0
    # Warm start: a run folder (e.g. "runs/ensemble-deep") whose trained student (same neurons; same or narrower
    # widths: training.student.warm_start) initialises this one instead of random weights. Used once, before
    # the first epoch.
    init_from: str | None = None


@dataclass
class DataConfig:
    sets: list[str] = field(default_factory=lambda: ["celeba", "celeba_wild", "utkface"])
    limit_per_set: int | None = None
    views: list[int] = field(default_factory=lambda: [0, 1])
    lfw_pairs_per_fold: int | None = None  # None = all 600 per fold
    fraction: float = 1.0  # train on this seeded random share of the pool's training images (learning curves)
    # Read the sets through the data stage's curation (training/data/curate.py: its kept files only; the
    # extra sources of training/data/sources.py need it). False: every file of the three original sets, as before.
    curated: bool = False


@dataclass
class ExportConfig:
    # "int8": the shipped student.onnx is the float export quantized to int8 (training/quantize.py); the float
    # graph stays beside it as student-fp32.onnx. "none": the float export is shipped.
    quantize: str = "none"
    calibration_images: int = 512  # training-pool crops (plain view) that calibrate the activation ranges
    # How those ranges are taken: "minmax" (the extremes seen) or "percentile" (the 99.999th percentile of the
    # absolute values: a rare outlier no longer stretches the range, finer steps for every other value).
    calibration: str = "minmax"
    # Keep the last full conv and the head in float (training/quantize.py:float_tail): the int8 error that
    # builds up through the net is largest there, and on 4x4 maps those layers are cheap.
    float_tail: bool = False


@dataclass
class RunConfig:
    name: str = "student"
    teachers: list[str] = field(default_factory=lambda: ["sface", "dlib"])
    data: DataConfig = field(default_factory=DataConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    flip_average: bool = True
    # Outputs, not inputs: neither enters the config hash.
    publish_as: str | None = None  # model name in models/manifest.json
    publish_default: bool = False  # make it the service's default model

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short hash of the training inputs (:func:`training_inputs`): what decides the model a run makes."""
        return hashlib.sha256(json.dumps(training_inputs(self), sort_keys=True).encode()).hexdigest()[:12]


# Keys that say where a run's results go or how it is evaluated, not what it trains: outside the hash, so that
# renaming a run, publishing it or scoring it on a slice of LFW leaves its identity alone.
NOT_TRAINING_INPUTS: tuple[tuple[str, ...], ...] = (
    ("name",),  # the run folder
    ("publish_as",),  # the manifest entry
    ("publish_default",),
    ("data", "lfw_pairs_per_fold"),  # evaluation only: LFW never feeds training
    ("train", "threads"),  # how fast, not what
    ("student", "out_dim"),  # derived by the stages from the selection
)

# Settings (path -> default) introduced after runs had been published: left out while at their default, so a
# run made before a setting existed keeps its hash (the default reproduces what the run did).
_ADDED_LATER: dict[tuple[str, ...], Any] = {
    ("export",): dataclasses.asdict(ExportConfig()),
    ("train", "relational_weight"): 0.0,
    ("train", "contrastive_weight"): 0.0,
    ("train", "contrastive_temperature"): 0.1,
    ("train", "mirror"): 0.0,
    ("student", "stem_blocks"): 0,
    ("student", "reparam"): False,
    ("student", "tail_blocks"): 0,
    ("student", "tail_width"): 32,
    ("student", "inverted_stages"): 0,
    ("student", "expansion"): 2,
    ("export", "calibration"): "minmax",
    ("export", "float_tail"): False,
    ("data", "curated"): False,
    ("train", "views_per_epoch"): None,
    ("train", "turned_weight"): 1.0,
    ("train", "turned_yaw"): 30.0,
    ("train", "jitter"): 0.0,
    ("train", "self_weight"): 0.0,
    ("train", "jitter_shift"): 1.5,
    ("train", "jitter_scale"): 0.04,
    ("train", "jitter_rotate"): 4.0,
}


def training_inputs(cfg: RunConfig) -> dict[str, Any]:
    """The settings that decide what a run trains and ships: everything but :data:`NOT_TRAINING_INPUTS`, and
    settings of :data:`_ADDED_LATER` while at their default."""
    settings = cfg.to_dict()
    for *parents, leaf in (*NOT_TRAINING_INPUTS, *_ADDED_LATER):
        tree = settings
        for key in parents:
            tree = tree.get(key, {})  # {} when a whole section was dropped for being at its default
        path = (*parents, leaf)
        if leaf in tree and (path in NOT_TRAINING_INPUTS or tree[leaf] == _ADDED_LATER[path]):
            del tree[leaf]
    settings["train"]["init_from"] = parent_run(cfg)
    return settings


def parent_run(cfg: RunConfig) -> str | None:
    """The warm start's parent as ``runs/<name>``: the run of that name, wherever its folder lies (runs/, or
    reproduce's scratch folder in the cache of this or another machine). A location is neither a training input
    nor something to write into a committed file."""
    parent = cfg.train.init_from
    return f"runs/{Path(parent).name}" if parent else None


_Config = TypeVar("_Config", bound="DataclassInstance")


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _build(cls: type[_Config], values: dict[str, Any]) -> _Config:
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in hints:
            raise ValueError(f"unknown config key {key!r} for {cls.__name__}; known: {sorted(hints)}")
        default = _default(hints[key])
        section = dataclasses.is_dataclass(default)  # a nested section: built from its own sub-tree
        kwargs[key] = _build(type(default), value) if section else value
    return cls(**kwargs)


def _set(tree: dict[str, Any], dotted: str, raw: str) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = yaml.safe_load(raw)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_tree(path: Path) -> dict[str, Any]:
    """A config file's settings; ``base: other.yaml`` (relative to the file) supplies the ones it leaves out."""
    tree: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    base = tree.pop("base", None)
    return _merge(read_tree(path.parent / base), tree) if base else tree


def load_config(path: Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML run config (or a run folder's saved config.yaml) and apply ``key.sub=value`` overrides."""
    tree = read_tree(path) if path else {}
    tree.pop("config_hash", None)  # written by save_config, derived from the rest
    for item in overrides:
        key, _, raw = item.partition("=")
        if not _:
            raise ValueError(f"override {item!r} is not key=value")
        _set(tree, key, raw)
    return _build(RunConfig, tree)


def save_config(cfg: RunConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = cfg.to_dict()
    settings["train"]["init_from"] = parent_run(cfg)
    path.write_text(yaml.safe_dump({**settings, "config_hash": cfg.hash()}, sort_keys=False))
