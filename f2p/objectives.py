"""Fail2Progress target densities (DESIGN section 6): failure-like states, informative actions."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from f2p.geometry import aabb_half_extents, render_points, rotate_z, scene_chamfer_distance
from f2p.relations import smooth_relations
from f2p.scene import CONTAINER, FIXTURE, PICK_PLACE, REL, Scene, Skill
from f2p.tasks.layout import MAX_CONTAINER_WALL, support_surface

RELATION_TERMS = ("model", "geometric")
"""How the state density reads relations: the model's relation head on rendered points, or the
smooth geometric rules of f2p.relations (contact, which needs a simulator, left out)."""
POSE_DIMS = 3
"""A state particle holds (dx, dy, yaw_scale * dyaw) per slot: offsets from the failure scene."""
SUPPORT_TOLERANCE = 0.02
"""An object rests on a support when its bottom lies this close (metres) to the support's top."""


class ObjectiveConfig(NamedTuple):
    """Weights and scales of the state and action log-densities.

    Attributes:
      relation_term: one of RELATION_TERMS.
      relation_weight: weight of the summed Bernoulli log-likelihood of the failure relations.
      chamfer_sigma: sigma_o in metres: Chamfer(Psi(S), O^F) / (2 sigma_o^2).
      prior_weight: weight of the squared penetration / unsupported / workspace violations,
        each measured in units of `prior_scale` metres.
      prior_scale: metres that cost prior_weight nats when violated.
      workspace_radius: how far (metres, per axis) an object may move from its failure pose.
      yaw_scale: metres per radian of yaw in a particle, so that the kernel's distance weighs
        a turn of 1 rad like `yaw_scale` metres of travel.
      temperature: sigmoid scale (metres) of the geometric relation term.
      entropy_weight: beta, weight of the predicted post-skill relations' entropy.
      action_sigma: sigma_a in metres, the Gaussian around the failed skill's arguments.
      num_points: points per object rendered for the model.
    """

    relation_term: str = "model"
    relation_weight: float = 1.0
    chamfer_sigma: float = 0.03
    prior_weight: float = 1.0
    prior_scale: float = 0.005
    workspace_radius: float = 0.15
    yaw_scale: float = 0.05
    temperature: float = 0.01
    entropy_weight: float = 1.0
    action_sigma: float = 0.05
    num_points: int = 128


def check_objective_config(config: ObjectiveConfig) -> ObjectiveConfig:
    """Returns config, or raises ValueError naming the first bad field."""
    if config.relation_term not in RELATION_TERMS:
        raise ValueError(f"objective.relation_term: {config.relation_term!r} is not one of "
                         f"{', '.join(RELATION_TERMS)}")
    for field in ("chamfer_sigma", "prior_scale", "workspace_radius", "yaw_scale",
                  "temperature", "action_sigma"):
        if not float(getattr(config, field)) > 0:
            raise ValueError(f"objective.{field}: must be > 0, got {getattr(config, field)}")
    for field in ("relation_weight", "prior_weight", "entropy_weight"):
        if float(getattr(config, field)) < 0:
            raise ValueError(f"objective.{field}: must be >= 0, got {getattr(config, field)}")
    if int(config.num_points) < 1:
        raise ValueError(f"objective.num_points: must be >= 1, got {config.num_points}")
    return config


class FailureScene(NamedTuple):
    """The data the densities read (a pytree of arrays: traced, so a new failure never retraces).

    Attributes:
      scene: the reconstructed pre-step Scene (unbatched).
      movable: [K] bool, slots the state particles move (valid, not fixtures).
      parent: [K] int32, the slot each object rests on or in (-1: the ground, table A). A
        movable parent carries its children: they keep their place on or in it.
      target: [K, K, R] float 0/1, the failure scene's relations R^F.
      weight: [K, K, R] float, which entries of R^F the state density scores.
      observed_points: [K, P, 3] the pre-step observation O^F.
      observed_mask: [K] bool, objects seen in O^F (compared by Chamfer).
      cameras: [C, 3] camera positions the rendering Psi(S) faces.
      skill: the failed Skill (its params are a^F).
      low, high: [2] bounds of the skill's continuous arguments.
    """

    scene: Scene
    movable: Any
    parent: Any
    target: Any
    weight: Any
    observed_points: Any
    observed_mask: Any
    cameras: Any
    skill: Skill
    low: Any
    high: Any


