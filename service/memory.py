"""Giving freed heap memory back to the system after a burst of large decodes.

glibc keeps memory that ``free`` returned in its arenas (one per thread that allocated, up to 8 per core),
so after a burst of large uploads handled by many worker threads the process can hold hundreds of MB it no
longer uses. ``malloc_trim(0)`` returns the free pages of every arena; :mod:`service.budget` calls it when
the pixels in flight drop to zero after a burst (measured in ``bench/allocator.py``; see the README).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
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
