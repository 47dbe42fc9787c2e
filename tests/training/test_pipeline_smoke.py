"""End-to-end smoke run of the training pipeline on a tiny slice (CI): every stage, real teachers, real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from training.__main__ import main
from training.paths import DATA

pytestmark = pytest.mark.skipif(not (DATA / "lfw/pairs.txt").exists(), reason="../shared/data is not beside the repo")

CONFIG = Path(__file__).resolve().parents[2] / "training/configs/smoke.yaml"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    assert main(["all", "--config", str(CONFIG), "--runs", str(runs)]) == 0
    return runs / "smoke"


def test_teachers_reproduce_on_lfw_slice(smoke_run: Path) -> None:
    teachers = json.loads((smoke_run / "teachers_lfw.json").read_text())
    assert teachers["sface"]["pairs"] == 300
    # SFace scores ~99.4% on all of LFW through this pipeline; a broken detector or alignment drops it far below.
    assert teachers["sface"]["accuracy"] >= 0.97
    assert teachers["dlib"]["accuracy"] >= 0.95


def test_selection_and_student_shapes(smoke_run: Path) -> None:
    selection = json.loads((smoke_run / "selection.json").read_text())
    assert selection["count"] == 48 == len(set(selection["selected"]))
    assert all(0 <= i < 256 for i in selection["selected"])
    assert len(selection["scores"]["unary"]) == 256
    assert (smoke_run / "selection.png").stat().st_size > 10_000
    session = ort.InferenceSession(str(smoke_run / "student.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.zeros((3, 3, 64, 64), np.float32)})[0]
    assert out.shape == (3, 48)


def test_loss_goes_down_and_results_are_written(smoke_run: Path) -> None:
    results = json.loads((smoke_run / "results.json").read_text())
    losses = [h["loss"] for h in results["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert results["lfw"]["pairs"] == 300
    assert 0.0 <= results["lfw"]["accuracy"] <= 1.0
    assert (smoke_run / "results.md").read_text().startswith("# Run `smoke`")
    assert (smoke_run / "roc.png").exists()


def test_warm_start_on_half_the_images(smoke_run: Path) -> None:
    """A second run starts from the smoke student (train.init_from) on a seeded half of the training images."""
    runs = smoke_run.parent
    common = ["--config", str(CONFIG), "--runs", str(runs), "--set", "name=smoke-warm"]
    options = ["--set", f"train.init_from={smoke_run}", "--set", "data.fraction=0.5", "--set", "train.epochs=1"]
    options += ["--set", "train.mirror=0.5"]  # mirrored student inputs, targets of the unmirrored views
    assert main(["select", *common]) == 0
    assert main(["train", *common, *options]) == 0
    cold = json.loads((smoke_run / "train_data.json").read_text())
    warm = json.loads((runs / "smoke-warm/train_data.json").read_text())
    assert warm["images"] == round(cold["images"] / 2) and warm["samples"] == 2 * warm["images"]
    # Its first epoch starts from trained weights: a lower loss than the cold run's first epoch.
    cold_loss = json.loads((smoke_run / "history.json").read_text())[0]["loss"]
    history = json.loads((runs / "smoke-warm/history.json").read_text())
    assert history[0]["loss"] < cold_loss
    # Held-out scores of the flip-averaged student and of one pass (what a student served without mirror sees).
    assert {"holdout_accuracy", "holdout_1pass_accuracy", "holdout_1pass_cos_to_teacher"} <= set(history[0])

    # Shipped as int8: the float graph stays beside it, and both are scored on the LFW slice.
    int8 = [*common, *options, "--set", "export.quantize=int8"]
    assert main(["export", *int8]) == 0 and main(["evaluate", *int8]) == 0
    warm = runs / "smoke-warm"
    graph = onnx.load(str(warm / "student.onnx")).graph
    assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)
    results = json.loads((warm / "results.json").read_text())
    assert results["quantization"]["cosine_mean"] > 0.95  # int8 vs float on held-out crops
    assert results["lfw"]["pairs"] == results["lfw_fp32"]["pairs"] == 300
    assert abs(results["lfw"]["accuracy"] - results["lfw_fp32"]["accuracy"]) < 0.1


def test_recipe_levers_run_end_to_end_and_ship_the_plain_net(smoke_run: Path) -> None:
    """The three levers of issue 13 together on one epoch: a whitened-PCA target, re-parameterised convs and the
    contrastive term. What is exported is the plain net: same convolutions and parameters as the smoke student."""
    runs = smoke_run.parent
    common = ["--config", str(CONFIG), "--runs", str(runs), "--set", "name=smoke-levers"]
    common += ["--set", "selection.method=pca", "--set", "student.reparam=true", "--set", "train.epochs=1"]
    common += ["--set", "train.contrastive_weight=0.5"]
    for stage in ("select", "train", "export", "evaluate"):
        assert main([stage, *common]) == 0
    levers = runs / "smoke-levers"
    basis = np.load(levers / "neurons.npz")["basis"]
    assert basis.shape == (256, 48)
    assert json.loads((levers / "selection.json").read_text())["selected"] == list(range(48))
    convs = [
        [n.op_type for n in onnx.load(str(d / "student.onnx")).graph.node if n.op_type == "Conv"]
        for d in (smoke_run, levers)
    ]
    assert len(convs[0]) == len(convs[1])
    results = [json.loads((d / "results.json").read_text()) for d in (smoke_run, levers)]
    assert results[0]["params"] == results[1]["params"]
    assert results[1]["lfw"]["pairs"] == 300


def test_a_carried_rebuild_goes_on_in_a_fresh_run_folder(smoke_run: Path, tmp_path: Path) -> None:
    """``reproduce --carry``: the rebuild's checkpoints outlive its run folders (a machine that is lost), and the
    same command on an empty folder resumes from them instead of training again."""
    import torch

    carry = tmp_path / "carry"
    command = ["reproduce", str(CONFIG), "--carry", str(carry)]
    assert main([*command, "--runs", str(tmp_path / "first")]) == 0
    carried = torch.load(carry / "smoke" / "checkpoint.pt", weights_only=False)
    assert carried["epoch"] == 3 and "opt" not in carried  # a finished round carries its weights only
    assert "3 of 3 epochs trained" in (carry / "README.md").read_text()
    first = json.loads((tmp_path / "first" / "smoke" / "history.json").read_text())

    assert main([*command, "--runs", str(tmp_path / "second")]) == 0
    again = tmp_path / "second" / "smoke"
    assert json.loads((again / "history.json").read_text()) == first  # resumed: no epoch trained twice
    assert json.loads((again / "results.json").read_text())["lfw"]["pairs"] == 300


def test_side_by_side_scores_both_graphs_on_the_same_held_out_crops(smoke_run: Path) -> None:
    """The reproduce command's second table: a graph scored beside itself gives the same numbers, within."""
    from training.config import load_config
    from training.reproduce import side_by_side
    from training.stages.run import Run

    run = Run(load_config(smoke_run / "config.yaml"), smoke_run.parent)
    ok, rows = side_by_side(run, smoke_run / "student.onnx", smoke_run)
    assert ok and len(rows) == 2 + 3
    for row in rows[2:]:
        _, what, published, rebuilt, within, _ = row.split("|")
        assert what.strip().startswith("held-out") and published == rebuilt and within.strip() == "yes"
        assert -1.0 <= float(published) <= 1.0  # a 3-epoch smoke student's cosine to its target may be < 0
