"""Interleaved timing: every case runs a little in every round, so a noisy neighbour hits all cases alike.

Timing model A for a minute and then model B lets a burst of background load (a training job, another
engineer's tests) land on one of them only. Here each round visits every case once, in an order rotated
from round to round, and each visit (a *slot*) repeats the case's call enough times to last ~``slot``
seconds, so a 0.3 ms student and a 300 ms teacher batch get comparable wall time per round. Rounds stop
at ``rounds`` or when ``budget`` seconds have passed (after at least one), whichever comes first.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

MAX_CALLS_PER_SLOT = 200


@dataclass(frozen=True)
class Case:
    """Something to time. ``steps`` run back to back as one call; each is timed on its own.

    A single-step case records its samples under ``key``. A multi-step case (the teacher ensemble: T1 then
    T2 on the same face) records each step under its own label and the sum under ``key``, so the parts and
    the whole come from the very same calls.
    """

    key: str
    steps: Sequence[tuple[str, Callable[[], object]]]


@dataclass
class Samples:
    """Seconds per call, by key."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    rounds: int = 0
    elapsed: float = 0.0

    def add(self, key: str, value: float) -> None:
        self.seconds.setdefault(key, []).append(value)


@dataclass(frozen=True)
class Stats:
    """Summary of one key's samples, in milliseconds per call."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    n: int

    def per(self, items: int) -> dict[str, float | int]:
        """As a JSON object, scaled to per-item milliseconds (e.g. per face of a batch)."""
        return {
            "median_ms": self.median_ms / items,
            "p90_ms": self.p90_ms / items,
            "mean_ms": self.mean_ms / items,
            "n": self.n,
        }


def summarise(values: Sequence[float]) -> Stats:
    ms = np.asarray(values, dtype=np.float64) * 1000.0
    return Stats(float(np.median(ms)), float(np.percentile(ms, 90)), float(ms.mean()), int(ms.size))


def _call(case: Case, samples: Samples | None) -> float:
    total = 0.0
    for label, step in case.steps:
        started = time.perf_counter()
        step()
        took = time.perf_counter() - started
        total += took
        if samples is not None and len(case.steps) > 1:
            samples.add(label, took)
    if samples is not None:
        samples.add(case.key, total)
    return total


def calls_per_slot(case: Case, slot: float) -> int:
    """Warm the case up (first calls allocate) and size its slot from the third call's duration."""
    took = min(_call(case, None) for _ in range(3))
    return max(1, min(MAX_CALLS_PER_SLOT, math.ceil(slot / max(took, 1e-6))))


def interleave(cases: Sequence[Case], rounds: int, budget: float, slot: float = 0.05) -> Samples:
    """Time ``cases`` round-robin (see the module docstring); returns every call's duration by key."""
    calls = {case.key: calls_per_slot(case, slot) for case in cases}
    samples = Samples()
    started = time.perf_counter()
    for index in range(rounds):
        shift = index % len(cases)
        for case in [*cases[shift:], *cases[:shift]]:
            for _ in range(calls[case.key]):
                _call(case, samples)
        samples.rounds = index + 1
        samples.elapsed = time.perf_counter() - started
        log.info("timing round %d/%d done (%.0f s of %.0f s budget)", index + 1, rounds, samples.elapsed, budget)
        if samples.elapsed >= budget:
            if index + 1 < rounds:
                log.warning("time budget reached after %d of %d rounds", index + 1, rounds)
            break
    return samples
