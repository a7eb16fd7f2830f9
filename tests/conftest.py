"""Test set-up: four forced CPU devices (for sharding tests) before any JAX computation."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
# Many tests compile the same programs (the tiny model's planner, generators, fine-tune) in
# both xdist workers and across files: a persistent compilation cache shared by the workers
# compiles each once per machine. Entries are keyed by the program and XLA options, so a
# changed program never reads a stale one.
jax.config.update("jax_compilation_cache_dir",
                  os.path.join(os.path.dirname(os.path.dirname(__file__)), ".pytest_cache",
                               "jax_compilation_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import ml_collections  # noqa: E402
import pytest  # noqa: E402

TINY_NUM_POINTS = 32
"""Points per object of the tiny exported model (tiny_checkpoint)."""


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A freshly initialised tiny model exported the way the base model is: (dir, model, params)."""
    from f2p.io.pretrained import export_params
    from f2p.models import SkillEffectModel
    from f2p.models import get_config as model_config

    config = model_config("tiny")
    config.data = ml_collections.ConfigDict({"num_points": TINY_NUM_POINTS})
    model = SkillEffectModel(config.model)
    params = model.init(jax.random.PRNGKey(0), 8, TINY_NUM_POINTS)
    directory = str(tmp_path_factory.mktemp("checkpoint"))
    export_params(directory, params, config)
    return directory, model, params
