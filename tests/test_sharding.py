"""Tests of sharded generation: the state axis split over the 4 CPU devices conftest forces."""

import numpy as np
import pytest

from f2p import sharding

NUM_DEVICES = 4
# Differences come only from float32 rounding: split reductions (the kernel's matmul, the
# centring mean, the median's counts) are summed in another order, and each device's code is
# vectorised for its own batch. Measured (model relation term): states
# (~0.04 m) at most 2e-7 m apart, log-densities (~80 nats) 1e-7 relative, actions equal.
# atol = rtol = 1e-5 leaves a margin of 50 over the states' rounding; atol is needed for
# near-zero offsets, whose relative error reaches 6e-4.
RTOL = ATOL = 1e-5

@pytest.fixture(scope="module")
def child():
    """Plain and sharded runs over the 4 CPU devices tests/conftest.py forces, as arrays."""
    import jax

    from f2p import generation, synthetic_failure
    from f2p.generation import GenerationConfig
    from f2p.models import SkillEffectModel
    from f2p.models import get_config as model_config
    from f2p.objectives import ObjectiveConfig
    from f2p.scene import K_MAX

    assert len(jax.devices()) == NUM_DEVICES, jax.devices()
    model = SkillEffectModel(model_config("tiny").model)
    params = model.init(jax.random.PRNGKey(0), K_MAX, 32)
    # The geometric relation term: the same sharded program, a third of the model term's
    # compile.
    objective = ObjectiveConfig(relation_term="geometric", num_points=32)
    config = GenerationConfig(num_states=8, num_actions=4, state_steps=4, action_steps=3)
    data = synthetic_failure.failure_data(synthetic_failure.make_failure(0, 32), objective)
    mesh = sharding.particle_mesh()
    key = jax.random.PRNGKey(1)
    out = {}
    # svgd only: the kernel's sums over particles are the hard case; gradient has none.
    for name in ("svgd",):
        plain, _ = generation.generate_particles(name, key, model, params, data, objective,
                                                 config)
        split, _ = generation.generate_particles(name, key, model, params, data, objective,
                                                 config, mesh=mesh)
        for field in ("states", "actions", "state_log_prob"):
            out[f"{name}.{field}.plain"] = np.asarray(getattr(plain, field))
            out[f"{name}.{field}.split"] = np.asarray(getattr(split, field))
            array = getattr(split, field)
            out[f"{name}.{field}.devices"] = sharding.num_devices_spanned(array)
            out[f"{name}.{field}.shard_shape"] = array.sharding.shard_shape(array.shape)
            out[f"{name}.{field}.plain_devices"] = sharding.num_devices_spanned(
                getattr(plain, field))
    swept, _ = generation.generate_sweep("svgd", key, model, params, data, objective, config,
                                         {"generation.bandwidth_scale": [1.0, 4.0]}, mesh=mesh)
    out["sweep.states"] = np.asarray(swept.states)
    out["sweep.actions"] = np.asarray(swept.actions)
    out["sweep.devices"] = sharding.num_devices_spanned(swept.states)
    try:
        generation.generate_particles("svgd", key, model, params, data, objective,
                                      config._replace(num_states=6), mesh=mesh)
    except ValueError as error:
        out["error"] = str(error)
    return out


# The checks of the one fixture run in one test, so that the fixture is computed once even when
# pytest-xdist spreads a module's tests over its workers.
def test_sharded_runs_match_the_unsharded_ones_and_refuse_uneven_splits(child):
    _check_sharded_generation_matches_the_unsharded_run(child, "svgd")
    _check_a_sharded_sweep_matches_and_spans_the_devices(child)
    _check_a_state_count_the_devices_do_not_divide_is_refused(child)


def _check_sharded_generation_matches_the_unsharded_run(child, name):
    for field in ("states", "actions", "state_log_prob"):
        plain, split = child[f"{name}.{field}.plain"], child[f"{name}.{field}.split"]
        np.testing.assert_allclose(split, plain, rtol=RTOL, atol=ATOL, err_msg=field)
        # The N axis really is split: a quarter of the states on each of the 4 devices.
        assert int(child[f"{name}.{field}.devices"]) == NUM_DEVICES, field
        assert tuple(child[f"{name}.{field}.shard_shape"])[0] == plain.shape[0] // NUM_DEVICES
        assert int(child[f"{name}.{field}.plain_devices"]) == 1, field
    assert np.abs(child[f"{name}.states.plain"]).max() > 0  # the particles moved


def _check_a_sharded_sweep_matches_and_spans_the_devices(child):
    assert child["sweep.states"].shape[0] == 2 and int(child["sweep.devices"]) == NUM_DEVICES
    # Point 0 is the config's own bandwidth scale: the plain svgd run.
    np.testing.assert_allclose(child["sweep.states"][0], child["svgd.states.plain"],
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(child["sweep.actions"][0], child["svgd.actions.plain"],
                               rtol=RTOL, atol=ATOL)
    assert not np.allclose(child["sweep.states"][0], child["sweep.states"][1], atol=1e-4)


def _check_a_state_count_the_devices_do_not_divide_is_refused(child):
    assert str(child["error"]) == ("generation.num_states: 6 particles do not split evenly "
                                   "over the mesh's 4 devices; use a multiple of 4")


def test_check_mesh_refuses_a_two_dimensional_mesh():
    import jax
    from jax.sharding import Mesh

    assert sharding.check_mesh(None, 7) is None
    device = jax.devices()[0]
    square = Mesh(np.asarray([device]).reshape(1, 1), ("a", "b"))
    with pytest.raises(ValueError, match="mesh: expected a 1-D jax.sharding.Mesh"):
        sharding.check_mesh(square, 8)
    with pytest.raises(ValueError, match="mesh: no devices given"):
        sharding.particle_mesh([])
    assert sharding.check_mesh(sharding.particle_mesh([device]), 5).size == 1
