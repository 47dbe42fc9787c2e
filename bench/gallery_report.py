"""Markdown of the identification level, its bars, and the README section it regenerates."""

from __future__ import annotations

from typing import Any

README_START = "<!-- identification:start -->"
README_END = "<!-- identification:end -->"
P95_BAR_MS = 30.0


def bars(result: dict[str, Any]) -> list[dict[str, Any]]:
    service = result.get("service", {})
    out = []
    embedded = service.get("sqlite", {}).get("identify")
    if embedded:
        size = max(row["size"] for row in result["speed"] if row["backend"] == "sqlite")
        measured = embedded["client_ms"]["p95"]
        out.append(
            {
                "name": f"/identify of a 250x250 photo, one at a time, {size:,}-face gallery, embedded backend, "
                f"p95 (client-side; the search's share of server time: {embedded['search_share']:.0%})",
                "measured": f"{measured:.1f} ms",
                "target": f"< {P95_BAR_MS:.0f} ms",
                "verdict": "PASS" if measured < P95_BAR_MS else "FAIL",
            }
        )
    for backend, entry in service.items():
        errors = entry["identify"]["errors"] + sum(level["errors"] for level in entry["enrol"])
        out.append(
            {
                "name": f"{backend}: errors in the service runs",
                "measured": str(errors),
                "target": "0",
                "verdict": "PASS" if errors == 0 else "FAIL",
            }
        )
    return out


def _accuracy_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| model | set | enrolled | mated / non-mated searches | rank-1 % | FNIR @ FPIR 1e-2 | FNIR @ FPIR 1e-3 "
        "| at the default threshold: FNIR / FPIR | images/s embedded |",
        "|---|---|--:|--:|--:|--:|--:|---|--:|",
    ]
    for row in rows:
        fnir = [f"{a['fnir']:.1%} (T={a['threshold']:.3f}, {a['false_positives']} FP)" for a in row["at_fpir"]]
        default = row["default_threshold"]
        lines.append(
            f"| {row['model']} `{row['name']}` | {row['set']} | {row['enrolled']:,} | "
            f"{row['mated_searches']:,} / {row['nonmated_searches']:,} | {row['rank1']:.1%} | {fnir[0]} | "
            f"{fnir[1]} | {default['fnir']:.1%} / {default['fpir']:.1%} (T={default['threshold']:.4f}) | "
            f"{row['images_per_s']:.0f} |"
        )
    return lines


def _speed_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| backend | enrolled faces | search p50 ms | p95 ms | p99 ms | searches/s (1 client) | (2 clients) | recall@1 "
        "| recall@5 | bulk fill s | open s (load / index build) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['backend']} | {row['size']:,} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {row['qps']:.0f} | {row.get('qps_2_clients', float('nan')):.0f} | "
            f"{row['recall_at_1']:.4f} | {row['recall_at_5']:.4f} | "
            f"{row['fill_s']:.1f} | {row['open_s']:.1f} |"
        )
    return lines


def _service_table(service: dict[str, Any], sizes: dict[str, int]) -> list[str]:
    lines = [
        "| backend | gallery | /identify requests | client p50 / p95 / p99 ms | server took_ms p95 "
        "| search_ms p50 / p95 | search share | enrolments/s (1 client) | (4 clients) |",
        "|---|--:|--:|---|--:|---|--:|--:|--:|",
    ]
    for backend, entry in service.items():
        ident, enrol = entry["identify"], entry["enrol"]
        c, s = ident["client_ms"], ident["search_ms"]
        lines.append(
            f"| {backend} | {sizes.get(backend, 0):,} | {ident['requests']} | {c['p50']:.1f} / {c['p95']:.1f} / "
            f"{c['p99']:.1f} | {ident['server_ms']['p95']:.1f} | {s['p50']:.2f} / {s['p95']:.2f} | "
            f"{ident['search_share']:.0%} | {enrol[0]['per_s']:.1f} | {enrol[1]['per_s']:.1f} |"
        )
    return lines


def body(result: dict[str, Any]) -> list[str]:
    machine = result["machine"]
    sizes: dict[str, int] = {}
    for row in result.get("speed", []):
        sizes[row["backend"]] = max(sizes.get(row["backend"], 0), row["size"])
    lines = [
        f"Measured {result['run']['date']} on {machine['slug']} ({machine['cpu']}, {machine['cpus']} CPUs); "
        f"load average before / after: {result['load_before'][0]:.2f} / {result['load_after'][0]:.2f} "
        "(the cores were shared with other jobs: timings are upper bounds).",
        "",
    ]
    lines += [
        f"- **{bar['verdict']}** {bar['name']}: measured {bar['measured']}, target {bar['target']}"
        for bar in result["bars"]
    ]
    lines += ["", "Open-set identification (one enrolled face per subject, exact search):", ""]
    lines += _accuracy_table(result["accuracy"])
    distractors = result["distractors"]
    lines += [
        "",
        f"Search against gallery size, in process, one query at a time (top 5 subjects; real probes: LFW "
        f"faces; enrolled faces: {distractors['with_face']:,} real distractor faces from {distractors['sources']}"
        "); recall against exact search:",
        "",
    ]
    lines += _speed_table(result["speed"])
    lines += ["", "The service (`python -m service`, 2 threads) on the largest galleries, over HTTP on 127.0.0.1:", ""]
    lines += _service_table(result.get("service", {}), sizes)
    return lines


def document(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"# Identification benchmark, {result['run']['date']}",
            "",
            f"`{result['run']['command']}`",
            "",
            *body(result),
            "",
        ]
    )


def readme_section(result: dict[str, Any], report_name: str) -> str:
    head = [
        README_START,
        f"<!-- generated by `python -m bench --identification` from bench/results/{report_name}; "
        "do not edit by hand -->",
        "",
        f"Full report: [bench/results/{report_name}](bench/results/{report_name}).",
        "",
    ]
    return "\n".join([*head, *body(result), "", README_END])