def find_parents(scene: Scene) -> np.ndarray:
    """[K] int32 slot each valid movable object rests on or in (-1: the ground), from geometry.

    A support is another valid slot whose footprint holds the object's centre and whose top
    (a container's floor) lies within SUPPORT_TOLERANCE of the object's bottom; the highest
    such support wins.
    """
    kind, mask = np.asarray(scene.kind), np.asarray(scene.mask, bool)
    pos, half = np.asarray(scene.pos, np.float64), np.asarray(scene.half_extents, np.float64)
    footprint = aabb_half_extents(half, np.asarray(scene.yaw, np.float64))
    parent = np.full(kind.shape[0], -1, np.int32)
    for k in np.flatnonzero(mask & (kind != FIXTURE)):
        bottom, best = pos[k, 2] - half[k, 2], -np.inf
        for j in np.flatnonzero(mask):
            surface = support_surface(int(kind[j]), pos[j, 2], half[j, 2])
            inside_xy = np.all(np.abs(pos[k, :2] - pos[j, :2]) <= footprint[j, :2])
            if j != k and inside_xy and abs(bottom - surface) <= SUPPORT_TOLERANCE \
                    and surface > best:
                parent[k], best = j, surface
    return parent


def relation_weight(scene: Scene, movable, relation_term: str) -> np.ndarray:
    """[K, K, R] float weights of R^F: valid distinct pairs with a movable member.

    Every relation is scored, except contact in the geometric term, whose rules cannot see it.
    """
    mask = np.asarray(scene.mask, bool)
    movable = np.asarray(movable, bool)
    pair = mask[:, None] & mask[None, :] & ~np.eye(mask.shape[0], dtype=bool)
    pair &= movable[:, None] | movable[None, :]
    weight = np.repeat(pair[..., None], len(REL), axis=-1).astype(np.float32)
    if relation_term == "geometric":
        weight[..., REL["contact"]] = 0.0
    return weight


def pose_scene(failure: FailureScene, particle: jax.Array, yaw_scale: float) -> Scene:
    """The scene of a state particle: [K * 3] offsets (dx, dy, yaw_scale * dyaw) of movables.

    z stays at the failure scene's (objects keep their supports). An object resting on or in a
    movable parent moves rigidly with it (translation and turn about the parent's centre),
    and so on down the chain (an item on an item in a bag rides with the bag), plus its own
    offset.
    """
    scene = failure.scene
    offsets = particle.reshape(-1, POSE_DIMS) * failure.movable[:, None]
    own_shift, own_turn = offsets[:, :2], offsets[:, 2] / yaw_scale
    parent = jnp.clip(failure.parent, 0)
    carried = (failure.parent >= 0) & failure.movable[parent]
    xy0 = scene.pos[:, :2]
    xy, turn = xy0 + own_shift, own_turn
    # Each pass places every object relative to its parent's pose from the previous pass, so
    # after K passes a chain of any depth (at most K - 1 links) is resolved; it is a fixed
    # point, so extra passes change nothing.
    for _ in range(failure.movable.shape[0]):
        relative = rotate_z(xy0 - xy0[parent], turn[parent])
        ridden = xy[parent] + relative + own_shift
        xy = jnp.where(carried[:, None], ridden, xy0 + own_shift)
        turn = jnp.where(carried, turn[parent] + own_turn, own_turn)
    return scene._replace(pos=jnp.concatenate([xy, scene.pos[:, 2:]], axis=-1),
                          yaw=scene.yaw + turn)


def _bernoulli_log_likelihood(logits: jax.Array, target: jax.Array) -> jax.Array:
    """Elementwise log p(target | sigmoid(logits)), stable for large |logits|."""
    return jax.nn.log_sigmoid(jnp.where(target > 0.5, logits, -logits))


