"""Posed-box geometry: the one yaw rotation and footprint (NumPy or JAX), rendering, Chamfer."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from f2p.scene import CONTAINER, Scene

# The 8 corners of the unit box [-1, 1]^3, in binary order (x slowest, z fastest). A NumPy
# constant: a jnp one would create the JAX backend at import, before a main can set XLA flags.
UNIT_CORNERS = np.array(
    [[sx, sy, sz] for sx in (-1.0, 1.0) for sy in (-1.0, 1.0) for sz in (-1.0, 1.0)],
    dtype=np.float32,
)


def array_namespace(*arrays):
    """The array module of the arguments: jax.numpy when any is a JAX array, else numpy.

    Tracers count as JAX arrays, so a function written against the returned module is
    traceable under jit, vmap and grad, and NumPy callers (task samplers, the bridge) stay in
    NumPy: no device transfer, and their float64 arithmetic is kept.
    """
    return jnp if any(isinstance(array, jax.Array) for array in arrays) else np


# Rodrigues' formula about z: R(yaw) = cos (I - z z^T) + sin [z]_x + z z^T. float32 constants,
# so that the result keeps the dtype of cos(yaw) (0 and +-1 are exact in every float type).
_PLANE = np.diag([1.0, 1.0, 0.0]).astype(np.float32)
_CROSS_Z = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
_AXIS_Z = np.diag([0.0, 0.0, 1.0]).astype(np.float32)


def yaw_rotation(yaw):
    """Rotation matrices about z: the one yaw rotation of the core and the bridge.

    Args:
      yaw: [...] angles in radians; NumPy (or Python scalars) or JAX.

    Returns:
      [..., 3, 3] matrices R with world = R @ local, NumPy for NumPy input (in the dtype of
      cos(yaw)), JAX for JAX input. Entries are exactly cos, -sin, sin, 0 and 1.

    """
    xp = array_namespace(yaw)
    # Three small array operations rather than stacking nine entries: NumPy callers build one
    # matrix per object in Python loops, where np.stack's overhead would dominate.
    cos, sin = xp.cos(yaw)[..., None, None], xp.sin(yaw)[..., None, None]
    return cos * _PLANE + sin * _CROSS_Z + _AXIS_Z


def rotate_z(vectors, yaw, inverse: bool = False):
    """Rotate vectors about z by yaw_rotation(yaw), entry by entry (no matrix product).

    Args:
      vectors: [..., 2] xy or [..., 3] xyz vectors (z is unchanged).
      yaw: angles in radians, broadcasting against vectors[..., 0].
      inverse: apply R(yaw)^T instead (world offsets into the frame of a box of that yaw).

    Returns:
      The rotated vectors, in the broadcast shape; NumPy for NumPy inputs.

    """
    xp = array_namespace(vectors, yaw)
    vectors = xp.asarray(vectors)
    rotation = yaw_rotation(yaw)
    if inverse:
        rotation = xp.swapaxes(rotation, -1, -2)
    x, y = vectors[..., 0], vectors[..., 1]
    # Sums of two products, as written out by hand: a matrix product (BLAS) may fuse them.
    rotated = [rotation[..., row, 0] * x + rotation[..., row, 1] * y for row in range(2)]
    if vectors.shape[-1] == 3:
        rotated.append(xp.broadcast_to(vectors[..., 2], rotated[0].shape))
    return xp.stack(rotated, axis=-1)


def local_to_world(local: jnp.ndarray, pos: jnp.ndarray, yaw: jnp.ndarray) -> jnp.ndarray:
    """Map box-frame points to the world frame.

    Args:
      local: [K, P, 3] points in each box's frame.
      pos: [K, 3] box centres.
      yaw: [K] box yaws.

    Returns:
      [K, P, 3] world points.

    """
    rotation = yaw_rotation(yaw)
    return jnp.einsum("kab,kpb->kpa", rotation, local) + pos[:, None, :]


def box_corners(scene: Scene) -> jnp.ndarray:
    """Return the [K, 8, 3] world corners of the posed boxes of an unbatched scene."""
    half = jnp.asarray(scene.half_extents)
    local = UNIT_CORNERS[None, :, :] * half[:, None, :]
    return local_to_world(local, jnp.asarray(scene.pos), jnp.asarray(scene.yaw))


def aabb_half_extents(half_extents, yaw):
    """Half sizes [..., 3] of the world axis-aligned bounding boxes of yawed upright boxes.

    The one footprint of the core and the bridge: a box yawed by theta spans
    |cos| hx + |sin| hy along x and |sin| hx + |cos| hy along y; z is unchanged because objects
    stay upright. NumPy in, NumPy out (in the promoted dtype of the inputs); JAX in, JAX out.
    """
    xp = array_namespace(half_extents, yaw)
    half_extents = xp.asarray(half_extents)
    cos, sin = xp.abs(xp.cos(yaw)), xp.abs(xp.sin(yaw))
    hx, hy, hz = half_extents[..., 0], half_extents[..., 1], half_extents[..., 2]
    return xp.stack([cos * hx + sin * hy, sin * hx + cos * hy, hz], axis=-1)


def aabb(scene: Scene) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Return (aabb_min, aabb_max), each [K, 3], of the posed boxes of an unbatched scene."""
    pos = jnp.asarray(scene.pos)
    half = aabb_half_extents(jnp.asarray(scene.half_extents), jnp.asarray(scene.yaw))
    return pos - half, pos + half


