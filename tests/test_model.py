"""Tests of the Flax skill-effect model: shapes, masks, equivariance, gradients, rollouts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from synthetic import box_points

from f2p.models import MASKED_LOGIT, SkillEffectModel, get_config, move_points, pair_mask
from f2p.scene import CONTAINER, FIXTURE, ITEM, PICK_PLACE, PUSH, Skill

K, P = 6, 32


def random_scene(rng, num_valid, num_objects=K, num_points=P):
    """Points, mask, kind, half extents of a random padded scene (slot 0 a fixture table)."""
    kind = np.zeros(num_objects, np.int32)
    kind[0] = FIXTURE
    kind[1:num_valid] = rng.choice([ITEM, CONTAINER], num_valid - 1)
    half = rng.uniform(0.02, 0.08, (num_objects, 3)).astype(np.float32)
    half[0] = (0.4, 0.5, 0.02)
    pos = np.concatenate([rng.uniform(0.3, 0.8, (num_objects, 1)),
                          rng.uniform(-0.3, 0.3, (num_objects, 1)),
                          rng.uniform(0.02, 0.2, (num_objects, 1))], axis=1).astype(np.float32)
    yaw = rng.uniform(-np.pi, np.pi, num_objects)
    points = np.stack([box_points(rng, half[i], pos[i], yaw[i], num_points)
                       for i in range(num_objects)])
    mask = np.arange(num_objects) < num_valid
    return points, mask, kind, half


def perturb(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda leaf: leaf + 0.1 * rng.normal(size=leaf.shape), params)


@pytest.fixture(scope="module")
def setup():
    config = get_config("tiny")
    model = SkillEffectModel(config.model)
    params = model.init(jax.random.PRNGKey(0), K, P)
    # Zero-initialised output heads would make displacements trivially 0: randomise them.
    params = perturb(params, 1)
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng, num_valid) for num_valid in (4, 5)]
    points, mask, kind, half = (np.stack(x) for x in zip(*scenes, strict=True))
    skill = Skill(np.array([PICK_PLACE, PUSH]), np.array([1, 2]), np.array([3, -1]),
                  np.array([[0.05, -0.02], [0.1, 0.03]], np.float32))
    return model, params, (points, mask, kind, half), skill


def test_shapes_and_excluded_pairs(setup):
    model, params, (points, mask, kind, half), skill = setup
    out = model.apply(params, points, mask, kind, skill, half)
    latent = model.config.latent_dim
    assert out.latents.shape == (2, K, latent)
    assert out.next_latents.shape == (2, K, latent)
    assert out.relation_logits.shape == (2, K, K, 9)
    assert out.next_relation_logits.shape == (2, K, K, 9)
    assert out.displacement.shape == (2, K, 3)
    excluded = ~np.asarray(pair_mask(mask))
    assert np.all(np.asarray(out.relation_logits)[excluded] == MASKED_LOGIT)
    assert np.all(np.asarray(out.next_relation_logits)[excluded] == MASKED_LOGIT)
    assert not np.all(np.asarray(out.relation_logits)[~excluded] == MASKED_LOGIT)
    displacement = np.asarray(out.displacement)
    assert np.all(displacement[~mask] == 0) and np.all(displacement[kind == FIXTURE] == 0)
    assert np.any(displacement[mask & (kind != FIXTURE)] != 0)
    # Unbatched input gives unbatched output equal to the batched row.
    single = model.apply(params, points[1], mask[1], kind[1],
                         jax.tree.map(lambda x: x[1], skill), half[1])
    np.testing.assert_allclose(single.next_relation_logits, out.next_relation_logits[1],
                               atol=1e-5)


def test_padding_slots_never_change_real_outputs(setup):
    model, params, (points, mask, kind, half), skill = setup
    out = model.apply(params, points, mask, kind, skill, half)
    rng = np.random.default_rng(5)
    noisy_points = np.where(mask[..., None, None], points,
                            rng.normal(0, 3.0, points.shape)).astype(np.float32)
    noisy_points[0, -1] = np.nan  # garbage (even NaN) in a padded slot must not leak
    noisy_kind = np.where(mask, kind, CONTAINER)
    noisy_half = np.where(mask[..., None], half, 0.7)
    other = model.apply(params, noisy_points, mask, noisy_kind, skill, noisy_half)
    pairs = np.asarray(pair_mask(mask))
    for name in ("latents", "next_latents", "displacement"):
        np.testing.assert_allclose(np.asarray(getattr(other, name))[mask],
                                   np.asarray(getattr(out, name))[mask], atol=1e-5)
    for name in ("relation_logits", "next_relation_logits"):
        np.testing.assert_allclose(np.asarray(getattr(other, name))[pairs],
                                   np.asarray(getattr(out, name))[pairs], atol=1e-5)


def test_permuting_slots_permutes_outputs(setup):
    model, params, (points, mask, kind, half), skill = setup
    out = model.apply(params, points, mask, kind, skill, half)
    permutation = np.array([4, 2, 0, 5, 1, 3])  # new slot s holds old slot permutation[s]
    inverse = np.argsort(permutation)
    support = np.where(skill.support >= 0, inverse[np.maximum(skill.support, 0)], -1)
    permuted_skill = Skill(skill.skill, inverse[skill.obj], support, skill.params)
    permuted = model.apply(params, points[:, permutation], mask[:, permutation],
                           kind[:, permutation], permuted_skill, half[:, permutation])
    for name in ("latents", "next_latents", "displacement"):
        np.testing.assert_allclose(getattr(permuted, name),
                                   np.asarray(getattr(out, name))[:, permutation], atol=1e-4)
    for name in ("relation_logits", "next_relation_logits"):
        expected = np.asarray(getattr(out, name))[:, permutation][:, :, permutation]
        np.testing.assert_allclose(getattr(permuted, name), expected, atol=1e-4)


def test_relation_logits_have_gradients_wrt_points(setup):
    model, params, (points, mask, kind, half), skill = setup
    pairs = pair_mask(mask)[..., None]

    def summed_logits(pts, which):
        out = model.apply(params, pts, mask, kind, skill, half)
        return jnp.sum(jnp.where(pairs, getattr(out, which), 0.0))

    for which in ("relation_logits", "next_relation_logits"):
        gradient = jax.jit(jax.grad(summed_logits), static_argnums=1)
        grads = np.asarray(gradient(jnp.asarray(points), which))
        assert np.all(np.isfinite(grads))
        # Every valid object's points receive gradient; padded slots receive none.
        per_object = np.abs(grads).sum(axis=(-1, -2))
        assert np.all(per_object[mask] > 0)
        assert np.all(per_object[~mask] == 0)


def test_rollout_two_steps(setup):
    model, params, (points, mask, kind, half), skill = setup
    skills = Skill(np.array([[PICK_PLACE, PUSH], [PUSH, PICK_PLACE]]),
                   np.array([[1, 2], [2, 1]]), np.array([[3, -1], [-1, 4]]),
                   np.full((2, 2, 2), 0.05, np.float32))
    rollout = jax.jit(model.rollout)(params, points, mask, kind, skills, half)
    assert rollout.initial_relation_logits.shape == (2, K, K, 9)
    assert rollout.relation_logits.shape == (2, 2, K, K, 9)
    assert rollout.displacement.shape == (2, 2, K, 3)
    assert rollout.latents.shape == (2, 2, K, model.config.latent_dim)
    assert rollout.points.shape == (2, 2, K, P, 3)
    # Step 1 equals a one-step prediction; step 2 starts from points moved by step 1.
    first = model.apply(params, points, mask, kind, jax.tree.map(lambda x: x[:, 0], skills), half)
    np.testing.assert_allclose(rollout.relation_logits[:, 0], first.next_relation_logits,
                               atol=1e-4)
    np.testing.assert_allclose(rollout.initial_relation_logits, first.relation_logits, atol=1e-4)
    np.testing.assert_allclose(rollout.points[:, 0],
                               move_points(points, first.displacement, mask), atol=1e-6)
    assert np.any(np.asarray(rollout.points[:, 0]) != points)
    single = model.rollout(params, points[0], mask[0], kind[0],
                           jax.tree.map(lambda x: x[0], skills), half[0])
    assert single.relation_logits.shape == (2, K, K, 9)
    np.testing.assert_allclose(single.relation_logits, rollout.relation_logits[0], atol=1e-4)


def test_bad_inputs_raise_clear_errors(setup):
    model, params, (points, mask, kind, half), skill = setup
    with pytest.raises(ValueError, match="half_extents"):
        model.apply(params, points, mask, kind, skill)
    with pytest.raises(ValueError, match="points"):
        model.encode(params, points[..., :2], mask, kind, half)
    with pytest.raises(ValueError, match="variant"):
        get_config("huge")
    bad = get_config("tiny").model
    bad.displacement_dims = 4
    with pytest.raises(ValueError, match="displacement_dims"):
        SkillEffectModel(bad)


def test_weighted_moments_equal_the_offset_einsums():
    """The expanded moments equal the direct sums over offsets (l - a) and their products."""
    from f2p.models.encoder import _weighted_moments

    rng = np.random.default_rng(3)
    local = jnp.asarray(rng.normal(size=(2, 5, 32, 3)), jnp.float32)
    features = jnp.asarray(rng.normal(size=(2, 5, 32, 7)), jnp.float32)
    anchors = local[..., ::8, :]
    weights = jax.nn.softmax(jnp.asarray(rng.normal(size=(2, 5, 4, 32)), jnp.float32), axis=-1)
    grouped, mean_offset, second = _weighted_moments(weights, features, local, anchors)
    offsets = local[..., None, :, :] - anchors[..., :, None, :]
    np.testing.assert_allclose(grouped, jnp.einsum("...mp,...pc->...mc", weights, features),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean_offset, jnp.einsum("...mp,...mpd->...md", weights, offsets),
                               rtol=1e-5, atol=1e-5)
    direct = jnp.einsum("...mp,...mpd,...mpe->...mde", weights, offsets, offsets)
    np.testing.assert_allclose(second, direct.reshape(direct.shape[:-2] + (9,)), rtol=1e-4,
                               atol=1e-5)
