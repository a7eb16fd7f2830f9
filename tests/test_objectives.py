"""Tests of f2p.objectives: the state and action log-densities over a FailureScene."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from f2p import objectives, tasks
from f2p.geometry import aabb_half_extents, render_points, rotate_z
from f2p.models import SkillEffectModel
from f2p.models import get_config as model_config
from f2p.objectives import POSE_DIMS, FailureScene, ObjectiveConfig
from f2p.relations import hard_relations
from f2p.scene import CONTAINER, FIXTURE, ITEM, K_MAX, PICK_PLACE, REL, Skill, make_scene
from f2p.tasks.layout import MAX_CONTAINER_WALL

NUM_POINTS = 32
CAMERAS = np.array([[-1.0, 0.0, 1.0], [-0.5, 0.0, 1.5]], np.float32)
TABLE_B, BAG, ITEM_A, ITEM_B = 0, 1, 2, 3  # the transport task's slots (3 movable objects)


@pytest.fixture(scope="module")
def tiny_model():
    model = SkillEffectModel(model_config("tiny").model)
    return model, model.init(jax.random.PRNGKey(0), K_MAX, NUM_POINTS)


@pytest.fixture(scope="module")
def scene():
    """An OOD transport scene: table B, a bag on table A holding both items."""
    scene = tasks.get_task("transport").sample_scene(np.random.default_rng(0), 3, "ood")
    np.testing.assert_array_equal(objectives.find_parents(scene)[:4], [-1, -1, BAG, BAG])
    return scene


def failure_scene(scene, relation_term, model=None, params=None) -> FailureScene:
    """R^F: the geometric rules on the scene, or the model's own thresholded reading of it."""
    points = render_points(scene, NUM_POINTS, CAMERAS)
    if relation_term == "geometric":
        target = hard_relations(scene, np.zeros((K_MAX, K_MAX), bool))
    else:
        latents = model.encode(params, points, scene.mask, scene.kind, scene.half_extents)
        target = model.decode_relations(params, latents, scene.mask) > 0.0
    movable = np.asarray(scene.mask, bool) & (np.asarray(scene.kind) != FIXTURE)
    skill = Skill(np.int32(PICK_PLACE), np.int32(BAG), np.int32(TABLE_B),
                  np.array([0.0, -0.2], np.float32))
    low, high = objectives.skill_bounds(skill, scene,
                                        tasks.get_task("transport").skeletons(scene))
    as_jax = lambda tree: jax.tree.map(jnp.asarray, tree)  # noqa: E731
    return FailureScene(
        scene=as_jax(scene), movable=jnp.asarray(movable),
        parent=jnp.asarray(objectives.find_parents(scene)),
        target=jnp.asarray(target, jnp.float32),
        weight=jnp.asarray(objectives.relation_weight(scene, movable, relation_term)),
        observed_points=points, observed_mask=jnp.asarray(scene.mask),
        cameras=jnp.asarray(CAMERAS), skill=as_jax(skill), low=jnp.asarray(low),
        high=jnp.asarray(high))


@pytest.fixture(scope="module")
def geometric(scene):
    return failure_scene(scene, "geometric")


@pytest.fixture(scope="module")
def model_failure(tiny_model, scene):
    return failure_scene(scene, "model", *tiny_model)


def offsets(moves) -> jnp.ndarray:
    """A particle [K * 3] from {slot: (dx, dy, yaw_scale * dyaw)}."""
    particle = np.zeros((K_MAX, POSE_DIMS), np.float32)
    for slot, move in moves.items():
        particle[slot] = move
    return jnp.asarray(particle.reshape(-1))


# Jitted once per (model, config): op-by-op the densities take seconds per call.
state_log_prob = jax.jit(objectives.state_log_prob, static_argnums=(0, 1))
state_grad = jax.jit(jax.grad(objectives.state_log_prob, argnums=2), static_argnums=(0, 1))
prior_violation = jax.jit(objectives.prior_violation, static_argnums=2)


