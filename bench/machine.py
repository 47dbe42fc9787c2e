"""The machine a benchmark ran on: CPU, CPUs available, versions, load, and a short name for result files."""

from __future__ import annotations

import os
import platform
import re
import socket
from pathlib import Path
from typing import Any

import onnxruntime as ort

from service.config import available_cpus


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def slug(cpu: str, cpus: int) -> str:
    """``AMD EPYC 7B13 64-Core Processor`` with 2 CPUs -> ``amd-epyc-7b13-2cpu``: the CPU, not the host name
    (container host names are random), plus the CPUs this process may use."""
    name = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|\d+-core|@.*$", " ", cpu.lower())
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "cpu"
    return f"{name}-{cpus}cpu"


def describe() -> dict[str, Any]:
    cpu, cpus = cpu_model(), available_cpus()
    return {
        "slug": slug(cpu, cpus),
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cpus": cpus,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "platform": platform.platform(),
        "load_before": list(os.getloadavg()),
    }
