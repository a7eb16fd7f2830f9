"""Test set-up: four forced CPU devices (for sharding tests) before any JAX computation."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)

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