def _face_table():
    """Faces of the unit box [-1, 1]^3: centres, tangents, normals, inner flags; F = 11.

    Faces 0-5 are the outer faces (-x, +x, -y, +y, -z, +z). Faces 6-10 are a container's
    interior seen through its open top: the inner walls, modelled with zero thickness on the
    outer wall planes with inward normals, and the inner floor on the bottom plane facing up.
    """
    centres, tangents, normals, inner = [], [], [], []
    eye = np.eye(3)
    for axis in range(3):
        for sign in (-1.0, 1.0):
            others = [a for a in range(3) if a != axis]
            centres.append(sign * eye[axis])
            tangents.append(eye[others])
            normals.append(sign * eye[axis])
            inner.append(False)
    for axis in range(2):
        for sign in (-1.0, 1.0):
            centres.append(sign * eye[axis])
            tangents.append(eye[[1 - axis, 2]])
            normals.append(-sign * eye[axis])
            inner.append(True)
    centres.append(-eye[2])
    tangents.append(eye[[0, 1]])
    normals.append(eye[2])
    inner.append(True)
    as_array = functools.partial(np.asarray, dtype=np.float32)
    return as_array(centres), as_array(tangents), as_array(normals), np.asarray(inner)


FACE_CENTRES, FACE_TANGENTS, FACE_NORMALS, FACE_INNER = _face_table()
TOP_FACE = 5
# R2 low-discrepancy sequence constants (1 / g, 1 / g^2 with g the plastic number): any
# contiguous block of the sequence covers the unit square evenly.
_PLASTIC = 1.324717957244746
R2_STEP = np.array([1.0 / _PLASTIC, 1.0 / _PLASTIC**2], np.float32)


def _face_weights(kind, half, pos, yaw, camera_positions):
    """Return [K, F] sampling weights: face areas times whether each face is rendered."""
    tangent_half = jnp.einsum("fta,ka->kft", jnp.asarray(FACE_TANGENTS), half)
    area = 4.0 * tangent_half[..., 0] * tangent_half[..., 1]
    is_container = (kind == CONTAINER)[:, None]
    inner = jnp.asarray(FACE_INNER)[None, :]
    top = (jnp.arange(len(FACE_INNER)) == TOP_FACE)[None, :]
    if camera_positions is None:
        # Full surface: an item's 6 faces; a container's walls and bottom (open top). Its interior
        # faces lie on the same planes, so they would only double the density there.
        rendered = ~inner & ~(top & is_container)
        return area * rendered
    cameras = jnp.asarray(camera_positions).reshape(-1, 3)
    rotation = yaw_rotation(yaw)
    normal = jnp.einsum("kab,fb->kfa", rotation, jnp.asarray(FACE_NORMALS))
    centre = pos[:, None, :] + jnp.einsum(
        "kab,kfb->kfa", rotation, jnp.asarray(FACE_CENTRES)[None] * half[:, None, :]
    )
    to_camera = cameras[None, None, :, :] - centre[:, :, None, :]  # [K, F, C, 3]
    facing = jnp.einsum("kfa,kfca->kfc", normal, to_camera) > 0
    # The interior is seen only through the opening: the camera must be above the rim.
    above_rim = cameras[None, None, :, 2] > (pos[:, 2] + half[:, 2])[:, None, None]
    seen = jnp.where(inner[..., None], facing & above_rim, facing).any(axis=-1)
    rendered = jnp.where(is_container, ~top, ~inner) & seen
    # A camera inside a box sees nothing of it: fall back to the full surface, never to nothing.
    fallback = jnp.where(is_container, ~inner & ~top, ~inner)
    rendered = jnp.where(rendered.any(axis=-1, keepdims=True), rendered, fallback)
    return area * rendered


