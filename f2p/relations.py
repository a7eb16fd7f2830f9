"""The 9 pairwise relations of DESIGN section 3 from posed boxes and contacts, hard and smooth."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from f2p import geometry
from f2p.scene import CONTAINER, REL, Scene

TAN_CONE = math.tan(math.radians(80.0))
"""Cone widening: j's extent on a cross axis grows by this much per metre i lies past j's face."""
BOUNDARY_MIN_EXTENT = 0.2
"""A support surface has both x and y AABB sizes above this (metres)."""
BOUNDARY_EDGE_DISTANCE = 0.10
"""i is at j's boundary when its centre is within this distance of one of j's AABB edge lines."""
INSIDE_BOTTOM_SLACK = 0.03
"""i's bottom may sit up to this far below j's bottom (thick floors, settling) and be inside."""
INSIDE_RIM_DEPTH = 0.03
"""i's bottom must be at least this far below j's top (the rim) to be inside."""
INSIDE_TOP_CLEARANCE = 0.14
"""i's top must be below j's top plus this (tall items stick out of a cup)."""

# Relation index -> (axis, sign) of the side of j on which i lies, in RELATION_NAMES order:
# left +y, right -y, front -x (toward the robot), behind +x, below -z, above +z.
DIRECTIONS = ((1, 1.0), (1, -1.0), (0, -1.0), (0, 1.0), (2, -1.0), (2, 1.0))
# Index of the opposite direction: left<->right, front<->behind, below<->above.
OPPOSITE = (1, 0, 3, 2, 5, 4)


class RelationMargins(NamedTuple):
    """Signed margins in metres shared by the hard and smooth relations of one scene.

    Each rule holds when all of its margins are >= 0 (non-strict) or > 0 (strict), as listed.

    Attributes:
      side: [6, K, K, 6] one-sided cone test "i on direction d's side of j", d in relation order
        (left, right, front, behind, below, above); per test (non-strict): i's centre past j's
        far face, i's near face past j's centre, then for each cross axis (in x, y, z order
        skipping the test axis) i's centre above j's widened low face and below its widened
        high face.
      inside: [K, K, 7] (strict) i's AABB strictly within j's on x (2) and y (2); i's bottom above
        j's bottom - 0.03, below j's top - 0.03; i's top below j's top + 0.14.
      surface: [K, 2] (strict) j's AABB x and y sizes minus 0.2.
      edge: [K, K, 4] (strict) 0.10 minus the distance from i's centre to each of the lines
        through j's AABB edges x = min, x = max, y = min, y = max.
      container: [K] bool, slot j is a container (kind 1).
      pair_mask: [K, K] bool, both slots valid and i != j.

    """

    side: jnp.ndarray
    inside: jnp.ndarray
    surface: jnp.ndarray
    edge: jnp.ndarray
    container: jnp.ndarray
    pair_mask: jnp.ndarray


def _side_margins(lo, hi, centre, axis: int, sign: float) -> jnp.ndarray:
    """Return [K, K, 6] margins of the one-sided cone test "i on the (axis, sign) side of j"."""
    if sign < 0:
        # Mirror the world so that the -b side becomes the +b side; the cross-axis interval
        # tests are invariant under the mirror, so mirroring every axis is fine.
        lo, hi, centre = -hi, -lo, -centre
    centre_i, centre_j = centre[:, None, :], centre[None, :, :]
    low_i, low_j, high_j = lo[:, None, :], lo[None, :, :], hi[None, :, :]
    past_face = centre_i[..., axis] - high_j[..., axis]
    past_centre = low_i[..., axis] - centre_j[..., axis]
    # Clamp so that an i short of the face does not shrink the cone (smooth version's gradients).
    widen = TAN_CONE * jnp.maximum(past_face, 0.0)
    margins = [past_face, past_centre]
    for cross in (a for a in range(3) if a != axis):
        margins.append(centre_i[..., cross] - (low_j[..., cross] - widen))
        margins.append(high_j[..., cross] + widen - centre_i[..., cross])
    return jnp.stack(margins, axis=-1)


def relation_margins(scene: Scene) -> RelationMargins:
    """Compute the margins of every relation rule for all ordered pairs of an unbatched scene.

    Directional rules use the world axis-aligned bounding boxes of the yawed boxes
    (Points2Plans cone rule); contact is not geometric and is not part of the margins.
    """
    lo, hi = geometry.aabb(scene)
    centre = jnp.asarray(scene.pos)
    side = jnp.stack([_side_margins(lo, hi, centre, a, s) for a, s in DIRECTIONS])
    low_i, high_i = lo[:, None, :], hi[:, None, :]
    low_j, high_j = lo[None, :, :], hi[None, :, :]
    inside = jnp.stack(
        [
            high_j[..., 0] - high_i[..., 0],
            low_i[..., 0] - low_j[..., 0],
            high_j[..., 1] - high_i[..., 1],
            low_i[..., 1] - low_j[..., 1],
            low_i[..., 2] - (low_j[..., 2] - INSIDE_BOTTOM_SLACK),
            high_j[..., 2] - INSIDE_RIM_DEPTH - low_i[..., 2],
            high_j[..., 2] + INSIDE_TOP_CLEARANCE - high_i[..., 2],
        ],
        axis=-1,
    )
    surface = (hi - lo)[:, :2] - BOUNDARY_MIN_EXTENT
    centre_i = centre[:, None, :]
    edge_offsets = jnp.stack(
        [
            centre_i[..., 0] - low_j[..., 0],
            high_j[..., 0] - centre_i[..., 0],
            centre_i[..., 1] - low_j[..., 1],
            high_j[..., 1] - centre_i[..., 1],
        ],
        axis=-1,
    )
    edge = BOUNDARY_EDGE_DISTANCE - jnp.abs(edge_offsets)
    mask = jnp.asarray(scene.mask, bool)
    k = mask.shape[-1]
    pair_mask = mask[:, None] & mask[None, :] & ~jnp.eye(k, dtype=bool)
    container = jnp.asarray(scene.kind) == CONTAINER
    return RelationMargins(side, inside, surface, edge, container, pair_mask)


Step = Callable[[jnp.ndarray, bool], jnp.ndarray]


def _all(truth: jnp.ndarray) -> jnp.ndarray:
    """Conjunction over the last axis of truth values in [0, 1] (exact for 0/1)."""
    return jnp.prod(truth, axis=-1)


def _any(truth: jnp.ndarray) -> jnp.ndarray:
    """Disjunction over the last axis (noisy-or; exact for 0/1)."""
    return 1.0 - jnp.prod(1.0 - truth, axis=-1)


def _combine(margins: RelationMargins, contact: jnp.ndarray, step: Step) -> jnp.ndarray:
    """Write the 9 rules once over a truth function `step(margin, strict)` in [0, 1].

    Returns:
      [K, K, 9] float truth values, zero on the diagonal and on masked pairs.

    """
    one_sided = _all(step(margins.side, False))  # [6, K, K]
    # As in Points2Plans, a pair is judged from both objects: i is left of j when i passes the
    # +y test against j or j passes the -y test against i. This makes left(i, j) == right(j, i)
    # exactly, and e.g. a table is below an item on it even when its centre is far from the item.
    directional = [
        _any(jnp.stack([one_sided[d], one_sided[OPPOSITE[d]].T], axis=-1)) for d in range(6)
    ]
    above = directional[REL["above"]]
    large_surface = _all(step(margins.surface, True))[None, :]  # j's size, broadcast over i
    boundary = above * large_surface * _any(step(margins.edge, True))
    # Only containers have an interior; a solid box meeting the inside rule is interpenetrating.
    inside = _all(step(margins.inside, True)) * margins.container[None, :].astype(jnp.float32)
    relations = jnp.stack([*directional, contact, boundary, inside], axis=-1)
    return relations * margins.pair_mask[..., None].astype(jnp.float32)


def _hard_step(margin: jnp.ndarray, strict: bool) -> jnp.ndarray:
    return (margin > 0 if strict else margin >= 0).astype(jnp.float32)


def _check_pairwise(name: str, matrix, scene: Scene) -> None:
    k = jnp.shape(scene.kind)[-1]
    expected = tuple(jnp.shape(scene.kind)) + (k,)
    if tuple(jnp.shape(matrix)) != expected:
        raise ValueError(f"{name}: shape {jnp.shape(matrix)}, expected {expected} ([..., K, K])")


def _vmap_batch(function, scene: Scene, matrix):
    """Apply an unbatched (scene, [K, K]) function over any leading batch axes of the scene."""
    if jnp.ndim(scene.kind) == 1:
        return function(scene, matrix)
    return jax.vmap(lambda s, m: _vmap_batch(function, s, m))(scene, matrix)


@jax.jit
def _hard(scene: Scene, contact: jnp.ndarray) -> jnp.ndarray:
    def one(s, c):
        c = jnp.asarray(c, bool)
        symmetric = (c | c.T).astype(jnp.float32)  # contact is mutual
        return _combine(relation_margins(s), symmetric, _hard_step) > 0.5

    return _vmap_batch(one, scene, contact)


def hard_relations(scene: Scene, contact) -> jnp.ndarray:
    """Label the 9 relations of DESIGN section 3 for all ordered pairs (i, j).

    Relation index order is scene.RELATION_NAMES: left, right, front, behind, below, above,
    contact, boundary, inside. World axes: x away from the robot, y to its left, z up.

    - Directions (Points2Plans cone rule on world AABBs of the yawed boxes): i is on the +b side
      of j when i's centre is at or past j's far face on b, i's near face is at or past j's
      centre on b, and on each cross axis i's centre lies within j's extent widened by
      tan(80 deg) times i's distance past j's face. "left" = +y, "right" = -y, "front" = -x,
      "behind" = +x, "below" = -z, "above" = +z, so "above" means on top of, or higher than
      within the (wide) cone. A pair is judged from both objects (i passes the +b test against
      j, or j passes the -b test against i), hence left(i, j) == right(j, i), front/behind and
      below/above likewise.
    - contact: the simulator's contact matrix, symmetrised (contact[i, j] or contact[j, i]).
    - boundary: i is above j, j's AABB is larger than 0.2 m on both x and y, and i's centre is
      within 0.10 m of one of the four lines through j's AABB edges.
    - inside: j is a container (kind 1; solid boxes have no interior), i's AABB lies strictly
      within j's on x and y, j's bottom - 0.03 < i's bottom < j's top - 0.03, and i's top <
      j's top + 0.14. So an item resting on a cup's floor is inside it; an item resting on the
      rim, above the rim, or beside the cup is not.

    Args:
      scene: a Scene, unbatched ([K] fields) or batched with any leading axes; NumPy or JAX.
      contact: [..., K, K] bool contact matrix matching the scene's batch shape.

    Returns:
      [..., K, K, 9] bool relations; the diagonal and pairs with a masked slot are all False.

    """
    _check_pairwise("contact", contact, scene)
    return _hard(scene, contact)


def smooth_relations(scene: Scene, contact_prob, temperature: float = 0.01) -> jnp.ndarray:
    """Differentiable relations: the rules of hard_relations with sigmoid(margin / temperature).

    Each inequality of a rule becomes sigmoid(margin / temperature), conjunctions are products
    and disjunctions noisy-ors, so when every margin is much larger than the temperature in
    magnitude the result equals hard_relations. Pure and jit/vmap/grad friendly.

    Args:
      scene: a Scene, unbatched or batched with any leading axes.
      contact_prob: [..., K, K] contact probabilities in [0, 1], symmetrised with a maximum.
      temperature: sigmoid scale in metres (> 0); smaller is sharper.

    Returns:
      [..., K, K, 9] float in [0, 1]; the diagonal and masked pairs are exactly 0.

    """
    _check_pairwise("contact_prob", contact_prob, scene)
    if isinstance(temperature, int | float) and not temperature > 0:
        raise ValueError(f"temperature: must be > 0 metres, got {temperature}")

    def step(margin, strict):
        del strict  # a sigmoid is 1/2 at the margin either way
        return jax.nn.sigmoid(margin / temperature)

    def one(s, p):
        p = jnp.asarray(p, jnp.float32)
        return _combine(relation_margins(s), jnp.maximum(p, p.T), step)

    return _vmap_batch(one, scene, contact_prob)