def log_prob(model, params, config, failure, particle) -> float:
    return float(state_log_prob(model, config, particle, (params, failure)))


def perturbed(params, scale=0.05):
    """Parameters whose zero-initialised dynamics heads are not zero: predictions see actions."""
    rng = np.random.default_rng(7)
    return jax.tree.map(lambda leaf: leaf + scale * rng.normal(size=leaf.shape).astype(
        np.float32), params)


def test_bernoulli_entropy_peaks_at_zero_and_falls_symmetrically():
    logits = jnp.linspace(-12.0, 12.0, 49)  # float32 resolves 1 - sigmoid up to |logit| ~ 16
    entropy = np.asarray(objectives.bernoulli_entropy(logits))
    np.testing.assert_allclose(objectives.bernoulli_entropy(jnp.zeros(())), np.log(2.0),
                               rtol=1e-6)
    # H(x) = H(-x); 1 - sigmoid(x) by subtraction costs ~1 % at |x| = 12 in float32.
    np.testing.assert_allclose(entropy, entropy[::-1], rtol=1e-2)
    assert np.argmax(entropy) == 24 and np.all(entropy <= np.log(2.0) + 1e-7)
    assert np.all(np.diff(entropy[24:]) < 0) and np.all(np.diff(entropy[:25]) > 0)
    p = np.asarray(jax.nn.sigmoid(logits[14:35]), np.float64)  # |logit| <= 5
    np.testing.assert_allclose(entropy[14:35], -p * np.log(p) - (1 - p) * np.log1p(-p),
                               rtol=1e-5)
    far = np.asarray(objectives.bernoulli_entropy(jnp.array([-200.0, -30.0, 30.0, 200.0])))
    assert np.all(np.isfinite(far)) and np.all(far >= 0.0) and np.all(far < 1e-6)


def test_geometric_density_prefers_the_failure_scene(tiny_model, scene, geometric):
    model, params = tiny_model
    failure = geometric
    config = ObjectiveConfig(relation_term="geometric", num_points=NUM_POINTS)
    # Item A taken out of the bag to table A beside it, and the bag turned on the spot.
    out_of_bag = offsets({ITEM_A: (0.0, 0.13, 0.0)})
    turned = offsets({BAG: (0.0, 0.0, config.yaw_scale * 0.8)})
    at_failure = log_prob(model, params, config, failure, jnp.zeros(K_MAX * POSE_DIMS))
    assert np.isfinite(at_failure)
    assert at_failure > log_prob(model, params, config, failure, out_of_bag) + 10.0
    assert at_failure > log_prob(model, params, config, failure, turned)
    # The relation term alone (no Chamfer, no prior) already tells them apart: inside(2, 1)
    # is lost out of the bag.
    def relation_term(particle):
        posed = objectives.pose_scene(failure, particle, config.yaw_scale)
        return float(objectives.relation_log_likelihood(model, params, failure, posed, None,
                                                        config))

    assert relation_term(out_of_bag) < relation_term(jnp.zeros(K_MAX * POSE_DIMS)) - 5.0
    moved = objectives.pose_scene(failure, out_of_bag, config.yaw_scale)
    assert hard_relations(scene, np.zeros((K_MAX, K_MAX), bool))[ITEM_A, BAG, REL["inside"]]
    assert not hard_relations(moved, jnp.zeros((K_MAX, K_MAX), bool))[ITEM_A, BAG, REL["inside"]]


