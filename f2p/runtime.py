"""Host process settings that XLA on CPU needs to run particle sets at full speed."""

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


WIDE_VECTORS_FLAG = "--xla_cpu_prefer_vector_width=512"


def cpu_has_avx512() -> bool:
    """True when /proc/cpuinfo lists avx512f (False where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return any(line.startswith("flags") and " avx512f" in line for line in cpuinfo)
    except OSError:
        return False


def configure_xla_cpu() -> bool:
    """Asks XLA's CPU compiler for 512-bit vector code on CPUs with AVX-512.

    XLA emits 256-bit vector code by default even where AVX-512 is available. The SVGD step's
    elementwise fusions (the kernel exp, the median's counting passes) run over N^2 entries;
    measured here, 512-bit code takes the step at N = 2048, D = 96 from 17.8 to 14.6 ms (the
    matmuls are unchanged: they are YNNPACK's own code). XLA reads its flags once, when JAX
    creates the CPU backend: call this before the first JAX computation. Flags are process
    wide, so every JAX computation of the process (a benchmark's baselines included) gets them.

    A no-op (returning False) when the CPU lacks AVX-512, when XLA_FLAGS already sets the
    vector width, when the backend already exists (too late; the environment is left alone),
    and when the environment variable F2P_KEEP_DEFAULT_XLA_FLAGS is set.

    Returns:
      True when the flag is in effect for backends created from now on.
    """
    current = os.environ.get("XLA_FLAGS", "")
    if WIDE_VECTORS_FLAG in current.split():
        return True
    if (os.environ.get("F2P_KEEP_DEFAULT_XLA_FLAGS") or "xla_cpu_prefer_vector_width" in current
            or not cpu_has_avx512()):
        return False
    from jax._src import xla_bridge  # private: the only way to ask whether it is too late

    if xla_bridge.backends_are_initialized():
        logging.warning("configure_xla_cpu: the JAX backend already exists; %s not applied",
                        WIDE_VECTORS_FLAG)
        return False
    os.environ["XLA_FLAGS"] = f"{current} {WIDE_VECTORS_FLAG}".strip()
    return True


def configure_process() -> dict[str, bool]:
    """Both settings above, as every main applies them before its first JAX computation.

    Returns:
      {"host_allocator": ..., "xla_wide_vectors": ...}: which of them took effect.
    """
    return {"host_allocator": configure_host_allocator(),
            "xla_wide_vectors": configure_xla_cpu()}
