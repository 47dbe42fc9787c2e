"""The budget of decoded pixels in flight: what keeps memory bounded whatever clients send.

Every decode reserves the pixels it is about to make (read from the image header, so before any is made)
and gives them back when the image is dropped. A request that does not fit waits, up to a timeout, for
others to finish; then it is refused with ``503 overloaded`` and a ``Retry-After`` header instead of pushing
the process over its memory limit. A reservation larger than the whole budget is cut to the budget, so one
allowed photo can always be decoded when nothing else is.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from service.errors import Overloaded

log = logging.getLogger(__name__)


class PixelBudget:
    """A counting semaphore over pixels, shared by the worker threads. Thread-safe."""

    def __init__(
        self, capacity: int, wait_seconds: float, on_idle: Callable[[], object] | None = None, idle_after: int = 0
    ) -> None:
        """``on_idle`` runs (outside the lock) when the budget empties after at least ``idle_after`` pixels
        were given back since it last ran: the moment to return freed memory to the system."""
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self.on_idle = on_idle
        self.idle_after = idle_after
        self._used = 0
        self._released = 0
        self._changed = threading.Condition()

    @property
    def in_use(self) -> int:
        return self._used

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` for the ``with`` block; raise :class:`Overloaded` if they are not free in time."""
        need = max(0, min(int(pixels), self.capacity))
        self._acquire(need)
        try:
            yield
        finally:
            self._release(need)

    def _acquire(self, need: int) -> None:
        deadline = time.monotonic() + self.wait_seconds
        with self._changed:
            while self._used + need > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    retry = max(1, math.ceil(self.wait_seconds))
                    log.warning("pixel budget exhausted", extra={"pixels": need, "in_use": self._used})
                    raise Overloaded(
                        f"the server is decoding {self._used:,} of its {self.capacity:,} pixel budget and this "
                        f"image needs {need:,}; retry in {retry} s",
                        retry_after=retry,
                    )
                self._changed.wait(left)
            self._used += need

    def _release(self, need: int) -> None:
        with self._changed:
            self._used -= need
            self._released += need
            idle = self._used == 0 and self._released >= self.idle_after and self.on_idle is not None
            if idle:
                self._released = 0
            self._changed.notify_all()
        if idle and self.on_idle is not None:
            self.on_idle()
