"""LFW accuracy columns from the training runs, tied to the exact files benchmarked.

A student's accuracy comes from the ``runs/*/results.json`` whose ``onnx_sha256`` is the sha256 of the file
that was timed; anything else is shown but marked. Teachers have no per-file results: their numbers come
from ``runs/*/teachers_lfw.json`` (the evaluation with the most pairs, then the newest), and are tied to the
files through the teacher manifest, which the same evaluation wrote together with the files' sha256s.

The served ensemble concatenates the L2-normalised T1 and T2 embeddings, so its cosine is the mean of the
two cosines: its accuracy is the ``"sface+dlib (mean similarity)"`` entry. ``"sface+dlib"`` (the
standardised neuron space the students are distilled from) is kept beside it as ``neuron_space``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FIELDS = ("accuracy", "accuracy_std", "roc_auc", "tar_at_far_1e3", "pairs")
TEACHER_KEYS = {"sface": "sface", "dlib": "dlib", "ensemble": "sface+dlib (mean similarity)"}
NEURON_SPACE_KEY = "sface+dlib"


def _pick(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in FIELDS if k in result}


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root.parent)) if path.is_relative_to(root.parent) else str(path)


def student_runs(runs: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``results.json`` under ``runs`` with its path."""
    found = []
    for path in sorted(runs.glob("*/results.json")):
        try:
            found.append((path, json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("skipping unreadable %s: %s", path, exc)
    return found


def teacher_results(runs: Path) -> tuple[Path, dict[str, Any]] | None:
    """The ``teachers_lfw.json`` evaluated on the most pairs (then the newest)."""
    candidates = []
    for path in runs.glob("*/teachers_lfw.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("skipping unreadable %s: %s", path, exc)
            continue
        pairs = max((v.get("pairs", 0) for v in data.values() if isinstance(v, dict)), default=0)
        candidates.append((pairs, path.stat().st_mtime, path, data))
    if not candidates:
        return None
    _, _, path, data = max(candidates, key=lambda c: (c[0], c[1]))
    return path, data


def _student(model: dict[str, Any], runs: Path, found: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    sha, size = model["files"][0]["sha256"], model["files"][0]["bytes"]
    for path, results in found:
        served_otherwise = model.get("crops_per_face", 1) > 1 or bool(model.get("flip_average")) != bool(
            results.get("flip_average", False)
        )
        if results.get("onnx_sha256") == sha and served_otherwise and model.get("manifest_lfw"):
            # A served variant (mirror image, shifted crops) of a run's graph, which the run measured served
            # otherwise: the variant's own figure went through the service's engine into its manifest entry.
            return {
                **_pick(model["manifest_lfw"]),
                "source": model["source"],
                "sha256_check": f"match: the graph of {path.parent.name}, served as {model.get('served_how')} "
                "(accuracy through the engine, from the manifest)",
            }
        if results.get("onnx_sha256") == sha:
            check = "match" if results.get("onnx_bytes", size) == size else "MISMATCH: onnx_bytes differ"
            return {
                **_pick(results.get("lfw", {})),
                "source": _shown(path, runs),
                "sha256_check": check,
                "run_params": results.get("params"),
            }
    named = [(p, r) for p, r in found if model.get("run") and p.parent.name == model["run"]]
    if named:
        path, results = named[0]
        return {
            **_pick(results.get("lfw", {})),
            "source": _shown(path, runs),
            "sha256_check": f"MISMATCH: {path.parent.name} has onnx_sha256 {str(results.get('onnx_sha256'))[:12]}, "
            f"benchmarked file {sha[:12]}",
        }
    if model.get("manifest_lfw"):
        return {
            **_pick(model["manifest_lfw"]),
            "source": model["source"],
            "sha256_check": "unverified: no runs/*/results.json has this sha256 (accuracy from the manifest)",
        }
    return {"sha256_check": "no results: no runs/*/results.json has this sha256"}


def _teacher(model: dict[str, Any], teachers: tuple[Path, dict[str, Any]] | None, runs: Path) -> dict[str, Any]:
    if teachers is None:
        return {"sha256_check": "no results: no runs/*/teachers_lfw.json"}
    path, data = teachers
    result = data.get(TEACHER_KEYS[model["name"]])
    if result is None:
        return {"sha256_check": f"no results: {TEACHER_KEYS[model['name']]!r} missing in {path}"}
    files_ok = all(f["sha256_matches_manifest"] for f in model["files"])
    # The manifest's lfw entry was written by the same evaluation as teachers_lfw.json, under the key it names
    # (the ensemble is served as the mean of the teachers' similarities): equal accuracies tie the numbers to the
    # manifest, and so to the files' sha256s.
    manifest_lfw = model.get("manifest_lfw", {})
    manifest_key = manifest_lfw.get("key", TEACHER_KEYS[model["name"]])
    same_eval = manifest_lfw.get("accuracy") == data.get(manifest_key, {}).get("accuracy")
    if not files_ok:
        check = "MISMATCH: a file's sha256 differs from the teacher manifest"
    elif not same_eval:
        check = "unverified: the teacher manifest and teachers_lfw.json come from different evaluations"
    else:
        check = "match (via the teacher manifest)"
    entry = {**_pick(result), "source": _shown(path, runs), "sha256_check": check}
    if model["name"] == "ensemble" and NEURON_SPACE_KEY in data:
        entry["neuron_space"] = _pick(data[NEURON_SPACE_KEY])
    return entry


def attach(models: list[dict[str, Any]], runs: Path) -> dict[str, Any]:
    """Add an ``lfw`` entry to every model result; returns where the numbers came from."""
    found = student_runs(runs) if runs.is_dir() else []
    teachers = teacher_results(runs) if runs.is_dir() else None
    for model in models:
        if model["kind"] == "student":
            model["lfw"] = _student(model, runs, found)
        else:
            model["lfw"] = _teacher(model, teachers, runs)
    return {
        "runs": str(runs),
        "student_results": [_shown(p, runs) for p, _ in found],
        "teacher_results": None if teachers is None else _shown(teachers[0], runs),
    }