def bernoulli_entropy(logits: jax.Array) -> jax.Array:
    """Elementwise entropy (nats) of Bernoulli(sigmoid(logits)); largest, log 2, at logits 0."""
    # 1 - p as sigmoid(-logits), not by subtraction: exact in float32 for large |logits|.
    return (jax.nn.sigmoid(logits) * jax.nn.softplus(-logits)
            + jax.nn.sigmoid(-logits) * jax.nn.softplus(logits))


def rendered(failure: FailureScene, scene: Scene, num_points: int) -> jax.Array:
    """Psi(S): [K, P, 3] points on the faces of every box that face the cameras."""
    return render_points(scene, num_points, failure.cameras)


def relation_log_likelihood(model, params, failure: FailureScene, scene: Scene,
                            points: jax.Array, config: ObjectiveConfig) -> jax.Array:
    """sum_r log Gamma(r^F | Psi(S)) over the weighted entries of R^F."""
    mask = scene.mask
    if config.relation_term == "model":
        latents = model.encode(params, points, mask, scene.kind, scene.half_extents)
        logits = model.decode_relations(params, latents, mask)
        terms = _bernoulli_log_likelihood(logits, failure.target)
    else:
        contact = failure.target[..., REL["contact"]]
        prob = jnp.clip(smooth_relations(scene, contact, config.temperature), 1e-6, 1 - 1e-6)
        terms = jnp.where(failure.target > 0.5, jnp.log(prob), jnp.log1p(-prob))
    return jnp.sum(failure.weight * terms)


def prior_violation(failure: FailureScene, scene: Scene, workspace_radius: float) -> jax.Array:
    """Summed squared violations (metres^2): interpenetration, unsupported, out of workspace.

    - interpenetration: for valid pairs with a movable member, neither resting in or on the
      other (directly or down a chain of supports), the smallest overlap of their world
      bounding boxes over x, y, z;
    - unsupported: how far a movable object's centre lies outside its parent's footprint;
    - workspace: how far a movable object is past workspace_radius from its failure pose.
    """
    mask, movable = scene.mask.astype(bool), failure.movable.astype(bool)
    half = aabb_half_extents(scene.half_extents, scene.yaw)
    gap = jnp.abs(scene.pos[:, None, :] - scene.pos[None, :, :])
    overlap = jnp.min(jax.nn.relu(half[:, None, :] + half[None, :, :] - gap - 1e-3), axis=-1)
    k = mask.shape[0]
    # An object rests on or in its parent, its parent's parent and so on: those may overlap.
    parent_of = (failure.parent[:, None] == jnp.arange(k)[None, :]).astype(jnp.float32)
    related = parent_of
    for _ in range(k - 1):
        related = jnp.minimum(related + related @ parent_of, 1.0)
    related = related > 0
    pair = mask[:, None] & mask[None, :] & ~jnp.eye(k, dtype=bool) & ~related & ~related.T
    pair &= movable[:, None] | movable[None, :]
    penetration = 0.5 * jnp.sum(jnp.where(pair, overlap**2, 0.0))
    parent = jnp.clip(failure.parent, 0)
    # In the parent's frame: a container's children must clear its walls (footprint and wall
    # thickness), any other support just holds the centre.
    offset = scene.pos - scene.pos[parent]
    local = rotate_z(offset, scene.yaw[parent], inverse=True)[:, :2]
    child = aabb_half_extents(scene.half_extents, scene.yaw - scene.yaw[parent])[:, :2]
    in_container = (scene.kind[parent] == CONTAINER)[:, None]
    room = scene.half_extents[parent, :2] - jnp.where(in_container,
                                                      child + MAX_CONTAINER_WALL, 0.0)
    outside = jax.nn.relu(jnp.abs(local) - room)
    has_support = movable & (failure.parent >= 0)
    unsupported = jnp.sum(jnp.where(has_support[:, None], outside**2, 0.0))
    travel = jnp.abs(scene.pos[:, :2] - failure.scene.pos[:, :2])
    away = jnp.sum(jnp.where(movable[:, None], jax.nn.relu(travel - workspace_radius)**2, 0.0))
    return penetration + unsupported + away


