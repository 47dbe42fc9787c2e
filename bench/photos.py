"""Real-photo level: the service on photos as users upload them, a large-photo flood, LFW through the pipeline.

1. ``/verify`` one request at a time on the pairs of ``../shared/data/photos/master.csv`` (0.16-14 MP),
   interleaved request by request with the 250x250 LFW pairs, against one student server: median and p95
   of each, their ratio, and the accuracy of the served verdicts on ``master.csv``.
2. The same real pairs stage by stage in process (:mod:`bench.breakdown`): the student's share of the time,
   and the decode floor: each pair's slower photo decoded at the least Pillow's JPEG decoder can do (1/8 DCT
   scale; other formats in full), against the LFW pairs' own decode, so the real/LFW ratio no pipeline on this
   decoder can go below is measured in the same run.
3. A flood: 16 clients, each ``/verify`` carrying two ~40 MP JPEGs built here from a real photo pasted,
   enlarged, into a large canvas (two photos of one person, so the right verdict is "same"), against a fresh
   server: peak RSS (VmHWM) and RSS afterwards, p50/p95, every status code, overloaded 503s told apart from
   other 5xx, and ``/healthz`` latency polled throughout. Bounded: a fixed count, a deadline, socket timeouts.
4. LFW 10-fold through the full service pipeline (:class:`service.engine.Engine` on every deep-funneled image
   of ``pairs.txt``): accuracy against the manifest's published figure, and images without a face.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench import breakdown
from bench.lfw import IMAGES, PhotoPair
from bench.load import BOUNDARY, multipart
from bench.service import LoadPlan, RssSampler, _get, proc_status_kib, running
from service.config import Settings
from service.engine import Engine, Upload
from service.errors import ServiceError
from service.manifest import load_manifest
from training.evaluate import Pairs, cosine_scores, read_pairs, ten_fold

log = logging.getLogger(__name__)

FLOOD_CANVAS = (7700, 5150)  # 39.7 MP: just under the 40 MP default pixel limit
FLOOD_PHOTOS = ("img20.jpg", "img21.jpg")  # one person (master.csv: Yes)


@dataclass(frozen=True)
class PhotoPlan:
    rounds: int = 1  # passes over master.csv (300 pairs each), each real pair followed by an LFW pair
    flood_clients: int = 16
    flood_requests: int = 64
    flood_deadline: float = 240.0
    request_timeout: float = 60.0
    breakdown_pairs: int = 100
    lfw_pairs_per_fold: int | None = None  # None: all 600 per fold


def real_pairs(folder: Path) -> list[PhotoPair]:
    """The labelled pairs of ``master.csv``, bytes in memory."""
    rows = list(csv.DictReader((folder / "master.csv").open()))
    cache = {name: (folder / name).read_bytes() for name in {r[k] for r in rows for k in ("file_x", "file_y")}}
    return [
        PhotoPair(r["file_x"], r["file_y"], r["Decision"] == "Yes", cache[r["file_x"]], cache[r["file_y"]])
        for r in rows
    ]


def _post(connection: http.client.HTTPConnection, body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(len(body))}
    connection.request("POST", "/verify", body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = {}
    return response.status, parsed, dict(response.getheaders())


def _stats(seconds: Sequence[float]) -> dict[str, float | None]:
    ms = np.asarray(seconds) * 1000
    if not ms.size:
        return {"median_ms": None, "p95_ms": None, "mean_ms": None, "n": 0}
    return {
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
        "n": int(ms.size),
    }


def interleaved(port: int, real: Sequence[PhotoPair], lfw: Sequence[PhotoPair], plan: PhotoPlan) -> dict[str, Any]:
    """One request at a time: real pair i, then LFW pair i; latency of each, verdicts on the real pairs."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=plan.request_timeout)
    times: dict[str, list[float]] = {"real": [], "lfw": []}
    statuses: Counter[str] = Counter()
    correct = total = 0
    real_bodies, lfw_bodies = [multipart(p) for p in real], [multipart(p) for p in lfw]
    for index in range(plan.rounds * len(real)):
        for kind, body, pair in (
            ("real", real_bodies[index % len(real)], real[index % len(real)]),
            ("lfw", lfw_bodies[index % len(lfw)], None),
        ):
            started = time.perf_counter()
            status, parsed, _ = _post(connection, body)
            took = time.perf_counter() - started
            statuses[f"{kind} {status}"] += 1
            if status == 200:
                times[kind].append(took)
                if pair is not None and index < len(real):
                    total += 1
                    correct += parsed["verified"] == pair.same
    connection.close()
    real_stats, lfw_stats = _stats(times["real"]), _stats(times["lfw"])
    ratio = (
        real_stats["median_ms"] / lfw_stats["median_ms"] if real_stats["median_ms"] and lfw_stats["median_ms"] else None
    )
    return {
        "real": real_stats,
        "lfw": lfw_stats,
        "ratio_median": ratio,
        "statuses": dict(statuses),
        "master_accuracy": correct / total if total else None,
        "master_pairs": total,
    }