def test_model_relation_term_reads_the_models_own_relations(tiny_model, scene,
                                                           model_failure):
    model, params = tiny_model
    failure = model_failure
    config = ObjectiveConfig(relation_term="model", num_points=NUM_POINTS)
    particle = jnp.zeros(K_MAX * POSE_DIMS)
    posed = objectives.pose_scene(failure, particle, config.yaw_scale)
    points = objectives.rendered(failure, posed, NUM_POINTS)
    term = float(objectives.relation_log_likelihood(model, params, failure, posed, points, config))
    # Target = the thresholded reading: each scored entry contributes log max(p, 1 - p).
    latents = model.encode(params, points, scene.mask, scene.kind, scene.half_extents)
    prob = np.asarray(jax.nn.sigmoid(model.decode_relations(params, latents, scene.mask)),
                      np.float64)
    expected = np.sum(np.asarray(failure.weight) * np.log(np.maximum(prob, 1 - prob)))
    np.testing.assert_allclose(term, expected, rtol=1e-4)
    flipped = failure._replace(target=1.0 - failure.target)
    assert float(objectives.relation_log_likelihood(model, params, flipped, posed, points,
                                                    config)) < term - 1.0
    assert np.isfinite(log_prob(model, params, config, failure, particle))


@pytest.mark.parametrize("relation_term", ["geometric", "model"])
def test_state_gradient_is_finite_and_reaches_only_movable_slots(tiny_model, geometric,
                                                                 model_failure, relation_term):
    model, params = tiny_model
    failure = geometric if relation_term == "geometric" else model_failure
    config = ObjectiveConfig(relation_term=relation_term, num_points=NUM_POINTS)
    particle = 0.01 * jax.random.normal(jax.random.PRNGKey(1), (K_MAX * POSE_DIMS,))
    grad = np.asarray(state_grad(model, config, particle, (params, failure)))
    grad = grad.reshape(K_MAX, POSE_DIMS)
    assert np.all(np.isfinite(grad))
    movable = np.asarray(failure.movable)
    np.testing.assert_array_equal(movable[:4], [False, True, True, True])
    assert np.all(np.linalg.norm(grad[movable], axis=-1) > 1e-3)
    np.testing.assert_array_equal(grad[~movable], 0.0)  # the table and padded slots stay put


def test_action_gradient_is_finite_and_nonzero(tiny_model, model_failure):
    model, params = tiny_model
    failure = model_failure
    config = ObjectiveConfig(num_points=NUM_POINTS)
    zero = jnp.zeros(K_MAX * POSE_DIMS)
    entropy = jax.jit(jax.value_and_grad(objectives.predicted_entropy, argnums=4),
                      static_argnums=0)
    action_log_prob = jax.jit(jax.value_and_grad(objectives.action_log_prob, argnums=2),
                              static_argnums=(0, 1))
    anchor = failure.skill.params
    # A fresh model's dynamics heads are zero: it predicts no change whatever the action.
    latents = objectives.state_latents(model, params, failure, zero, config)
    np.testing.assert_array_equal(entropy(model, params, failure, latents, anchor)[1], 0.0)
    params = perturbed(params)
    latents = objectives.state_latents(model, params, failure, zero, config)
    assert latents.shape[0] == K_MAX
    context = (params, failure, latents)
    action = anchor + jnp.array([0.01, -0.02])
    value, grad = action_log_prob(model, config, action, context)
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.linalg.norm(grad) > 1e-3
    # The entropy term has a gradient of its own (the Gaussian's vanishes at a^F).
    value_at_anchor, at_anchor = entropy(model, params, failure, latents, anchor)
    assert np.all(np.isfinite(at_anchor)) and np.linalg.norm(at_anchor) > 1e-4
    _, grad_at_anchor = action_log_prob(model, config, anchor, context)
    np.testing.assert_allclose(grad_at_anchor, at_anchor, rtol=1e-4, atol=1e-6)
    assert 0.0 < float(value_at_anchor) <= 4 * 3 * len(REL) * np.log(2.0)  # 12 valid pairs
    # Leaving the skill's bounds costs far more than the Gaussian around a^F.
    outside, _ = action_log_prob(model, config, failure.high + 0.05, context)
    assert float(outside) < float(value) - 100.0


