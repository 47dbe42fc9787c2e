"""Service-level benchmark: the real service under uvicorn, driven over HTTP with real LFW photo pairs.

``python -m service`` is started as a subprocess on 127.0.0.1 with ``FACE_*`` settings, once per model
compared (all up at once: an idle server takes no CPU), and ``POST /verify`` is sent a fixed number of times
at each concurrency level by a pool of threads, each with its own keep-alive connection. Each level's requests
go in a few bursts that alternate between the servers (A B B A ...): the machine's speed drifts over a run
(neighbours, a shared host) and a ratio of two servers measured minutes apart would measure the drift too.
Every burst stops by itself: at its request count, or at its deadline (requests not started by then are
counted as not sent), and every request has a socket timeout. Peak memory is the server
process's ``VmHWM`` (its resident high-water mark since start, models included), and its ``VmRSS`` is also
sampled during the load. The server's own per-stage timings come from its Prometheus ``/metrics``.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.lfw import PhotoPair
from bench.load import Burst, multipart, run_level, send, summarise

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
_STAGE = re.compile(r'^face_pipeline_stage_duration_seconds_(sum|count)\{stage="(\w+)"\} (\S+)$', re.M)


class ServiceBenchError(RuntimeError):
    """The service did not start, or stopped answering."""


@dataclass(frozen=True)
class LoadPlan:
    concurrency: tuple[int, ...] = (1, 4, 8, 16)
    requests: int = 200
    warmup: int = 5
    threads: int = 2
    bursts: int = 4
    """Each level's requests go in this many bursts, alternating between the servers measured."""
    request_timeout: float = 30.0
    level_deadline: float = 180.0
    startup_timeout: float = 180.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def proc_status_kib(pid: int, field: str) -> int | None:
    """A ``kB`` field (``VmHWM``, ``VmRSS``) of ``/proc/<pid>/status``; None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads) so far; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    startup_seconds: float = 0.0

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class _Timed:
    """The bursts of one level on one server, with the CPU the server and this process spent on them."""

    bursts: list[Burst]
    server_cpu_s: float | None = 0.0
    client_cpu_s: float = 0.0

    def add(self, server: Server, bodies: Sequence[bytes], concurrency: int, count: int, plan: LoadPlan) -> None:
        server_before, client_before = process_cpu_seconds(server.process.pid), _own_cpu_seconds()
        deadline = plan.level_deadline / plan.bursts
        self.bursts.append(send(server.port, bodies, concurrency, count, deadline, plan.request_timeout))
        server_after = process_cpu_seconds(server.process.pid)
        self.client_cpu_s += _own_cpu_seconds() - client_before
        if self.server_cpu_s is not None and server_before is not None and server_after is not None:
            self.server_cpu_s += server_after - server_before
        else:
            self.server_cpu_s = None

    def summary(self, concurrency: int) -> dict[str, Any]:
        level = summarise(self.bursts, concurrency)
        sent = max(level["sent"], 1)
        level["client_cpu_ms_per_request"] = self.client_cpu_s / sent * 1000
        if self.server_cpu_s is not None:
            level["server_cpu_ms_per_request"] = self.server_cpu_s / sent * 1000
        return level


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _wait_ready(server: Server, timeout: float) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if server.process.poll() is not None:
            raise ServiceBenchError(f"the service exited with {server.process.returncode}:\n{server.tail()}")
        try:
            if _get(server.port, "/readyz", timeout=2.0)[0] == 200:
                server.startup_seconds = time.perf_counter() - started
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.2)
    raise ServiceBenchError(f"the service was not ready after {timeout:.0f} s:\n{server.tail()}")


@contextmanager
def running(
    manifest: Path, model: str | None, plan: LoadPlan, log_path: Path, settings: dict[str, str] | None = None
) -> Iterator[Server]:
    """``python -m service`` on a free port of 127.0.0.1, ready (``/readyz`` 200) on entry, stopped on exit.

    ``settings``: more ``FACE_*`` variables; the gallery is a file beside the log unless they name one.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACE_")}  # no operator settings leak in
    env.update(
        FACE_HOST="127.0.0.1",
        FACE_PORT=str(_free_port()),
        FACE_MANIFEST=str(manifest),
        FACE_THREADS=str(plan.threads),
        FACE_LOG_LEVEL="WARNING",
        FACE_GALLERY_URL=f"sqlite:///{log_path.with_suffix('.gallery.db')}",
    )
    env.update(settings or {})
    if model:
        env["FACE_MODEL"] = model
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = Server(process, int(env["FACE_PORT"]), log_path)
    try:
        _wait_ready(server, plan.startup_timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


class RssSampler(threading.Thread):
    """Samples the server's ``VmRSS`` every 50 ms while the load runs; keeps the maximum."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.max_kib = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.05):
            self.max_kib = max(self.max_kib, proc_status_kib(self.pid, "VmRSS") or 0)


def stage_totals(port: int) -> dict[str, tuple[float, float]]:
    """``stage -> (seconds, count)`` of the server's pipeline stage histogram."""
    status, body = _get(port, "/metrics")
    if status != 200:
        return {}
    totals: dict[str, list[float]] = {}
    for kind, stage, value in _STAGE.findall(body.decode()):
        totals.setdefault(stage, [0.0, 0.0])[0 if kind == "sum" else 1] = float(value)
    return {stage: (pair[0], pair[1]) for stage, pair in totals.items()}


def _stage_means(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], requests: int
) -> dict[str, Any]:
    """Per stage over the load: mean ms per call (per photo or per request) and per /verify request."""
    means = {}
    for stage, (seconds, count) in after.items():
        seconds0, count0 = before.get(stage, (0.0, 0.0))
        if count > count0:
            means[stage] = {
                "mean_ms": (seconds - seconds0) / (count - count0) * 1000,
                "calls": int(count - count0),
                "per_request_ms": (seconds - seconds0) / max(requests, 1) * 1000,
            }
    return means


