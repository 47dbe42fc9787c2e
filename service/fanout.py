"""The photos of a request handled side by side, but only while that request has the engine to itself.

One request at a time leaves cores idle: its two photos are decoded and searched one after the other, while
JPEG decoding (libjpeg) and ONNX Runtime release the GIL and could run at once. Under load every core is
already busy with another request, and splitting a request only adds thread hand-offs (a build that split every
request measured 17 % fewer ``/verify`` per second at concurrency 4). So :class:`Fanout` counts
the requests inside the engine and spreads a request's photos over its spare threads only when that request
is the only one; otherwise they run one after the other in the request's own thread.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")


class Fanout:
    """Thread-safe; ``workers`` is how many photos of a lone request run at once (1: never side by side)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="photo") if workers > 1 else None
        self._inside = 0
        self._lock = threading.Lock()

    @contextmanager
    def request(self) -> Iterator[bool]:
        """Count a request for the ``with`` block; yields whether it is alone (may spread its photos)."""
        with self._lock:
            self._inside += 1
            alone = self._inside == 1
        try:
            yield alone
        finally:
            with self._lock:
                self._inside -= 1

    def map(self, function: Callable[[T], R], items: Sequence[T], spread: bool) -> list[R]:
        """``[function(item) for item in items]``; with ``spread``, up to ``workers`` items at once.

        The calling thread works through the items too. Every item started is finished before this returns or
        raises; after a failure no further item is started, and the exception raised is that of the first
        failing item in order, as in the one-after-the-other loop.
        """
        if not spread or self._pool is None or len(items) < 2:
            return [function(item) for item in items]
        results: list[R | None] = [None] * len(items)
        errors: list[BaseException | None] = [None] * len(items)
        todo = iter(range(len(items)))
        lock = threading.Lock()

        def drain() -> None:
            while True:
                with lock:
                    index = None if any(e is not None for e in errors) else next(todo, None)
                if index is None:
                    return
                try:
                    results[index] = function(items[index])
                except BaseException as exc:  # re-raised below in the caller's thread, in item order
                    errors[index] = exc

        # Each helper runs in a copy of the caller's context, so its log lines keep the request id.
        helpers = [
            self._pool.submit(contextvars.copy_context().run, drain) for _ in range(min(self.workers, len(items)) - 1)
        ]
        drain()
        for helper in helpers:
            helper.result()
        for error in errors:
            if error is not None:
                raise error
        return cast(list[R], results)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
