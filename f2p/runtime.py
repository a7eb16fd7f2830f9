"""Host process settings that XLA on CPU needs to run large particle sets at full speed."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from absl import logging

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_configured = False


def configure_host_allocator() -> bool:
    """Keeps freed memory in the process instead of returning it to the OS after each call.

    XLA on CPU allocates its temporaries per execution. With glibc's defaults, every buffer of
    tens of MB (an N x N matrix for N = 2048 is 16 MB) is a fresh mmap, so each SVGD step pays
    page faults and page zeroing for all of them: measured here, that doubled the time of the
    exact median bandwidth at N = 2048. Raising the mmap and trim thresholds lets malloc reuse
    the same pages from step to step; the cost is that the process keeps its peak heap.
    XLA's worker threads allocate from per-thread arenas, whose heaps are capped at 64 MB and
    fall back to a fresh mmap for anything bigger (an SVGD step's temporaries at N = 2048:
    16,000 page faults and ~20 ms of system time per step), so all threads share the main
    arena (M_ARENA_MAX = 1; a few large allocations per step do not contend for its lock).
    Call it before the first JAX computation: a thread keeps the arena it first allocated from.

    Idempotent; a no-op (returning False) where glibc's mallopt is unavailable, and when the
    environment variable F2P_KEEP_DEFAULT_MALLOC is set.

    Returns:
      True when the allocator was configured.
    """
    global _configured
    if _configured:
        return True
    if os.environ.get("F2P_KEEP_DEFAULT_MALLOC"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        logging.info("mallopt unavailable: keeping the default allocator settings")
        return False
    settings = ((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, (1 << 31) - 1),
                (_M_TOP_PAD, 1 << 28), (_M_ARENA_MAX, 1))
    _configured = all(mallopt(parameter, value) == 1 for parameter, value in settings)
    return _configured