def test_pose_scene_carries_children_and_never_moves_fixtures(scene, geometric):
    failure = geometric
    yaw_scale, turn, shift = 0.05, 0.3, np.array([0.05, -0.03])
    own = np.array([0.01, 0.0])
    particle = offsets({TABLE_B: (0.1, 0.1, 0.1), BAG: (*shift, yaw_scale * turn),
                        ITEM_A: (*own, 0.0), 6: (0.2, 0.2, 0.2)})
    posed = jax.tree.map(np.asarray, objectives.pose_scene(failure, particle, yaw_scale))
    pos, yaw = np.asarray(scene.pos, np.float64), np.asarray(scene.yaw, np.float64)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    np.testing.assert_allclose(posed.pos[:, 2], pos[:, 2])  # z keeps its support
    for slot in (TABLE_B, 6):  # a fixture, a padded slot: offsets ignored
        np.testing.assert_array_equal(posed.pos[slot], scene.pos[slot])
        np.testing.assert_array_equal(posed.yaw[slot], scene.yaw[slot])
    np.testing.assert_allclose(posed.pos[BAG, :2], pos[BAG, :2] + shift, atol=1e-6)
    np.testing.assert_allclose(posed.yaw[BAG], yaw[BAG] + turn, atol=1e-6)
    for child, extra in ((ITEM_A, own), (ITEM_B, np.zeros(2))):
        swung = rotation @ (pos[child, :2] - pos[BAG, :2])
        np.testing.assert_allclose(posed.pos[child, :2], pos[BAG, :2] + shift + swung + extra,
                                   atol=1e-6)
        np.testing.assert_allclose(posed.yaw[child], yaw[child] + turn, atol=1e-6)
    # Carried, the items are still inside the bag.
    relations = np.asarray(hard_relations(posed, np.zeros((K_MAX, K_MAX), bool)))
    assert relations[ITEM_A, BAG, REL["inside"]] and relations[ITEM_B, BAG, REL["inside"]]
    # A child moved alone leaves its parent where it was.
    alone = jax.tree.map(np.asarray, objectives.pose_scene(
        failure, offsets({ITEM_B: (0.02, 0.0, 0.0)}), yaw_scale))
    np.testing.assert_array_equal(alone.pos[BAG], scene.pos[BAG])
    np.testing.assert_allclose(alone.pos[ITEM_B, 0], pos[ITEM_B, 0] + 0.02, atol=1e-6)


def test_find_parents_reads_containers_fixtures_stacks_and_the_ground():
    scene = make_scene(
        [FIXTURE, CONTAINER, ITEM, ITEM, ITEM, ITEM, ITEM],
        [[0.2, 0.22, 0.075], [0.1, 0.07, 0.045], [0.02, 0.02, 0.03], [0.02, 0.02, 0.03],
         [0.02, 0.02, 0.03], [0.02, 0.02, 0.02], [0.02, 0.02, 0.02]],
        [[0.55, 0.35, 0.075],  # table B, top at z = 0.15
         [0.6, -0.3, 0.046],  # a bag on the ground, floor top at 0.046 - 0.045 + 0.012
         [0.62, -0.3, 0.044],  # resting on the bag's floor
         [0.5, 0.3, 0.181],  # on table B
         [0.45, -0.1, 0.031],  # on the ground
         [0.45, -0.1, 0.082],  # stacked on the item below it
         [0.5, 0.4, 0.25]],  # hovering 8 cm above table B
        [0.0, 0.2, 0.1, 0.0, 0.0, 0.3, 0.0])
    np.testing.assert_array_equal(objectives.find_parents(scene),
                                  [-1, -1, 1, 0, -1, 4, -1, -1])