def _split(count: int, parts: int) -> list[int]:
    """``count`` as ``parts`` near-equal positive counts (fewer parts when ``count`` is small)."""
    parts = max(1, min(parts, count))
    return [count // parts + (i < count % parts) for i in range(parts)]


def measure(servers: dict[str, Server], bodies: Sequence[bytes], plan: LoadPlan) -> dict[str, dict[str, Any]]:
    """Every concurrency level on every server, the servers' bursts alternating (A B B A ...), so that a change
    in the machine's speed during the run hits every server alike; memory, stage timings and /info of each."""
    warm = {
        name: run_level(s.port, bodies, 1, plan.warmup, plan.level_deadline, plan.request_timeout)
        for name, s in servers.items()
    }
    before = {name: stage_totals(s.port) for name, s in servers.items()}
    samplers = {name: RssSampler(s.process.pid) for name, s in servers.items()}
    for sampler in samplers.values():
        sampler.start()
    levels: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for concurrency in plan.concurrency:
        log.info("%s: %d requests each at concurrency %d", " and ".join(servers), plan.requests, concurrency)
        timed = {name: _Timed([]) for name in servers}
        for index, count in enumerate(_split(plan.requests, plan.bursts)):
            for name in list(servers) if index % 2 == 0 else list(servers)[::-1]:
                timed[name].add(servers[name], bodies, concurrency, count, plan)
        for name in servers:
            levels[name].append(timed[name].summary(concurrency))
    results = {}
    for name, server in servers.items():
        samplers[name].halt.set()
        samplers[name].join()
        stages = _stage_means(before[name], stage_totals(server.port), sum(level["sent"] for level in levels[name]))
        status, info = _get(server.port, "/info")
        results[name] = {
            "threads": plan.threads,
            "pairs": len(bodies),
            "startup_s": server.startup_seconds,
            "warmup_errors": warm[name]["errors"],
            "levels": levels[name],
            "peak_rss_mib": (proc_status_kib(server.process.pid, "VmHWM") or 0) / 1024,
            "max_sampled_rss_mib": samplers[name].max_kib / 1024,
            "server_stages": stages,
            "info": json.loads(info) if status == 200 else None,
        }
    return results


def run(
    targets: dict[str, tuple[Path, str | None]], pairs: Sequence[PhotoPair], plan: LoadPlan, log_dir: Path
) -> dict[str, Any]:
    """Benchmark every ``name -> (manifest, model)`` with the same photos: all servers up at once (an idle one
    takes no CPU), their bursts alternating (:func:`measure`)."""
    results: dict[str, Any] = {"plan": {**plan.__dict__, "concurrency": list(plan.concurrency)}}
    log_dir.mkdir(parents=True, exist_ok=True)
    bodies = [multipart(pair) for pair in pairs]
    with ExitStack() as stack:
        servers = {}
        for name, (manifest, model) in targets.items():
            results[name] = {"manifest": str(manifest), "model": model}
            try:
                servers[name] = stack.enter_context(running(manifest, model, plan, log_dir / f"service-{name}.log"))
            except ServiceBenchError as exc:
                log.error("service benchmark of %s failed: %s", name, exc)
                results[name]["error"] = str(exc)
        for name, measured in measure(servers, bodies, plan).items():
            results[name].update(measured)
    return results