def _decode_seconds(data: bytes, smallest: bool) -> float:
    started = time.perf_counter()
    with Image.open(io.BytesIO(data)) as image:
        if smallest and image.format == "JPEG":
            image.draft(image.mode, (1, 1))  # libjpeg-turbo picks its smallest scale, 1/8
        image.load()
    return time.perf_counter() - started


def decode_floor(
    real: Sequence[PhotoPair], lfw: Sequence[PhotoPair], verify: dict[str, Any], rounds: int = 3
) -> dict[str, Any]:
    """The lowest real/LFW ``/verify`` ratio any pipeline decoding with Pillow can reach: the engine decodes a
    request's two photos side by side, so a real request costs at least the LFW request minus the LFW pair's
    decode plus the real pair's slower photo decoded at 1/8 scale. Pairs alternate real/LFW; best of ``rounds``.
    """
    real_s: list[float] = []
    lfw_s: list[float] = []
    for index in range(max(len(real), len(lfw))):
        for pairs, out, smallest in ((real, real_s, True), (lfw, lfw_s, False)):
            if index < len(pairs):
                pair = pairs[index]
                out.append(
                    min(max(_decode_seconds(d, smallest) for d in (pair.data1, pair.data2)) for _ in range(rounds))
                )
    real_ms, lfw_ms = 1000 * float(np.median(real_s)), 1000 * float(np.median(lfw_s))
    lfw_verify = verify["lfw"]["median_ms"]
    ratio = (lfw_verify - lfw_ms + real_ms) / lfw_verify if lfw_verify else None
    return {"real_decode_ms": real_ms, "lfw_decode_ms": lfw_ms, "lfw_verify_ms": lfw_verify, "ratio_floor": ratio}


