"""Ahead-of-time compilations kept by key, so that compiling is timed apart from running."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


class CompileCache:
    """Compiled programs by (key, argument structure, argument shapes and dtypes).

    A jitted function compiles inside its first call, so the first call's time hides the
    compile. Stages whose time is reported (generation, fine-tuning) run through `run`, which
    lowers and compiles once per key and argument signature, times that apart, and then calls
    the executable. Static data that changes the program belongs in `key` (or in the
    arguments' tree structure, as a pytree's static fields do).
    """

    def __init__(self) -> None:
        self._compiled: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self._compiled)

    def clear(self) -> None:
        """Drops every compilation (a long sweep of shapes need not keep them all)."""
        self._compiled.clear()

    def run(self, key: Hashable, jitted: Callable, static: Sequence[Any],
            arguments: Sequence[Any]) -> tuple[Any, dict[str, float]]:
        """Calls jitted(*static, *arguments) through a cached compilation; blocks until done.

        Args:
          key: hashable; what besides the arguments' signature tells programs apart.
          jitted: a jax.jit-wrapped function whose leading len(static) arguments are static.
          static: the static arguments (hashable).
          arguments: the traced arguments (pytrees of arrays).

        Returns:
          (result, timings): timings holds "compile_seconds" (0 when the compilation was
          reused), "seconds" (wall time of the run itself) and "cpu_seconds" (its process CPU
          time).
        """
        shapes = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), arguments)
        signature = (key, jax.tree.structure(arguments), tuple(jax.tree.leaves(shapes)))
        compile_seconds = 0.0
        if signature not in self._compiled:
            started = time.perf_counter()
            self._compiled[signature] = jitted.lower(*static, *arguments).compile()
            compile_seconds = time.perf_counter() - started
        started, cpu_started = time.perf_counter(), time.process_time()
        result = jax.block_until_ready(self._compiled[signature](*arguments))
        return result, {"compile_seconds": compile_seconds,
                        "seconds": time.perf_counter() - started,
                        "cpu_seconds": time.process_time() - cpu_started}
