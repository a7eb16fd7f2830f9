"""Test set-up: four forced CPU devices (for sharding tests) before any JAX computation."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
