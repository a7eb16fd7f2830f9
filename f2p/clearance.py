"""Placement clearance: how deep a plan's placements overlap objects still standing there."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from f2p.scene import CONTAINER, FIXTURE, PICK_PLACE

# An object rides on or in another, and moves with it, when its centre lies over the other's
# footprint and it either stands on it (its bottom at least this much higher) or sits in it
# (the other is a container whose footprint holds its own, bottoms within this of each other:
# perception noise moves a cloud's lowest points by millimetres).
RIDE_TOLERANCE = 0.02


def footprints(points: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-object axis-aligned boxes of point clouds.

    Args:
      points: [K, P, 3] per-object clouds in the world frame.

    Returns:
      (xy centre [K, 2], xy half sizes [K, 2], bottom z [K]): yawed objects get the box that
      holds their cloud, so their footprint is conservative.
    """
    low, high = jnp.min(points, axis=1), jnp.max(points, axis=1)
    return (low[:, :2] + high[:, :2]) / 2, (high[:, :2] - low[:, :2]) / 2, low[:, 2]


def rides_on(points: jax.Array, kind: jax.Array) -> jax.Array:
    """[K, K] bool: entry (k, c) when object k rests on or in object c (never k == c).

    Args:
      points: [K, P, 3] per-object clouds; kind: [K] object kinds.
    """
    centre, half, bottom = footprints(points)
    over = jnp.all(jnp.abs(centre[:, None, :] - centre[None, :, :]) <= half[None, :, :], axis=-1)
    stands_on = bottom[:, None] >= bottom[None, :] + RIDE_TOLERANCE
    fits = jnp.all(half[:, None, :] <= half[None, :, :], axis=-1) & (kind == CONTAINER)[None, :]
    sits_in = fits & (bottom[:, None] >= bottom[None, :] - RIDE_TOLERANCE)
    return over & (stands_on | sits_in) & ~jnp.eye(points.shape[0], dtype=bool)


def placement_overlap(points: jax.Array, mask: jax.Array, kind: jax.Array, skill: jax.Array,
                      obj: jax.Array, support: jax.Array, step_params: jax.Array) -> jax.Array:
    """Summed overlap depth (metres) of a plan's placements with objects still in place.

    Step t of a pick_place puts obj[t]'s footprint at the support's centre + step_params[t]
    (the world's convention, isaac_bridge.mujoco_skills.pick_place). An obstacle of step t is a
    valid, non-fixture object other than obj[t] and support[t] that no earlier step has moved,
    directly or by carrying it, and that does not ride on obj[t] itself. The overlap of a pair
    is the smaller of its x and y penetration depths, 0 when the footprints are apart.

    Args:
      points: [K, P, 3] the observation's clouds before the plan.
      mask, kind: [K] valid slots and object kinds.
      skill, obj, support: [T] int skeleton arrays (support unused where skill != pick_place).
      step_params: [T, 2] the planned (dx, dy).

    Returns:
      [] the overlap summed over steps and obstacles (differentiable almost everywhere).
    """
    points = jnp.where(mask[:, None, None], points, 0.0)  # padded slots may hold NaN
    centre, half, _ = footprints(points)
    num_slots = points.shape[0]
    riders = rides_on(points, kind)
    picked = jax.nn.one_hot(obj, num_slots, dtype=bool)  # [T, K]
    # picked_before[t, k]: some step s < t picked k (an exclusive cumulative OR over steps).
    picked_before = jnp.cumsum(picked, axis=0) - picked > 0
    moved_before = picked_before | jnp.any(picked_before[:, None, :] & riders[None], axis=-1)
    target = centre[jnp.maximum(support, 0)] + step_params  # [T, 2]
    gap = jnp.abs(target[:, None, :] - centre[None, :, :])  # [T, K, 2]
    depth = jnp.min(jax.nn.relu(half[obj][:, None, :] + half[None, :, :] - gap), axis=-1)
    slots = jnp.arange(num_slots)
    obstacle = (mask[None, :] & (kind[None, :] != FIXTURE) & ~moved_before
                & (slots[None, :] != obj[:, None]) & (slots[None, :] != support[:, None])
                & ~riders.T[obj] & (skill == PICK_PLACE)[:, None])
    return jnp.sum(jnp.where(obstacle, depth, 0.0))
