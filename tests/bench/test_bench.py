"""The benchmark: a --quick model-level run on the real models, plus its counting, bars and accuracy matching.

No assertion is about how fast anything is: the numbers must exist, be positive and be consistent.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench import accuracy, bars
from bench.__main__ import main
from bench.flops import count_macs
from bench.models import file_facts
from service.manifest import ManifestError, load_manifest
from training.paths import TEACHER_DIR

REPO = Path(__file__).resolve().parents[2]
STUDENTS = REPO / "models" / "manifest.json"
TEACHERS = TEACHER_DIR  # the git-ignored teacher cache (MOBILEID_CACHE moves it)
TEACHER_FILES = [TEACHERS / "manifest.json", TEACHERS / "sface_2021dec_fp32.onnx", TEACHERS / "dlib_resnet_v1.onnx"]


def quick(tmp_path: Path, *extra: str) -> dict[str, Any]:
    """``python -m bench --quick --models-only`` with one timing round into ``tmp_path``; the JSON it wrote."""
    main(
        [
            "--quick",
            "--models-only",
            "--repeats",
            "1",
            "--budget",
            "5",
            "--no-readme",
            "--out",
            str(tmp_path),
            "--runs",
            str(tmp_path / "no-runs"),
            *extra,
        ]
    )
    (written,) = tmp_path.glob("*-quick.json")
    assert (tmp_path / written.name.replace(".json", ".md")).is_file()
    assert (tmp_path / "accuracy_vs_speed-quick.png").stat().st_size > 0
    result: dict[str, Any] = json.loads(written.read_text())
    return result


def check_model(model: dict[str, Any]) -> None:
    assert model["params"] > 0 and model["onnx_bytes"] > 0
    assert model["macs_per_face"]["served"] == model["macs_per_face"]["one_pass"] * model["served_passes"] > 0
    assert model["flops_per_face"]["served"] == 2 * model["macs_per_face"]["served"]
    assert all(len(f["sha256"]) == 64 for f in model["files"])
    for threads in ("t1", "t2"):
        for batch in ("b1", "b32"):
            cell = model["timing"][threads][batch]
            for mode in ("one_pass", "served"):
                stats = cell[mode]
                assert stats["n"] >= 1 and 0 < stats["median_ms"] <= stats["p90_ms"], (model["name"], stats)
                assert stats["call_batch"] == stats["faces"] * (model["served_passes"] if mode == "served" else 1)
    assert "sha256_check" in model["lfw"]


def check_detection(detection: dict[str, Any]) -> None:
    assert set(detection["macs"]) == {"250x250", "640x480"}
    assert detection["macs"]["640x480"] > detection["macs"]["250x250"] > 0
    for threads in ("t1", "t2"):
        assert all(stats["median_ms"] > 0 for stats in detection["per_photo"][threads].values())


def test_quick_model_level_on_the_committed_students(tmp_path: Path) -> None:
    if not STUDENTS.is_file():
        pytest.skip(f"{STUDENTS.relative_to(REPO)} is not committed yet (the training pipeline publishes it)")
    result = quick(tmp_path, "--teachers", str(tmp_path / "no-teachers.json"))
    section = result["models"]
    assert section["rounds"] >= 1 and section["ort"]["intra_op_threads"] == [1, 2]
    students = [m for m in section["models"] if m["kind"] == "student"]
    assert students and result["headline"] in {m["name"] for m in students}
    for model in students:
        check_model(model)
        assert all(f["sha256_matches_manifest"] for f in model["files"])
    check_detection(section["detection"])
    assert {bar["verdict"] for bar in result["bars"]} == {"NOT MEASURED"}  # no ensemble, no service


@pytest.fixture(scope="module")
def teacher_cache() -> None:
    """The git-ignored teacher files, produced from the pip packages (as `python -m training teachers` does);
    a manifest of an older schema is rewritten (its LFW results are kept)."""
    if all(path.is_file() for path in TEACHER_FILES):
        try:
            load_manifest(TEACHER_FILES[0])
            return
        except ManifestError:
            pass
    build = pytest.importorskip("training.teachers.build", reason="needs the [training] extras")
    from training.teachers.manifest import write_teacher_manifest

    write_teacher_manifest(build.build_teachers())


def test_quick_model_level_with_the_teachers(tmp_path: Path, teacher_cache: None) -> None:
    result = quick(tmp_path, "--teachers", str(TEACHER_FILES[0]))
    by_name = {m["name"]: m for m in result["models"]["models"]}
    t1, t2, ensemble = by_name["sface"], by_name["dlib"], by_name["ensemble"]
    for model in (t1, t2, ensemble):
        check_model(model)
    assert ensemble["params"] == t1["params"] + t2["params"]
    assert ensemble["macs_per_face"]["served"] == t1["macs_per_face"]["served"] + t2["macs_per_face"]["served"]
    # T1's and T2's samples are the two halves of the ensemble's calls.
    assert t1["timing"]["t1"]["b1"]["served"]["n"] == ensemble["timing"]["t1"]["b1"]["served"]["n"]
    for student in (m for m in by_name.values() if m["kind"] == "student"):
        ratios = student["vs_ensemble"]
        assert ratios["compression"] == pytest.approx(ensemble["params"] / student["params"])
        assert all(v > 0 for cells in ratios["speedup"].values() for cell in cells.values() for v in cell.values())


def test_macs_of_conv_gemm_matmul_are_counted_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.normal(size=(8, 3, 3, 3)),
        "dw": rng.normal(size=(8, 1, 3, 3)),
        "fc": rng.normal(size=(10, 8 * 4 * 4)),
        "m": rng.normal(size=(10, 5)),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),  # 8x8x8 out, 3*3*3 each
        helper.make_node("Conv", ["a", "dw"], ["b"], strides=[2, 2], pads=[1, 1, 1, 1], group=8),  # 8x4x4, 9
        helper.make_node("Flatten", ["b"], ["c"]),
        helper.make_node("Gemm", ["c", "fc"], ["d"], transB=1),  # 10 outputs x 128
        helper.make_node("MatMul", ["d", "m"], ["y"]),
    ]  # 5 outputs x 10
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    expected = 8 * 8 * 8 * 27 + 8 * 4 * 4 * 9 + 10 * 128 + 5 * 10
    assert count_macs(path, (1, 3, 8, 8)) == expected
    assert count_macs(path, (2, 3, 8, 8)) == 2 * expected


def test_an_int8_graph_counts_the_parameters_and_macs_of_its_float_source(tmp_path: Path) -> None:
    """Quantization changes how weights are stored, not how many there are nor the multiplies they take."""
    import torch

    from training.export import export_onnx
    from training.quantize import quantize_int8
    from training.student import Student, StudentConfig

    torch.manual_seed(0)
    model = Student(StudentConfig(32, [8, 16, 16, 32], downsample="stride", blocks=[1, 0, 0], hidden=16, out_dim=8))
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)):
        torch.nn.init.uniform_(bn.bias, -0.5, 0.5)  # trained-looking: a non-zero bias in every folded conv
    fp32, int8, tail = tmp_path / "fp32.onnx", tmp_path / "int8.onnx", tmp_path / "tail.onnx"
    export_onnx(model, 32, fp32)
    crops = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    quantize_int8(fp32, int8, crops)
    quantize_int8(fp32, tail, crops, keep_tail=True)  # the last full conv and the head stay float
    assert {n.op_type for n in onnx.load(str(int8)).graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    (float_params, float_bytes, _), (int8_params, int8_bytes, _) = file_facts(fp32), file_facts(int8)
    assert int8_params == float_params > 0 and int8_bytes < float_bytes
    assert file_facts(tail)[0] == float_params and int8_bytes < file_facts(tail)[1] < float_bytes
    macs = count_macs(fp32, (1, 3, 32, 32))
    assert count_macs(int8, (1, 3, 32, 32)) == count_macs(tail, (1, 3, 32, 32)) == macs > 0


def _models(speedup: float, compression: float) -> list[dict[str, Any]]:
    return [
        {
            "name": "s",
            "served_passes": 2,
            "vs_ensemble": {
                "compression": compression,
                "speedup": {"t2": {"b1": {"served": speedup, "one_pass": 2 * speedup}}},
            },
        }
    ]


def _service(student_rps: float, p95: float, rss: float, errors: int = 0) -> dict[str, Any]:
    def level(rps: float, c: int) -> dict[str, Any]:
        return {"concurrency": c, "requests_per_s": rps, "p95_ms": p95, "errors": errors, "not_sent": 0}

    return {
        "student": {"levels": [level(student_rps, 1), level(student_rps, 4)], "peak_rss_mib": rss},
        "ensemble": {"levels": [level(10.0, 1), level(10.0, 4)], "peak_rss_mib": 900.0},
    }


def test_bars_follow_the_measured_numbers() -> None:
    verdicts = [b.verdict for b in bars.model_bars(_models(95.0, 60.0), "s")]
    assert verdicts == ["PASS", "PASS"]
    verdicts = [b.verdict for b in bars.model_bars(_models(89.0, 51.0), "s")]
    assert verdicts == ["FAIL", "FAIL"]
    assert [b.verdict for b in bars.service_bars(_service(60.0, 40.0, 200.0))] == ["PASS"] * 4
    assert [b.verdict for b in bars.service_bars(_service(40.0, 60.0, 400.0, errors=1))] == ["FAIL"] * 4
    assert {b.verdict for b in bars.service_bars(None)} == {"NOT MEASURED"}
    failed = bars.service_bars({"student": {"error": "exited with 1"}, "ensemble": _service(1, 1, 1)["ensemble"]})
    assert {b.verdict for b in failed} == {"FAIL"}


def test_accuracy_is_tied_to_the_benchmarked_file(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    lfw = {"accuracy": 0.9, "accuracy_std": 0.01, "pairs": 6000}
    (run / "results.json").write_text(json.dumps({"onnx_sha256": "a" * 64, "onnx_bytes": 10, "lfw": lfw}))

    def student(sha: str) -> dict[str, Any]:
        return {
            "name": "s",
            "kind": "student",
            "run": "r1",
            "files": [{"sha256": sha, "bytes": 10}],
            "manifest_lfw": {},
            "source": "m",
        }

    matched, stale = student("a" * 64), student("b" * 64)
    # The same graph served from four shifted crops: its own (manifest) figure, not the run's one-crop one.
    shifted = {**student("a" * 64), "crops_per_face": 4, "manifest_lfw": {"accuracy": 0.92, "pairs": 6000}}
    accuracy.attach([matched, stale, shifted], tmp_path / "runs")
    assert matched["lfw"]["sha256_check"] == "match" and matched["lfw"]["accuracy"] == 0.9
    assert stale["lfw"]["sha256_check"].startswith("MISMATCH")
    assert shifted["lfw"]["accuracy"] == 0.92 and shifted["lfw"]["sha256_check"].startswith("match: the graph of r1")
    flipped = {**student("a" * 64), "flip_average": True, "manifest_lfw": {"accuracy": 0.93, "pairs": 6000}}
    accuracy.attach([flipped], tmp_path / "runs")  # the run measured it without the mirror image
    assert flipped["lfw"]["accuracy"] == 0.93


def test_service_level_alternates_bursts_and_reports_cpu(tmp_path: Path) -> None:
    """Two real servers measured together: every level's requests split into bursts, both processes' CPU."""
    if not STUDENTS.is_file():
        pytest.skip(f"{STUDENTS.relative_to(REPO)} is not committed yet")
    from bench.lfw import PhotoPair
    from bench.service import LoadPlan, run

    data = (REPO / "tests" / "data" / "Colin_Powell_0040.jpg").read_bytes()
    pairs = [PhotoPair("a.jpg", "b.jpg", True, data, data)]
    plan = LoadPlan(concurrency=(1, 2), requests=7, bursts=3, warmup=1, level_deadline=60.0)
    targets = {"one": (STUDENTS, None), "two": (STUDENTS, None), "broken": (tmp_path / "absent.json", None)}
    result = run(targets, pairs, plan, tmp_path)
    assert "error" in result["broken"] and "levels" not in result["broken"]
    for name in ("one", "two"):
        levels = result[name]["levels"]
        assert [level["concurrency"] for level in levels] == [1, 2]
        for level in levels:
            assert level["bursts"] == 3 and level["ok"] == level["sent"] == level["requests"] == 7
            assert level["requests_per_s"] > 0 and level["p50_ms"] > 0
            assert level["server_cpu_ms_per_request"] > 0 and level["client_cpu_ms_per_request"] > 0
        assert result[name]["peak_rss_mib"] > 0


def test_decode_floor_puts_the_real_pairs_decode_in_place_of_the_lfw_pairs() -> None:
    from PIL import Image

    from bench.lfw import PhotoPair
    from bench.photos import decode_floor

    data = Path(__file__).resolve().parents[1] / "data"
    small = [(data / f"{name}.jpg").read_bytes() for name in ("Laura_Bush_0001", "Laura_Bush_0021")]
    buffer = io.BytesIO()  # a 2000x2000 JPEG: decoded at 1/8 it is 250x250
    Image.open(data / "Laura_Bush_0001.jpg").resize((2000, 2000)).save(buffer, "JPEG", quality=90)
    lfw = [PhotoPair("a", "b", True, *small)]
    real = [PhotoPair("big", "a", True, buffer.getvalue(), small[0])]
    floor = decode_floor(real, lfw, {"lfw": {"median_ms": 10.0}}, rounds=2)
    assert floor["real_decode_ms"] > 0 and floor["lfw_decode_ms"] > 0
    expected = (10.0 - floor["lfw_decode_ms"] + floor["real_decode_ms"]) / 10.0
    assert floor["ratio_floor"] == pytest.approx(expected)


def test_quick_pass_study_counts_discordant_pairs_and_mcnemar_by_hand() -> None:
    from bench.quick_pass import _scores, mcnemar

    assert mcnemar(0, 0) == 1.0
    assert mcnemar(5, 0) == pytest.approx(2 / 32)
    assert mcnemar(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)  # C(10, 0..2) / 2^10, both tails
    assert mcnemar(8, 2) == mcnemar(2, 8)
    one, other = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    found = {"served": {"a": one, "b": one, "c": other}, "one_pass_640": {"a": one, "b": other, "c": one}}
    pairs = [("a", "b", True, 0), ("a", "c", False, 0), ("a", "missing", True, 0)]
    result = _scores(found, pairs, threshold=0.5)
    assert result["pairs"] == 2 and result["pairs_without_a_face"] == 1
    assert result["served"] == {"accuracy_at_served_threshold": 1.0, "auc": 1.0}
    assert result["one_pass_640"] == {"accuracy_at_served_threshold": 0.0, "auc": 0.0}
    assert result["discordant"] == {"served_right_only": 2, "one_pass_right_only": 0}
    assert result["mcnemar_p"] == pytest.approx(0.5)