def test_prior_violation_is_zero_only_for_a_clean_scene(scene, geometric):
    failure = geometric
    config = ObjectiveConfig(relation_term="geometric")

    def violation(particle):
        posed = objectives.pose_scene(failure, particle, config.yaw_scale)
        return float(prior_violation(failure, posed, config.workspace_radius))

    assert violation(jnp.zeros(K_MAX * POSE_DIMS)) == 0.0
    pos = np.asarray(scene.pos, np.float64)
    # Two movables interpenetrating: item A put onto item B (both in the bag).
    onto = pos[ITEM_B, :2] - pos[ITEM_A, :2]
    assert violation(offsets({ITEM_A: (*onto, 0.0)})) > 1e-4
    # Item A pushed through the bag's wall: its centre still inside the bag's footprint, `d`
    # past where its own footprint and the wall thickness leave room, costs exactly d^2.
    bag_yaw, d = float(scene.yaw[BAG]), 0.01
    local = rotate_z(pos[ITEM_A] - pos[BAG], bag_yaw, inverse=True)[:2]
    child = aabb_half_extents(np.asarray(scene.half_extents[ITEM_A], np.float64),
                              float(scene.yaw[ITEM_A]) - bag_yaw)[:2]
    room = np.asarray(scene.half_extents[BAG, :2], np.float64) - child - MAX_CONTAINER_WALL
    for past, expected in ((-0.002, 0.0), (d, d**2)):
        target = local.copy()
        target[1] = np.sign(local[1]) * (room[1] + past)
        assert abs(target[1]) < scene.half_extents[BAG, 1]  # the centre stays in the bag
        move = rotate_z(np.append(target - local, 0.0), bag_yaw)[:2]
        np.testing.assert_allclose(violation(offsets({ITEM_A: (*move, 0.0)})), expected,
                                   rtol=1e-3, atol=1e-9)
    # Past the workspace: the bag (and the two items riding in it) 0.3 m away, 0.15 m too far.
    assert violation(offsets({BAG: (0.1, 0.0, 0.0)})) == 0.0
    np.testing.assert_allclose(violation(offsets({BAG: (0.3, 0.0, 0.0)})), 3 * 0.15**2,
                               rtol=1e-3)


@pytest.mark.parametrize("field, value, message", [
    ("relation_term", "points", "objective.relation_term: 'points' is not one of model, "
                                "geometric"),
    ("chamfer_sigma", 0.0, "objective.chamfer_sigma: must be > 0"),
    ("action_sigma", -0.1, "objective.action_sigma: must be > 0"),
    ("prior_scale", 0.0, "objective.prior_scale: must be > 0"),
    ("entropy_weight", -1.0, "objective.entropy_weight: must be >= 0"),
    ("num_points", 0, "objective.num_points: must be >= 1"),
])
def test_check_objective_config_names_the_bad_field(field, value, message):
    assert objectives.check_objective_config(ObjectiveConfig()) == ObjectiveConfig()
    with pytest.raises(ValueError, match=message):
        objectives.check_objective_config(ObjectiveConfig(**{field: value}))


def test_pose_scene_carries_a_chain_of_supports():
    # An item stacked on an item that sits in a bag rides with the bag like its support does.
    scene = make_scene([FIXTURE, CONTAINER, ITEM, ITEM],
                       [[0.2, 0.22, 0.075], [0.1, 0.07, 0.045], [0.02, 0.02, 0.02],
                        [0.02, 0.02, 0.02]],
                       [[0.55, 0.35, 0.075], [0.6, -0.3, 0.046], [0.6, -0.3, 0.034],
                        [0.6, -0.3, 0.075]])
    parent = objectives.find_parents(scene)
    assert parent[1:4].tolist() == [-1, 1, 2]
    failure = FailureScene(jax.tree.map(jnp.asarray, scene),
                           jnp.asarray(scene.mask & (scene.kind != FIXTURE)),
                           jnp.asarray(parent), *[None] * 8)
    particle = jnp.zeros(K_MAX * POSE_DIMS).at[3].set(0.1).at[5].set(0.05 * 0.5)
    posed = objectives.pose_scene(failure, particle, 0.05)
    np.testing.assert_allclose(np.asarray(posed.pos[1:4, :2]),
                               np.asarray(posed.pos[1:4, :2])[[0]].repeat(3, 0), atol=1e-6)
    np.testing.assert_allclose(np.asarray(posed.pos[1, :2]), [0.7, -0.3], atol=1e-6)
    np.testing.assert_allclose(np.asarray(posed.yaw[1:4]), 0.5, atol=1e-6)
    assert float(objectives.prior_violation(failure, posed, 0.15)) == 0.0
