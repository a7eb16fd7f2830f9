import os
import subprocess
import sys

import numpy as np
import pytest

from f2p import runtime


def test_configure_host_allocator_is_idempotent_and_harmless(monkeypatch):
    monkeypatch.setattr(runtime, "_configured", False)
    assert runtime.configure_host_allocator() is True  # glibc on these machines
    assert runtime.configure_host_allocator() is True
    big = np.ones((2048, 2048), np.float32)  # allocations still work afterwards
    assert float(big.sum()) == 2048.0 * 2048.0


def test_opt_out_by_environment(monkeypatch):
    monkeypatch.setattr(runtime, "_configured", False)
    monkeypatch.setenv("F2P_KEEP_DEFAULT_MALLOC", "1")
    assert runtime.configure_host_allocator() is False


def _run_python(code: str, **env_overrides) -> str:
    """Runs `code` in a fresh interpreter (the JAX backend of this test process exists)."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("XLA_FLAGS", "F2P_KEEP_DEFAULT_XLA_FLAGS")}
    env.update(env_overrides)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    return result.stdout.strip().splitlines()[-1]


_APPLY_AND_COMPUTE = """
import os
from f2p import runtime
applied = runtime.configure_xla_cpu()
import jax.numpy as jnp
assert float(jnp.exp(jnp.zeros(1000)).sum()) == 1000.0
print(applied, os.environ.get('XLA_FLAGS', ''))
"""


@pytest.mark.skipif(not runtime.cpu_has_avx512(), reason="the flag is only set on AVX-512 CPUs")
def test_configure_xla_cpu_sets_the_flag_before_the_backend_exists():
    assert _run_python(_APPLY_AND_COMPUTE) == f"True {runtime.WIDE_VECTORS_FLAG}"


def test_configure_xla_cpu_respects_opt_out_and_user_flags():
    assert _run_python(_APPLY_AND_COMPUTE, F2P_KEEP_DEFAULT_XLA_FLAGS="1") == "False"
    user = "--xla_cpu_prefer_vector_width=256"
    assert _run_python(_APPLY_AND_COMPUTE, XLA_FLAGS=user) == f"False {user}"


def test_configure_xla_cpu_is_too_late_once_the_backend_exists(monkeypatch):
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()  # the backend of this process exists
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("F2P_KEEP_DEFAULT_XLA_FLAGS", raising=False)
    monkeypatch.setattr(runtime, "cpu_has_avx512", lambda: True)
    assert runtime.configure_xla_cpu() is False
    assert "XLA_FLAGS" not in os.environ  # left alone: it would not take effect


def test_importing_the_mains_leaves_the_backend_uncreated():
    # Otherwise a main's runtime.configure_process() comes too late for the XLA flags.
    code = """
import importlib
from absl import flags
for name in ("evaluate_main", "generate_data_main", "pretrain_main", "sim_benchmark_main",
             "svgd_benchmark_main"):
    defined = set(flags.FLAGS)
    importlib.import_module("experiments." + name)
    for flag in set(flags.FLAGS) - defined:  # every main defines --config and --workdir
        delattr(flags.FLAGS, flag)
from jax._src import xla_bridge
print(xla_bridge.backends_are_initialized())
"""
    assert _run_python(code) == "False"
