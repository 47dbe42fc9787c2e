"""What glibc keeps after a burst of large decodes in threads, per allocator setting: ``python -m bench.allocator``.

Each variant runs in a fresh subprocess: 16 threads (the service's worker threads under a flood) each decode
a few large images as the service does (full-resolution PNG: decode, RGB, box-reduce; and a JPEG decoded at
full resolution, as the crop from full-resolution pixels does), drop them, and go idle. Reported: peak RSS
(VmHWM), RSS once idle, and RSS after ``malloc_trim(0)`` (what :mod:`service.memory` calls when the pixel
budget empties). Variants: glibc defaults, ``MALLOC_ARENA_MAX=2``, and jemalloc by ``LD_PRELOAD`` when
``libjemalloc.so.2`` is installed. Writes ``bench/results/allocator-<date>-<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.machine import describe
from bench.service import proc_status_kib
from training.paths import REPO

JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")


def _images() -> list[bytes]:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (250, 375, 3), dtype=np.uint8)
    image = Image.fromarray(noise).resize((4500, 3000), Image.Resampling.BICUBIC)  # 13.5 MP
    out = []
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **({"compress_level": 1} if fmt == "PNG" else {"quality": 85}))
        out.append(buffer.getvalue())
    return out


def child(threads: int, rounds: int) -> dict[str, float | None]:
    """The burst itself (run in the subprocess)."""
    from service.imaging import decode
    from service.memory import release_free_memory

    images = _images()
    base = (proc_status_kib(os.getpid(), "VmRSS") or 0) / 1024
    barrier = threading.Barrier(threads)

    def work(index: int) -> None:
        barrier.wait()
        for round_ in range(rounds):
            data = images[(index + round_) % len(images)]
            decoded = decode(data, max_bytes=1 << 30, max_pixels=1 << 30, min_side=640)
            if decoded.full is None:  # JPEG: the full-resolution read of a small face's region
                decoded.full_region((0, 0, 400, 400))
            del decoded

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    time.sleep(1.0)
    idle = (proc_status_kib(os.getpid(), "VmRSS") or 0) / 1024
    trimmed = release_free_memory()
    after_trim = (proc_status_kib(os.getpid(), "VmRSS") or 0) / 1024
    out: dict[str, float | None] = {
        "baseline_mib": base,
        "peak_mib": (proc_status_kib(os.getpid(), "VmHWM") or 0) / 1024,
        "idle_mib": idle,
        "after_trim_mib": after_trim if trimmed else None,
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.allocator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.threads, args.rounds)))
        return {}
    variants: dict[str, dict[str, str]] = {"glibc defaults": {}, "MALLOC_ARENA_MAX=2": {"MALLOC_ARENA_MAX": "2"}}
    if JEMALLOC.is_file():
        variants["jemalloc (LD_PRELOAD)"] = {"LD_PRELOAD": str(JEMALLOC)}
    machine = describe()
    rows = {}
    for name, extra in variants.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
        command = [
            sys.executable,
            "-m",
            "bench.allocator",
            "--child",
            "--threads",
            str(args.threads),
            "--rounds",
            str(args.rounds),
        ]
        output = subprocess.run(
            command, env={**env, **extra}, cwd=REPO, capture_output=True, text=True, check=True, timeout=600
        )
        rows[name] = json.loads(output.stdout.strip().splitlines()[-1])
        print(name, rows[name], flush=True)
    result = {
        "date": date.today().isoformat(),
        "machine": machine,
        "threads": args.threads,
        "rounds": args.rounds,
        "variants": rows,
    }
    stem = args.out / f"allocator-{result['date']}-{machine['slug']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# Memory after a burst of large decodes in {args.threads} threads ({result['date']})",
        "",
        f"Each thread decodes {args.rounds} 13.5 MP images (PNG, and JPEG at full resolution) as the service "
        "does, then all go idle.",
        "",
        "| allocator | baseline MiB | peak MiB | idle MiB | after malloc_trim MiB |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, row in rows.items():
        trim = "-" if row["after_trim_mib"] is None else f"{row['after_trim_mib']:.0f}"
        lines.append(f"| {name} | {row['baseline_mib']:.0f} | {row['peak_mib']:.0f} | {row['idle_mib']:.0f} | {trim} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