def flood_photo(path: Path, canvas: tuple[int, int] = FLOOD_CANVAS) -> bytes:
    """A ~40 MP JPEG: the photo enlarged to a third of the canvas width, pasted onto a textured canvas."""
    rng = np.random.default_rng(len(path.name))
    texture = rng.integers(60, 200, size=(canvas[1] // 64 + 1, canvas[0] // 64 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(texture).resize(canvas, Image.Resampling.BICUBIC)
    with Image.open(path) as source:
        photo = source.convert("RGB")
    scale = canvas[0] / 3 / photo.width
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BICUBIC)
    image.paste(photo, (canvas[0] // 3, max(0, (canvas[1] - photo.height) // 2)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


class HealthPoller(threading.Thread):
    """GET /healthz every 100 ms on its own connection; keeps every latency (a failure counts as the timeout)."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.port, self.timeout = port, timeout
        self.latencies: list[float] = []
        self.failures = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.1):
            started = time.perf_counter()
            try:
                status, _ = _get(self.port, "/healthz", timeout=self.timeout)
                ok = status == 200
            except OSError:
                ok = False
            self.latencies.append(time.perf_counter() - started if ok else self.timeout)
            self.failures += not ok


def flood(port: int, pid: int, body: bytes, expected: bool, plan: PhotoPlan) -> dict[str, Any]:
    """``plan.flood_clients`` threads send ``body`` until ``plan.flood_requests`` are sent or the deadline."""
    lock, outcomes = threading.Lock(), Counter[str]()
    latencies: list[float] = []
    issued = [0]
    deadline = time.perf_counter() + plan.flood_deadline

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=plan.request_timeout)
        while True:
            with lock:
                if issued[0] >= plan.flood_requests or time.perf_counter() > deadline:
                    break
                issued[0] += 1
            started = time.perf_counter()
            try:
                status, parsed, headers = _post(connection, body)
                outcome = _outcome(status, parsed, headers, expected)
            except (OSError, http.client.HTTPException) as exc:
                outcome = f"client error {type(exc).__name__}"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=plan.request_timeout)
            with lock:
                outcomes[outcome] += 1
                latencies.append(time.perf_counter() - started)
        connection.close()

    rss = RssSampler(pid)
    health = HealthPoller(port)
    rss.start()
    health.start()
    started = time.perf_counter()
    workers = [threading.Thread(target=client, daemon=True) for _ in range(plan.flood_clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=plan.flood_deadline + plan.request_timeout + 5)
    wall = time.perf_counter() - started
    health.halt.set()
    rss.halt.set()
    health.join(timeout=10)
    time.sleep(3.0)  # idle: what the process keeps after the burst
    after = proc_status_kib(pid, "VmRSS") or 0
    bad = sum(n for outcome, n in outcomes.items() if outcome not in ("200 right verdict", "503 overloaded"))
    return {
        "clients": plan.flood_clients,
        "requests": issued[0],
        "wall_s": wall,
        "outcomes": dict(outcomes),
        "unexpected": bad,
        "latency": _stats(latencies),
        "body_bytes": len(body),
        "peak_rss_mib": (proc_status_kib(pid, "VmHWM") or 0) / 1024,
        "max_sampled_rss_mib": rss.max_kib / 1024,
        "rss_after_mib": after / 1024,
        "healthz": {
            **_stats(health.latencies),
            "polls": len(health.latencies),
            "max_ms": max(health.latencies, default=0.0) * 1000,
            "failures": health.failures,
        },
    }


def _outcome(status: int, parsed: dict[str, Any], headers: dict[str, str], expected: bool) -> str:
    if status == 200:
        return "200 right verdict" if parsed.get("verified") == expected else "200 WRONG verdict"
    code = (parsed.get("error") or {}).get("code", "?")
    if status == 503 and code == "overloaded" and headers.get("Retry-After", "").isdigit():
        return "503 overloaded"
    return f"{status} {code}"


def lfw_pipeline(manifest: Path, model: str | None, lfw: Path, per_fold: int | None) -> dict[str, Any]:
    """LFW 10-fold on the embeddings the service's engine makes from the deep-funneled photos."""
    files = sorted(f"lfw/{p.relative_to(lfw)}" for p in (lfw / IMAGES).glob("*/*.jpg"))
    pairs: Pairs = read_pairs(files, per_fold)
    engine = Engine.load(Settings(manifest=manifest, model=model, threads=2, log_level="WARNING"))
    needed = pairs.images()
    embeddings = np.zeros((len(files), engine.card.dim), np.float32)
    without = []
    started = time.perf_counter()
    for index in needed:
        data = (lfw / files[index].removeprefix("lfw/")).read_bytes()
        try:
            (face,) = engine.analyse([Upload("image", data, "image/jpeg")], require_single_face=False)
            embeddings[index] = face.embedding
        except ServiceError:
            without.append(files[index])
    result = ten_fold(cosine_scores(embeddings, pairs), pairs).to_dict()
    published = load_manifest(manifest).models[engine.card.name].lfw
    return {
        "images": int(len(needed)),
        "without_face": len(without),
        "without_face_files": without[:20],
        "accuracy": result["accuracy"],
        "accuracy_std": result["accuracy_std"],
        "roc_auc": result["roc_auc"],
        "pairs": result["pairs"],
        "published_accuracy": published.accuracy if published else None,
        "published_pairs": published.pairs if published else None,
        "seconds": time.perf_counter() - started,
    }


def run(
    manifest: Path,
    model: str | None,
    lfw_pairs: Sequence[PhotoPair],
    photos: Path,
    lfw: Path,
    plan: PhotoPlan,
    log_dir: Path,
) -> dict[str, Any]:
    """Every measurement of this level; a missing photo folder is reported, not raised."""
    if not (photos / "master.csv").is_file():
        return {"error": f"no {photos / 'master.csv'}"}
    real = real_pairs(photos)
    log_dir.mkdir(parents=True, exist_ok=True)
    serve = LoadPlan()
    result: dict[str, Any] = {"plan": plan.__dict__, "photos": str(photos)}
    with running(manifest, model, serve, log_dir / "service-photos.log") as server:
        log.info("real photos: %d master.csv pairs interleaved with LFW pairs, one at a time", len(real))
        result["interleaved"] = interleaved(server.port, real, lfw_pairs, plan)
    result["decode_floor"] = decode_floor(real, lfw_pairs, result["interleaved"])
    result["breakdown"] = breakdown.run(
        {"student": (manifest, model)}, real, threads=2, requests=min(plan.breakdown_pairs, len(real))
    )["student"]
    body = multipart(PhotoPair(*FLOOD_PHOTOS, True, *(flood_photo(photos / name) for name in FLOOD_PHOTOS)))
    with running(manifest, model, serve, log_dir / "service-flood.log") as server:
        log.info("flood: %d clients, %d requests of %.1f MB", plan.flood_clients, plan.flood_requests, len(body) / 1e6)
        result["flood"] = flood(server.port, server.process.pid, body, True, plan)
    log.info("LFW 10-fold through the service pipeline")
    result["lfw_pipeline"] = lfw_pipeline(manifest, model, lfw, plan.lfw_pairs_per_fold)
    return result


def markdown(result: dict[str, Any] | None) -> list[str]:
    """The report section of this level."""
    if not result:
        return ["Not run."]
    if "error" in result:
        return [f"Not run: {result['error']}."]
    inter, flood_, lfw = result["interleaved"], result["flood"], result["lfw_pipeline"]
    stages = result["breakdown"].get("stages", {})

    def ms(stats: dict[str, Any]) -> str:
        return "-" if stats["median_ms"] is None else f"{stats['median_ms']:.1f} ms (p95 {stats['p95_ms']:.1f})"

    accuracy = inter["master_accuracy"]
    lines = [
        "| /verify, one at a time, interleaved | median (p95) | requests |",
        "|---|--:|--:|",
        f"| real photos, master.csv pairs | {ms(inter['real'])} | {inter['real']['n']} |",
        f"| 250x250 LFW pairs | {ms(inter['lfw'])} | {inter['lfw']['n']} |",
        "",
        f"Real / LFW median: **{_fmt(inter['ratio_median'], '.2f')}x**; served verdicts right on master.csv: "
        f"{_fmt(None if accuracy is None else 100 * accuracy, '.2f')} % of {inter['master_pairs']} pairs.",
        "",
        "| Stage (real photos, in process) | median ms | share |",
        "|---|--:|--:|",
        *(f"| {name} | {s['median_ms']:.2f} | {s['share']:.0%} |" for name, s in stages.items()),
        "",
        "(Stages summed over a request's two photos, which the engine decodes and searches side by side: they can "
        "add up to more than the total.)",
        *_floor_lines(result.get("decode_floor")),
        "",
        f"Flood: {flood_['clients']} clients, {flood_['requests']} /verify of two ~40 MP JPEGs "
        f"({flood_['body_bytes'] / 1e6:.1f} MB per request) in {flood_['wall_s']:.1f} s: outcomes "
        f"{json.dumps(flood_['outcomes'])}; latency {ms(flood_['latency'])}; server peak RSS "
        f"{flood_['peak_rss_mib']:.0f} MiB, {flood_['rss_after_mib']:.0f} MiB 3 s after; /healthz max "
        f"{flood_['healthz']['max_ms']:.0f} ms over {flood_['healthz']['polls']} polls.",
        "",
        f"LFW 10-fold through the service pipeline: {100 * lfw['accuracy']:.2f} ± {100 * lfw['accuracy_std']:.2f} % "
        f"({lfw['pairs']} pairs; published {_fmt(_pct(lfw['published_accuracy']), '.2f')} %), AUC "
        f"{lfw['roc_auc']:.4f}; {lfw['without_face']} of {lfw['images']} images without a face.",
    ]
    return lines


def _floor_lines(floor: dict[str, Any] | None) -> list[str]:
    if not floor or floor.get("ratio_floor") is None:
        return []
    return [
        "",
        f"Decode floor: each real pair's slower photo decoded at 1/8 DCT scale, the least Pillow's JPEG decoder can "
        f"do (median {floor['real_decode_ms']:.2f} ms), against the LFW pair's full decode "
        f"({floor['lfw_decode_ms']:.2f} ms) in a {floor['lfw_verify_ms']:.1f} ms LFW /verify: no pipeline "
        f"decoding with Pillow goes below **{floor['ratio_floor']:.2f}x**.",
    ]


def _pct(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
