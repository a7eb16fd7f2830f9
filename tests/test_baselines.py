import jax
import jax.numpy as jnp
import numpy as np
import pytest

from f2p import baselines


def _propose(key, n):
    return jax.random.uniform(key, (n, 2), minval=-1.0, maxval=1.0)


def _accept(x):
    return jnp.sum(x**2) < 0.25  # inside a disc of radius 0.5: ~20 % of the square


def test_rejection_sampling_static_shapes_only_accepted():
    generator = baselines.rejection_sampling(_propose, _accept, batch_size=16)
    template = jnp.zeros((40, 2))
    run = jax.jit(baselines.run_until_full, static_argnums=(0, 3))
    state = run(generator, jax.random.key(0), template, 1000)
    assert state.particles.shape == (40, 2) and state.accepted.shape == (40,)
    assert int(state.count) == 40 and bool(state.accepted.all())
    assert np.all(np.sum(np.asarray(state.particles) ** 2, axis=1) < 0.25)
    # ~20 % acceptance: the attempt counter reports the true cost, in whole batches.
    assert 120 <= int(state.attempts) <= 400 and int(state.attempts) % 16 == 0


def test_rejection_sampling_partial_buffer_masked():
    generator = baselines.rejection_sampling(_propose, _accept, batch_size=8)
    state = jax.jit(baselines.run_until_full, static_argnums=(0, 3))(
        generator, jax.random.key(1), jnp.full((200, 2), 9.0), 3)
    count = int(state.count)
    assert 0 < count < 24 and int(state.attempts) == 24
    accepted = np.asarray(state.accepted)
    assert accepted[:count].all() and not accepted[count:].any()
    assert np.all(np.asarray(state.particles)[count:] == 9.0)  # unfilled slots untouched


def test_rejection_stops_counting_when_full():
    generator = baselines.rejection_sampling(_propose, lambda x: jnp.array(True), batch_size=8)
    state = generator.init(None, jnp.zeros((8, 2)))
    for index in range(3):
        state, info = generator.step(jax.random.key(index), state)
    assert int(info.count) == 8 and int(info.attempts) == 8


def test_random_sampling_draws_from_prior():
    generator = baselines.make_generator(
        "random", baselines.Target(prior=lambda key, n: 5.0 + jax.random.normal(key, (n, 3))))
    state = generator.init(jax.random.key(0), jnp.zeros((500, 3)))
    np.testing.assert_allclose(np.asarray(state.particles).mean(), 5.0, atol=0.1)


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown name 'mcmc'; allowed: svgd, gradient, "
                                         "sampling, random$"):
        baselines.make_generator("mcmc", baselines.Target())
    with pytest.raises(ValueError, match="target.log_prob"):
        baselines.make_generator("svgd", baselines.Target())
    with pytest.raises(ValueError, match="target.propose, target.accept"):
        baselines.make_generator("sampling", baselines.Target())
    with pytest.raises(ValueError, match="batch_size"):
        baselines.rejection_sampling(_propose, _accept, batch_size=0)


def test_baselines_take_the_context_as_a_traced_argument():
    # The rejection test and the prior read the target's data from the context (last
    # argument); new values of the same shape reuse the compiled run.
    traces = []

    def accept(x, radius):
        traces.append(1)  # runs only while tracing
        return jnp.sum(x**2) < radius**2

    def propose(key, n, radius):
        return jax.random.uniform(key, (n, 2), minval=-1.0, maxval=1.0)

    generator = baselines.rejection_sampling(propose, accept, batch_size=16)
    run = jax.jit(baselines.run_until_full, static_argnums=(0, 3))
    for radius in (0.3, 0.8):
        state = run(generator, jax.random.key(2), jnp.zeros((20, 2)), 500, jnp.float32(radius))
        radii = np.sqrt(np.sum(np.asarray(state.particles) ** 2, axis=1))
        assert int(state.count) == 20 and radii.max() < radius
        assert radii.max() > 0.5 * radius  # the whole disc, not a fixed smaller one
    assert len(traces) == 1

    generator = baselines.make_generator(
        "random", baselines.Target(prior=lambda key, n, mean: mean + jax.random.normal(key, (n,))))
    state = jax.jit(generator.init)(jax.random.key(3), jnp.zeros(400), jnp.float32(-4.0))
    np.testing.assert_allclose(np.asarray(state.particles).mean(), -4.0, atol=0.15)