def render_points(scene: Scene, num_points: int = 128, camera_positions=None) -> jnp.ndarray:
    """Differentiable rendering Psi(S): a fixed, area-weighted point pattern on the box surfaces.

    Points are spread over the rendered faces of each box in proportion to face area: point p
    takes the face where the cumulative area fraction passes (p + 1/2) / P, and its position on
    that face comes from an R2 low-discrepancy sequence restarted per face, scaled by the half
    extents. Points are rigidly attached to the box, so they are smooth in pos and yaw; with
    cameras, a face's share of points jumps only when the face turns edge-on to a camera.

    A container (kind 1) is an open-top box. Without cameras it renders its outer walls and
    bottom. With cameras it renders the faces that face at least one camera among its outer
    walls and bottom, and, for cameras above its rim, its inner walls (on the outer wall
    planes: walls have zero thickness here) and inner floor (on the bottom plane). Occlusion
    by other objects is not modelled (isaac_bridge.perception does it with ray casting).

    Args:
      scene: an unbatched Scene (vmap for batches).
      num_points: P, points per object (static).
      camera_positions: optional [C, 3] world camera positions; only faces whose outward
        normal points toward at least one camera get points (all P of them).

    Returns:
      [K, P, 3] world points; masked slots get the points of their padding box.

    """
    if num_points < 1:
        raise ValueError(f"num_points: must be >= 1, got {num_points}")
    kind = jnp.asarray(scene.kind)
    half = jnp.asarray(scene.half_extents)
    pos = jnp.asarray(scene.pos)
    yaw = jnp.asarray(scene.yaw)
    weights = _face_weights(kind, half, pos, yaw, camera_positions)  # [K, F]
    cumulative = jnp.cumsum(weights, axis=-1) / jnp.sum(weights, axis=-1, keepdims=True)
    quantile = (jnp.arange(num_points) + 0.5) / num_points
    face = jnp.sum(quantile[None, :, None] >= cumulative[:, None, :], axis=-1)  # [K, P]
    face = jnp.minimum(face, len(FACE_INNER) - 1)  # guards cumulative[-1] rounding below 1
    one_hot = jax.nn.one_hot(face, len(FACE_INNER), dtype=jnp.int32)  # [K, P, F]
    first_point = jnp.cumsum(one_hot.sum(axis=1), axis=-1) - one_hot.sum(axis=1)  # [K, F]
    rank = jnp.arange(num_points)[None, :] - jnp.take_along_axis(first_point, face, axis=-1)
    uv = jnp.mod(0.5 + rank[..., None] * jnp.asarray(R2_STEP), 1.0) * 2.0 - 1.0  # [K, P, 2]
    centres = jnp.asarray(FACE_CENTRES)[face]  # [K, P, 3]
    tangents = jnp.asarray(FACE_TANGENTS)[face]  # [K, P, 2, 3]
    unit = centres + jnp.einsum("kpt,kpta->kpa", uv.astype(centres.dtype), tangents)
    return local_to_world(unit * half[:, None, :], pos, yaw)


_FAR = 1e10
"""Squared distance standing in for +inf to masked points (finite, so gradients stay clean)."""


def chamfer_distance(points_a, points_b, mask_a=None, mask_b=None) -> jnp.ndarray:
    """Symmetric Chamfer distance between two point clouds.

    mean over valid a of min over valid b of |a - b|^2, plus the same from b to a (the sum of
    the two directed means, as in PyTorch3D). A direction whose source or target has no valid
    point contributes 0.

    Args:
      points_a: [P, 3]; points_b: [Q, 3].
      mask_a: optional [P] bool, valid points of a; mask_b: optional [Q] bool.

    Returns:
      [] squared metres.

    """
    points_a, points_b = jnp.asarray(points_a), jnp.asarray(points_b)
    mask_a = jnp.ones(points_a.shape[0], bool) if mask_a is None else jnp.asarray(mask_a, bool)
    mask_b = jnp.ones(points_b.shape[0], bool) if mask_b is None else jnp.asarray(mask_b, bool)
    # Differences rather than |a|^2 + |b|^2 - 2ab: exact zeros and clean gradients.
    squared = jnp.sum((points_a[:, None, :] - points_b[None, :, :]) ** 2, axis=-1)  # [P, Q]

    def directed(distances, source_mask, target_mask):
        # A finite stand-in for +inf keeps gradients NaN-free; masked targets never win the min.
        nearest = jnp.min(jnp.where(target_mask[None, :], distances, _FAR), axis=-1)
        valid = source_mask & target_mask.any()
        return jnp.sum(jnp.where(valid, nearest, 0.0)) / jnp.maximum(jnp.sum(valid), 1)

    return directed(squared, mask_a, mask_b) + directed(squared.T, mask_b, mask_a)


def scene_chamfer_distance(
    points_a, points_b, object_mask, mask_a=None, mask_b=None
) -> jnp.ndarray:
    """Mean over valid objects of the Chamfer distance between their segments (matched by slot).

    Args:
      points_a: [K, P, 3]; points_b: [K, Q, 3] per-object clouds.
      object_mask: [K] bool, objects to compare.
      mask_a: optional [K, P] bool valid points; mask_b: optional [K, Q] bool.

    Returns:
      [] squared metres (0 when no object is valid).

    """
    points_a, points_b = jnp.asarray(points_a), jnp.asarray(points_b)
    k, p, q = points_a.shape[0], points_a.shape[1], points_b.shape[1]
    mask_a = jnp.ones((k, p), bool) if mask_a is None else jnp.asarray(mask_a, bool)
    mask_b = jnp.ones((k, q), bool) if mask_b is None else jnp.asarray(mask_b, bool)
    per_object = jax.vmap(chamfer_distance)(points_a, points_b, mask_a, mask_b)
    object_mask = jnp.asarray(object_mask, bool)
    total = jnp.sum(jnp.where(object_mask, per_object, 0.0))
    return total / jnp.maximum(jnp.sum(object_mask), 1)