def state_log_prob(model, config: ObjectiveConfig, particle: jax.Array, context) -> jax.Array:
    """Log p(S) of DESIGN section 6 for one state particle [K * 3]; context = (params, failure).

    relation log-likelihood - Chamfer(Psi(S), O^F) / (2 sigma_o^2) + log prior(S).
    """
    params, failure = context
    scene = pose_scene(failure, particle, config.yaw_scale)
    points = rendered(failure, scene, config.num_points)
    relation = relation_log_likelihood(model, params, failure, scene, points, config)
    chamfer = scene_chamfer_distance(points, failure.observed_points,
                                     failure.movable & failure.observed_mask)
    violation = prior_violation(failure, scene, config.workspace_radius)
    return (config.relation_weight * relation - chamfer / (2.0 * config.chamfer_sigma**2)
            - config.prior_weight * violation / config.prior_scale**2)


def state_latents(model, params, failure: FailureScene, particle: jax.Array,
                  config: ObjectiveConfig) -> jax.Array:
    """[K, D] model latents of a state particle's rendered scene (shared by its actions)."""
    scene = pose_scene(failure, particle, config.yaw_scale)
    points = rendered(failure, scene, config.num_points)
    return model.encode(params, points, scene.mask, scene.kind, scene.half_extents)


def predicted_entropy(model, params, failure: FailureScene, latents: jax.Array,
                      action: jax.Array) -> jax.Array:
    """H[p_theta(R' | Psi(S), a)]: summed entropy of the post-skill relations of valid pairs.

    The relations are decoded from the dynamics' own next latents (SkillEffectModel.predict):
    a carry gate's re-encoding of moved points (SkillEffectNet.step) is left out, which changes
    nothing while the gate is still zero, as it is in every one-shot repair of the base model.
    """
    scene = failure.scene
    skill = failure.skill._replace(params=action)
    next_latents, _ = model.predict(params, latents, scene.mask, scene.kind, skill)
    logits = model.decode_relations(params, next_latents, scene.mask)
    mask = scene.mask.astype(bool)
    pair = mask[:, None] & mask[None, :] & ~jnp.eye(mask.shape[0], dtype=bool)
    return jnp.sum(jnp.where(pair[..., None], bernoulli_entropy(logits), 0.0))


def action_log_prob(model, config: ObjectiveConfig, action: jax.Array, context) -> jax.Array:
    """Log q(a | S) = beta H + log N(a; a^F, sigma_a^2) - bound violations, for one action [2].

    context = (params, failure, latents): the latents of the state S (state_latents).
    """
    params, failure, latents = context
    entropy = predicted_entropy(model, params, failure, latents, action)
    anchor = failure.skill.params
    gaussian = -jnp.sum((action - anchor) ** 2) / (2.0 * config.action_sigma**2)
    outside = jax.nn.relu(failure.low - action) + jax.nn.relu(action - failure.high)
    bound = -jnp.sum(outside**2) / config.prior_scale**2
    return config.entropy_weight * entropy + gaussian + bound


def skill_bounds(skill: Skill, scene: Scene, skeletons=()) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) [2] of a skill's continuous arguments.

    From the first skeleton step with the same skill, object and support when one is given;
    otherwise the support's top (pick_place) or +-0.15 m (push).
    """
    for skeleton in skeletons:
        for step in skeleton:
            same_support = step.skill != PICK_PLACE or int(step.support) == int(skill.support)
            if int(step.skill) == int(skill.skill) and int(step.obj) == int(skill.obj) \
                    and same_support:
                return np.asarray(step.low, np.float32), np.asarray(step.high, np.float32)
    if int(skill.skill) == PICK_PLACE:
        half = np.asarray(scene.half_extents)[int(skill.support), :2]
        return (-half).astype(np.float32), half.astype(np.float32)
    return np.full(2, -0.15, np.float32), np.full(2, 0.15, np.float32)
