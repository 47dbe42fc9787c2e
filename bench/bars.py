"""The bars the product is held to, each computed from the numbers just measured (never typed in).

MobileID (AAAI 2016) reports 51.6x compression and 90x speed-up of its student over a teacher ensemble;
the service bars come from the product's requirements. A bar whose inputs were not measured in this run
(``--models-only``, no teachers, a failed server) is reported as not measured, never as passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SPEEDUP = 90.0
COMPRESSION = 51.6
SERVICE_RPS_RATIO = 5.0
RPS_CONCURRENCY = 4
P95_MS = 50.0
P95_CONCURRENCY = 1
RSS_MIB = 300.0
REAL_PHOTO_RATIO = 1.6
FLOOD_RSS_MIB = 1024.0
HEALTHZ_MS = 1000.0
LFW_POINTS = 0.1


@dataclass(frozen=True)
class Bar:
    name: str
    target: str
    measured: float | None
    passed: bool | None
    note: str = ""
    unit: str = ""

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "NOT MEASURED"
        return "PASS" if self.passed else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "measured": self.measured,
            "unit": self.unit,
            "verdict": self.verdict,
            "note": self.note,
        }


def _check(name: str, target: str, measured: float | None, ok: bool, note: str = "", unit: str = "") -> Bar:
    return Bar(name, target, measured, None if measured is None else ok, note, unit)


def model_bars(models: list[dict[str, Any]], headline: str | None) -> list[Bar]:
    student = next((m for m in models if m["name"] == headline and "vs_ensemble" in m), None)
    ratios = student["vs_ensemble"] if student else None
    speedup = ratios["speedup"].get("t2", {}).get("b1", {}).get("served") if ratios else None
    compression = ratios["compression"] if ratios else None
    passes = student["served_passes"] if student else 1
    note = (
        f"served cost: {passes} passes per face ({student.get('served_how', 'crop + mirror') if student else ''}, "
        f"batch {passes}); one pass: "
        f"{ratios['speedup']['t2']['b1']['one_pass']:.1f}x"
        if ratios and student and passes > 1
        else ""
    )
    return [
        _check(
            f"{headline}: speed-up per face vs teacher ensemble, ORT, 2 threads, batch 1",
            f">= {SPEEDUP:g}x",
            speedup,
            speedup is not None and speedup >= SPEEDUP,
            note,
            "x",
        ),
        _check(
            f"{headline}: fewer parameters than the teacher ensemble",
            f">= {COMPRESSION:g}x",
            compression,
            compression is not None and compression >= COMPRESSION,
            unit="x",
        ),
    ]


def _level(result: dict[str, Any] | None, concurrency: int) -> dict[str, Any] | None:
    if not result or "levels" not in result:
        return None
    return next((level for level in result["levels"] if level["concurrency"] == concurrency), None)


def _failed_server(service: dict[str, Any]) -> str | None:
    """The first error of a server that did not start or stopped answering, if any."""
    for name in ("student", "ensemble"):
        if "error" in (service.get(name) or {}):
            return f"{name} server failed: {service[name]['error'].splitlines()[0]}"
    return None


def service_bars(service: dict[str, Any] | None) -> list[Bar]:
    service = service or {}
    failure = _failed_server(service)
    if failure is not None:  # a server that never answered fails every service bar: it is an error, not a gap
        return [Bar(bar.name, bar.target, bar.measured, False, failure, bar.unit) for bar in _service_bars(service)]
    return _service_bars(service)


def _service_bars(service: dict[str, Any]) -> list[Bar]:
    student, ensemble = service.get("student"), service.get("ensemble")
    s4, e4 = _level(student, RPS_CONCURRENCY), _level(ensemble, RPS_CONCURRENCY)
    ratio = s4["requests_per_s"] / e4["requests_per_s"] if s4 and e4 and e4["requests_per_s"] > 0 else None
    levels = [level for result in (student, ensemble) if result and "levels" in result for level in result["levels"]]
    failed = sum(level["errors"] + level["not_sent"] for level in levels) if student and ensemble and levels else None
    p95_level = _level(student, P95_CONCURRENCY)
    p95 = p95_level["p95_ms"] if p95_level else None
    rss = student.get("peak_rss_mib") if student else None
    p95_name = f"service: student p95 latency of /verify (two 250x250 photos), concurrency {P95_CONCURRENCY}"
    if p95_level and p95 is None:
        p95_bar = Bar(p95_name, f"< {P95_MS:g} ms", None, False, "no request succeeded", " ms")
    else:
        p95_bar = _check(p95_name, f"< {P95_MS:g} ms", p95, p95 is not None and p95 < P95_MS, unit=" ms")
    return [
        _check(
            f"service: /verify requests/s, student vs teacher ensemble, concurrency {RPS_CONCURRENCY}",
            f">= {SERVICE_RPS_RATIO:g}x",
            ratio,
            ratio is not None and ratio >= SERVICE_RPS_RATIO,
            unit="x",
        ),
        _check(
            "service: errors (non-200, failed or unsent requests), both models, every level",
            "0",
            None if failed is None else float(failed),
            failed == 0,
        ),
        p95_bar,
        _check(
            "service: student server peak RSS (VmHWM)",
            f"< {RSS_MIB:g} MiB",
            rss,
            rss is not None and rss < RSS_MIB,
            unit=" MiB",
        ),
    ]


def photo_bars(photos: dict[str, Any] | None) -> list[Bar]:
    """Bars of the real-photo level (:mod:`bench.photos`); all not measured when it did not run."""
    photos = photos if photos and "error" not in photos else {}
    inter, flood, lfw = photos.get("interleaved", {}), photos.get("flood", {}), photos.get("lfw_pipeline", {})
    ratio = inter.get("ratio_median")
    rss, bad = flood.get("peak_rss_mib"), flood.get("unexpected")
    health = flood.get("healthz", {}).get("max_ms")
    accuracy, published = lfw.get("accuracy"), lfw.get("published_accuracy")
    shift = None if accuracy is None or published is None else 100 * abs(accuracy - published)
    without = lfw.get("without_face")
    same_pairs = lfw.get("pairs") == lfw.get("published_pairs")
    return [
        _check(
            "real photos: /verify median on master.csv pairs vs two 250x250 LFW photos, one at a time, same run",
            f"<= {REAL_PHOTO_RATIO:g}x",
            ratio,
            ratio is not None and ratio <= REAL_PHOTO_RATIO,
            unit="x",
        ),
        _check(
            "flood (16 clients, two ~40 MP JPEGs per /verify): server peak RSS (VmHWM)",
            f"< {FLOOD_RSS_MIB:g} MiB",
            rss,
            rss is not None and rss < FLOOD_RSS_MIB,
            unit=" MiB",
        ),
        _check(
            "flood: answers other than 200 with the right verdict or 503 overloaded",
            "0",
            None if bad is None else float(bad),
            bad == 0,
        ),
        _check(
            "flood: slowest /healthz during the flood",
            f"< {HEALTHZ_MS:g} ms",
            health,
            health is not None and health < HEALTHZ_MS and not flood.get("healthz", {}).get("failures"),
            unit=" ms",
        ),
        _check(
            "LFW 10-fold through the service pipeline vs the published accuracy",
            f"within {LFW_POINTS:g} points",
            shift,
            shift is not None and shift <= LFW_POINTS + 1e-9 and same_pairs,
            f"{100 * accuracy:.2f} % vs {100 * published:.2f} %" if shift is not None else "",
            " points",
        ),
        _check(
            "LFW deep-funneled images without a face, service pipeline",
            "0",
            None if without is None else float(without),
            without == 0,
        ),
    ]
