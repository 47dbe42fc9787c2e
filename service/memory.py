"""Giving freed heap memory back to the system after a burst of large decodes.

glibc keeps memory that ``free`` returned in its arenas (one per thread that allocated, up to 8 per core),
so after a burst of large uploads handled by many worker threads the process can hold hundreds of MB it no
longer uses. ``malloc_trim(0)`` returns the free pages of every arena; :mod:`service.budget` calls it when
the pixels in flight drop to zero after a burst (measured in ``bench/allocator.py``; see the README), on a
thread of its own (:class:`Trimmer`): a trim takes about a millisecond and no request should wait for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable
from functools import cache

log = logging.getLogger(__name__)


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim with
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; False where the C library has no ``malloc_trim``."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class Trimmer:
    """Runs ``trim`` (default :func:`release_free_memory`) on a daemon thread of its own whenever :meth:`request`
    is called.

    Requests that come while a trim runs are folded into one more trim after it. The thread starts with the
    first request (nothing runs at import or construction).
    """

    def __init__(self, trim: Callable[[], object] = release_free_memory) -> None:
        self._trim = trim
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="malloc-trim", daemon=True)
                self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            self._trim()
