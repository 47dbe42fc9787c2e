"""The benchmark's Markdown: the full report file, and the short section regenerated inside README.md."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench.photos import markdown as photo_lines
from training.report import replace_section

log = logging.getLogger(__name__)

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def _ms(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"
    return f"{stats['median_ms']:.3g} [{stats['p90_ms']:.3g}]"


def _num(value: float | None, fmt: str = ".3g", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{suffix}"


def _lfw(model: dict[str, Any]) -> tuple[str, str]:
    lfw = model.get("lfw", {})
    if "accuracy" not in lfw:
        return "-", lfw.get("sha256_check", "-")
    std = f" ± {100 * lfw['accuracy_std']:.2f}" if "accuracy_std" in lfw else ""
    return f"{100 * lfw['accuracy']:.2f}{std} ({lfw.get('pairs', '?')} pairs)", lfw.get("sha256_check", "-")


def _rows(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(row label, pass mode) for a model: students served with several passes per face (mirror, shifted crops)
    get a served row and a one-pass row."""
    if model["served_passes"] > 1:
        how = model.get("served_how", "crop + mirror")
        return [(f"{model['label']} (served: {how})", "served"), (f"{model['label']} (one pass)", "one_pass")]
    return [(model["label"], "served")]


def model_table(models: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| Model | Params | Compression | ONNX MB | MMACs/face | ms/face b1, 1 thr | ms/face b1, 2 thr "
        "| ms/face b32, 1 thr | ms/face b32, 2 thr | Speed-up (2 thr, b1) | LFW accuracy % | sha256 vs results |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for model in models:
        ratios = model.get("vs_ensemble")
        compression = _num(ratios["compression"], ".1f", "x") if ratios else "-"
        compression = "1x" if model["kind"] == "ensemble" else compression
        accuracy, check = _lfw(model)
        for label, mode in _rows(model):
            timing = model["timing"]
            cells = [_ms(timing.get(t, {}).get(b, {}).get(mode)) for b in ("b1", "b32") for t in ("t1", "t2")]
            speedup = _num(ratios["speedup"]["t2"]["b1"][mode], ".1f", "x") if ratios else "-"
            lines.append(
                f"| {label} | {model['params']:,} | {compression} | {model['onnx_bytes'] / 1e6:.2f} "
                f"| {model['macs_per_face'][mode] / 1e6:.1f} | {' | '.join(cells)} | {speedup} "
                f"| {accuracy} | {check} |"
            )
    return lines


def bar_lines(bars: list[dict[str, Any]]) -> list[str]:
    lines = []
    for bar in bars:
        measured = _num(bar["measured"], ".4g", bar.get("unit", ""))
        note = f" ({bar['note']})" if bar["note"] else ""
        lines.append(f"- **{bar['verdict']}** {bar['name']}: measured {measured}, target {bar['target']}{note}")
    return lines


def detection_table(detection: dict[str, Any] | None) -> list[str]:
    if not detection:
        return ["No detector was benchmarked."]
    lines = ["| Photo | MMACs | ms/photo, 1 thr | ms/photo, 2 thr |", "|---|--:|--:|--:|"]
    for size, macs in detection["macs"].items():
        cells = [_ms(detection["per_photo"].get(t, {}).get(size)) for t in ("t1", "t2")]
        lines.append(f"| {size} | {macs / 1e6:.1f} | {' | '.join(cells)} |")
    return lines


def service_table(service: dict[str, Any] | None) -> list[str]:
    if not service:
        return ["Not run (`--skip-service` or `--models-only`)."]
    lines = [
        "| Model | Concurrency | Requests | OK | Errors | Not sent | req/s | p50 ms | p95 ms | p99 ms | Peak RSS MiB "
        "| server CPU ms/req | client CPU ms/req |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name in ("student", "ensemble"):
        result = service.get(name)
        if not result:
            continue
        if "error" in result:
            lines.append(f"| {name} | failed: {result['error'].splitlines()[0]} |||||||||| ")
            continue
        label = f"{name} ({result['info']['name'] if result.get('info') else result['model']})"
        for level in result["levels"]:
            cells = [
                label,
                level["concurrency"],
                level["requests"],
                level["ok"],
                level["errors"],
                level["not_sent"],
                f"{level['requests_per_s']:.1f}",
                *(_num(level[k], ".1f") for k in ("p50_ms", "p95_ms", "p99_ms")),
                f"{result['peak_rss_mib']:.0f}",
                _num(level.get("server_cpu_ms_per_request"), ".2f"),
                _num(level.get("client_cpu_ms_per_request"), ".2f"),
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def breakdown_table(breakdown: dict[str, Any] | None, service: dict[str, Any] | None) -> list[str]:
    if not breakdown:
        return ["Not run."]
    names = list(breakdown)
    stages = list(dict.fromkeys(s for name in names for s in breakdown[name]["stages"]))
    head = " | ".join(f"{n}: median ms | share | under load ms" for n in names)
    lines = [f"| Stage | {head} |", "|---|" + "--:|--:|--:|" * len(names)]
    for stage in stages:
        cells = []
        for name in names:
            stats = breakdown[name]["stages"].get(stage, {})
            load = ((service or {}).get(name) or {}).get("server_stages", {}).get(stage, {})
            cells += [
                _num(stats.get("median_ms"), ".2f"),
                _num(stats.get("share"), ".0%"),
                _num(load.get("per_request_ms"), ".2f"),
            ]
        lines.append(f"| {stage} | {' | '.join(cells)} |")
    return lines


def _header(result: dict[str, Any]) -> list[str]:
    machine, run = result["machine"], result["run"]
    lines = [
        f"# Benchmark {run['date']} on {machine['slug']}",
        "",
        f"`{run['command']}` — {machine['cpu']}, {machine['cpus']} CPUs available, Python {machine['python']}, "
        f"ONNX Runtime {machine['onnxruntime']}; load average {machine['load_before'][0]:.2f} before, "
        f"{machine['load_after'][0]:.2f} after (1 min); {run['seconds']:.0f} s in all.",
        "",
    ]
    if run["quick"]:
        lines += ["> **Quick mode**: smoke-check counts, not numbers to publish.", ""]
    if machine["load_before"][0] > 0.5 * machine["cpus"]:
        lines += [
            f"> **Busy machine**: load average {machine['load_before'][0]:.2f} on {machine['cpus']} CPUs "
            "when the run started; timings are inflated and noisy.",
            "",
        ]
    return lines


def _method(result: dict[str, Any]) -> list[str]:
    models = result.get("models") or {}
    ort = models.get("ort", {})
    return [
        "## Method",
        "",
        f"- Model level: ONNX Runtime {ort.get('version', '?')}, CPU, intra-op threads 1 and 2, inter-op 1, "
        f"spinning {'on' if ort.get('spinning') else 'off (as the service)'}; every case timed round-robin, "
        f"{models.get('rounds', '?')} rounds in {models.get('seconds', '?')} s; cells are median [p90] ms per face.",
        "- Ensemble = T1 then T2 on the same face(s) in one timed call; T1's and T2's rows are the halves of "
        "those calls. Compression and speed-up are ensemble / student. A flip-averaging student is served as the "
        "crop and its mirror (2 passes per face): the speed-up bars use that served cost.",
        "- Params = floating-point initializer elements of the ONNX file(s); MACs = Conv + Gemm + MatMul from "
        "shape inference, FLOPs = 2 x MACs (in the JSON).",
        "- Service: `python -m service` under uvicorn on 127.0.0.1, FACE_THREADS=2, real 250x250 LFW pairs "
        "(pairs.txt), fixed request count per concurrency level, keep-alive connections; the student's and the "
        "ensemble's servers are up together and each level's requests go in "
        f"{((result.get('service') or {}).get('plan') or {}).get('bursts', 1)} bursts alternating between them "
        "(student, ensemble, ensemble, student, ...). Load generator on the "
        "same machine, in the benchmark's process: `http.client`, one thread and connection per concurrent "
        "client, request bodies built before the timing; server and client CPU ms/req = the processes' user + "
        "system CPU over the level / requests sent (all threads). Peak RSS = server VmHWM. Stage breakdown: the "
        "service's engine in-process, one request at a time (median of per-request sums); the engine decodes and "
        "searches the two photos of a lone request side by side, so the stages of a request, summed over its "
        'photos, can add up to more than its total; "under load" = the server\'s /metrics over all load levels, '
        "mean wall ms per request (inflated by the concurrent requests sharing the CPUs).",
    ]


def document(result: dict[str, Any]) -> str:
    """The full Markdown report of one run."""
    models = (result.get("models") or {}).get("models", [])
    lines = _header(result)
    lines += ["## Bars", "", *bar_lines(result["bars"]), ""]
    lines += ["## Models (ONNX Runtime; ms per face, median [p90])", "", *model_table(models), ""]
    lines += [
        "## Face detection (YuNet in ONNX Runtime, decoding and NMS included; ms per photo)",
        "",
        *detection_table((result.get("models") or {}).get("detection")),
        "",
    ]
    lines += ["## Service: POST /verify with two 250x250 LFW photos", "", *service_table(result.get("service")), ""]
    lines += [
        "## One /verify, stage by stage",
        "",
        *breakdown_table(result.get("breakdown"), result.get("service")),
        "",
    ]
    lines += [
        "## Real photos (master.csv), large-photo flood, LFW through the service",
        "",
        *photo_lines(result.get("photos")),
        "",
    ]
    lines += _method(result)
    return "\n".join(lines) + "\n"


def readme_section(result: dict[str, Any], report_name: str, plot_name: str) -> str:
    """The short section between the README markers: bars, the model table and the service table."""
    models = (result.get("models") or {}).get("models", [])
    lines = [
        README_START,
        f"<!-- generated by `python -m bench` from bench/results/{report_name}; do not edit by hand -->",
        "",
        f"Measured {result['run']['date']} on {result['machine']['slug']} ({result['machine']['cpu']}); "
        f"full report: [bench/results/{report_name}](bench/results/{report_name}).",
        "",
        *bar_lines(result["bars"]),
        "",
        *model_table(models),
        "",
        *service_table(result.get("service")),
        "",
        *photo_lines(result.get("photos")),
        "",
        f"![LFW accuracy vs speed](bench/results/{plot_name})",
        "",
        README_END,
    ]
    return "\n".join(lines)


def update_readme(readme: Path, section: str) -> bool:
    """Replace the text between the markers; False (with a message) if the file or a marker is missing."""
    if not replace_section(readme, README_START, README_END, section):
        log.info("%s or its %s ... %s markers are missing: README section skipped", readme, README_START, README_END)
        return False
    log.info("README section regenerated in %s", readme)
    return True
