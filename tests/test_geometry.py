"""Tests of f2p.geometry: poses, AABBs, surface rendering and Chamfer distance."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from f2p import geometry
from f2p.scene import CONTAINER, FIXTURE, ITEM, K_MAX, Scene, make_scene

ITEM_HALF = [0.03, 0.05, 0.02]
CUP_HALF = [0.06, 0.06, 0.05]
TABLE_HALF = [0.4, 0.5, 0.02]


def three_objects(yaw=(0.3, 0.0, 0.0)):
    return make_scene(
        [ITEM, CONTAINER, FIXTURE],
        [ITEM_HALF, CUP_HALF, TABLE_HALF],
        [[0.5, 0.2, 0.74], [0.5, -0.1, 0.77], [0.5, 0.0, 0.7]],
        list(yaw),
    )


def to_local(scene, points):
    """World points [K, P, 3] -> box frame, divided by half extents (so the surface is |.|=1)."""
    rotation = geometry.yaw_rotation(jnp.asarray(scene.yaw))
    local = jnp.einsum("kba,kpb->kpa", rotation, points - scene.pos[:, None, :])
    return np.asarray(local / scene.half_extents[:, None, :])


def outer_face(local):
    """Index (2 * axis + (sign > 0)) of the box face each unit-box point lies on: [..., P]."""
    axis = np.argmax(np.abs(local), axis=-1)
    sign = np.take_along_axis(local, axis[..., None], axis=-1)[..., 0] > 0
    return 2 * axis + sign


def random_scenes(seed, batch):
    rng = np.random.default_rng(seed)
    return Scene(
        kind=rng.integers(0, 3, size=(batch, K_MAX)).astype(np.int32),
        half_extents=rng.uniform(0.02, 0.2, size=(batch, K_MAX, 3)).astype(np.float32),
        pos=rng.uniform(-0.5, 0.5, size=(batch, K_MAX, 3)).astype(np.float32),
        yaw=rng.uniform(-np.pi, np.pi, size=(batch, K_MAX)).astype(np.float32),
        mask=np.arange(K_MAX)[None, :] < rng.integers(1, K_MAX + 1, size=(batch, 1)),
    )


def test_yaw_rotation_is_a_rotation_about_z():
    yaw = jnp.array([0.0, 0.7, -2.0])
    rotation = geometry.yaw_rotation(yaw)
    np.testing.assert_allclose(
        jnp.einsum("kab,kcb->kac", rotation, rotation),
        np.broadcast_to(np.eye(3), (3, 3, 3)),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        rotation[1] @ jnp.array([1.0, 0, 0]), [np.cos(0.7), np.sin(0.7), 0], atol=1e-6
    )
    np.testing.assert_allclose(rotation[:, 2], np.broadcast_to([0, 0, 1.0], (3, 3)), atol=1e-7)


def test_corners_and_aabb():
    scene = three_objects()
    corners = np.asarray(geometry.box_corners(scene))
    assert corners.shape == (K_MAX, 8, 3)
    # An unyawed box's corners are centre +- half extents.
    np.testing.assert_allclose(
        corners[2].min(0), np.subtract([0.5, 0.0, 0.7], TABLE_HALF), atol=1e-6
    )
    lo, hi = geometry.aabb(scene)
    np.testing.assert_allclose(lo, corners.min(axis=1), atol=1e-6)
    np.testing.assert_allclose(hi, corners.max(axis=1), atol=1e-6)
    # The yawed item's AABB is wider than its box on x: |cos| hx + |sin| hy.
    expected = np.cos(0.3) * 0.03 + np.sin(0.3) * 0.05
    np.testing.assert_allclose(hi[0, 0] - 0.5, expected, rtol=1e-5)


def test_render_points_lie_on_the_surface_in_area_proportion():
    scene = three_objects()
    points = geometry.render_points(scene, num_points=128)
    assert points.shape == (K_MAX, 128, 3)
    local = to_local(scene, points)
    np.testing.assert_allclose(np.abs(local[:3]).max(-1), 1.0, atol=1e-5)  # on the surface
    # Item: face areas are proportional to the products of the other two half extents.
    hx, hy, hz = ITEM_HALF
    area = np.array([hy * hz, hy * hz, hx * hz, hx * hz, hx * hy, hx * hy])
    counts = np.bincount(outer_face(local[0]), minlength=6)
    np.testing.assert_allclose(counts, 128 * area / area.sum(), atol=1.0)
    # No two points coincide, and each face's points are spread (not all on a line).
    assert (
        np.min(np.linalg.norm(points[0, :, None] - points[0, None, :], axis=-1) + np.eye(128))
        > 1e-3
    )
    np.testing.assert_array_equal(points, geometry.render_points(scene, num_points=128))


def test_container_has_an_open_top():
    scene = three_objects()
    local = to_local(scene, geometry.render_points(scene, num_points=256))
    counts = np.bincount(outer_face(local[1]), minlength=6)
    assert counts[5] == 0  # +z: the opening
    assert np.all(counts[:5] > 20)


def facing_camera(scene, points, camera):
    """[K, P] whether the outer face of each point faces the camera."""
    local = to_local(scene, points)
    face = outer_face(local)
    axis, sign = face // 2, np.where(face % 2 == 1, 1.0, -1.0)
    normal_local = np.eye(3)[axis] * sign[..., None]
    rotation = np.asarray(geometry.yaw_rotation(jnp.asarray(scene.yaw)))
    normal = np.einsum("kab,kpb->kpa", rotation, normal_local)
    return np.sum(normal * (camera - np.asarray(points)), axis=-1) > 0


@pytest.mark.parametrize("camera", [[-1.0, 0.3, 1.5], [2.0, -1.0, 1.0], [0.5, 0.0, 3.0]])
def test_visible_faces_only(camera):
    scene = three_objects(yaw=(0.3, 0.4, -0.2))
    camera = np.array(camera)
    points = geometry.render_points(scene, 128, camera_positions=camera[None])
    facing = facing_camera(scene, points, camera)
    assert facing[0].all() and facing[2].all()  # items and fixtures: no back faces at all
    everything = geometry.render_points(scene, 128)
    assert not facing_camera(scene, everything, camera)[0].all()  # which the full render has


def test_container_interior_needs_a_camera_above_the_rim():
    scene = three_objects(yaw=(0.0, 0.0, 0.0))
    cup = np.array([0.5, -0.1, 0.77])
    # From beside the cup and below its rim: only the near (-x) outer wall and nothing else.
    beside = geometry.render_points(scene, 64, camera_positions=(cup + [-1.0, 0.0, 0.0])[None])
    assert np.all(outer_face(to_local(scene, beside)[1]) == 0)
    # From above and in front: near outer wall, far inner wall (+x plane), side inner walls and
    # the inner floor; never the opening.
    above = geometry.render_points(scene, 256, camera_positions=(cup + [-1.0, 0.0, 1.0])[None])
    counts = np.bincount(outer_face(to_local(scene, above)[1]), minlength=6)
    assert counts[5] == 0 and np.all(counts[:5] > 10)


def test_two_cameras_see_the_union_of_faces():
    scene = three_objects()
    cameras = np.array([[-2.0, 0.0, 1.0], [3.0, 0.0, 1.0]])
    points = geometry.render_points(scene, 256, camera_positions=cameras)
    faces = outer_face(to_local(scene, points)[0])
    assert {0, 1} <= set(faces.tolist())  # both the -x and +x faces of the item
    assert 4 not in faces.tolist()  # the bottom faces away from both cameras


def test_render_points_jit_vmap_and_gradients():
    scenes = random_scenes(0, 4)
    cameras = np.array([[-1.0, 0.0, 1.5]])
    render = jax.jit(
        jax.vmap(functools.partial(geometry.render_points, num_points=32, camera_positions=cameras))
    )
    batched = render(scenes)
    assert batched.shape == (4, K_MAX, 32, 3) and np.all(np.isfinite(batched))
    single = geometry.render_points(jax.tree.map(lambda x: x[2], scenes), 32, cameras)
    np.testing.assert_allclose(batched[2], single, atol=1e-6)

    scene = jax.tree.map(lambda x: x[0], scenes)
    target = np.random.default_rng(1).normal(size=(K_MAX, 32, 3))
    with jax.enable_x64(True):
        pos0, yaw0 = jnp.asarray(scene.pos, jnp.float64), jnp.asarray(scene.yaw, jnp.float64)

        def objective(pos, yaw):
            posed = scene._replace(pos=pos, yaw=yaw, half_extents=scene.half_extents * 1.0)
            return jnp.sum(geometry.render_points(posed, 32, cameras) * target)

        check_gradient(objective, pos0, yaw0)


def check_gradient(objective, pos0, yaw0, eps=1e-6):
    grad_pos, grad_yaw = jax.jit(jax.grad(objective, argnums=(0, 1)))(pos0, yaw0)
    assert np.all(np.isfinite(grad_pos)) and np.all(np.isfinite(grad_yaw))
    assert np.abs(grad_yaw).max() > 1e-4
    rng = np.random.default_rng(2)
    for _ in range(3):
        d_pos, d_yaw = rng.normal(size=pos0.shape), rng.normal(size=yaw0.shape)
        numeric = (
            objective(pos0 + eps * d_pos, yaw0 + eps * d_yaw)
            - objective(pos0 - eps * d_pos, yaw0 - eps * d_yaw)
        ) / (2 * eps)
        analytic = jnp.sum(grad_pos * d_pos) + jnp.sum(grad_yaw * d_yaw)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_chamfer_basic_values():
    a = np.random.default_rng(3).normal(size=(50, 3)).astype(np.float32)
    b = np.random.default_rng(4).normal(size=(70, 3)).astype(np.float32)
    assert float(geometry.chamfer_distance(a, a)) == 0.0
    np.testing.assert_allclose(
        geometry.chamfer_distance(a, b), geometry.chamfer_distance(b, a), rtol=1e-6
    )
    # One point each, 1 m apart: 1 m^2 each way.
    np.testing.assert_allclose(geometry.chamfer_distance([[0.0, 0, 0]], [[1.0, 0, 0]]), 2.0)
    # Brute force reference.
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
    np.testing.assert_allclose(
        geometry.chamfer_distance(a, b), d2.min(1).mean() + d2.min(0).mean(), rtol=1e-5
    )


def test_chamfer_masks_ignore_missing_points():
    a = np.random.default_rng(5).normal(size=(40, 3)).astype(np.float32)
    b = np.random.default_rng(6).normal(size=(30, 3)).astype(np.float32)
    junk = np.full((10, 3), 100.0, np.float32)
    padded_a, padded_b = np.concatenate([a, junk]), np.concatenate([b, junk])
    mask_a, mask_b = np.arange(50) < 40, np.arange(40) < 30
    np.testing.assert_allclose(
        geometry.chamfer_distance(padded_a, padded_b, mask_a, mask_b),
        geometry.chamfer_distance(a, b),
        rtol=1e-6,
    )
    empty = np.zeros(40, bool)
    assert float(geometry.chamfer_distance(padded_a, padded_b, mask_a, empty)) == 0.0


def test_scene_chamfer_uses_the_object_mask_and_has_fd_gradients():
    scene = three_objects()
    observed = geometry.render_points(scene, 32)
    object_mask = np.asarray(scene.mask)
    assert float(geometry.scene_chamfer_distance(observed, observed, object_mask)) == 0.0
    moved = scene._replace(pos=scene.pos + np.float32(0.01))
    rendered = geometry.render_points(moved, 32)
    value = geometry.scene_chamfer_distance(rendered, observed, object_mask)
    assert float(value) > 0
    # Masked slots (3..7) never count: scrambling their points changes nothing.
    scrambled = rendered.at[3:].set(50.0)
    np.testing.assert_allclose(
        geometry.scene_chamfer_distance(scrambled, observed, object_mask), value, rtol=1e-6
    )
    # Shift only the first object: the mean over the 3 objects is its chamfer / 3.
    only_first = rendered.at[1:].set(observed[1:])
    np.testing.assert_allclose(
        geometry.scene_chamfer_distance(only_first, observed, object_mask),
        geometry.chamfer_distance(rendered[0], observed[0]) / 3,
        rtol=1e-5,
    )

    with jax.enable_x64(True):
        pos0 = jnp.asarray(scene.pos, jnp.float64) + 0.01
        yaw0 = jnp.asarray(scene.yaw, jnp.float64) + 0.05
        observed64 = jnp.asarray(observed, jnp.float64)

        def objective(pos, yaw):
            posed = scene._replace(pos=pos, yaw=yaw, half_extents=scene.half_extents * 1.0)
            cloud = geometry.render_points(posed, 32, np.array([[-1.0, 0.0, 1.5]]))
            return geometry.scene_chamfer_distance(cloud, observed64, object_mask)

        check_gradient(objective, pos0, yaw0)


def test_bad_num_points():
    with pytest.raises(ValueError, match="num_points"):
        geometry.render_points(three_objects(), num_points=0)


def test_yaw_rotation_and_footprint_keep_numpy_inputs_in_numpy():
    yaw = np.array([0.0, 0.7, -2.0])
    rotation = geometry.yaw_rotation(yaw)
    assert isinstance(rotation, np.ndarray) and rotation.dtype == np.float64
    np.testing.assert_allclose(rotation, geometry.yaw_rotation(jnp.asarray(yaw)), atol=1e-6)
    assert geometry.yaw_rotation(np.float32(0.3)).dtype == np.float32
    assert geometry.yaw_rotation(0.3).shape == (3, 3)
    half = np.array([[0.03, 0.05, 0.02]] * 3)
    extents = geometry.aabb_half_extents(half, yaw)
    assert isinstance(extents, np.ndarray) and extents.dtype == np.float64
    np.testing.assert_allclose(extents, geometry.aabb_half_extents(jnp.asarray(half),
                                                                   jnp.asarray(yaw)), atol=1e-6)
    # The AABB is the extent of the rotated corners.
    corners = np.einsum("kab,cb->kca", rotation, geometry.UNIT_CORNERS * half[0])
    np.testing.assert_allclose(extents, np.abs(corners).max(axis=1), atol=1e-7)


def test_rotate_z_matches_the_matrix_and_inverts():
    rng = np.random.default_rng(0)
    vectors, yaw = rng.normal(size=(5, 3)), rng.uniform(-np.pi, np.pi, 5)
    rotated = geometry.rotate_z(vectors, yaw)
    np.testing.assert_allclose(rotated, np.einsum("kab,kb->ka", geometry.yaw_rotation(yaw),
                                                  vectors), atol=1e-12)
    np.testing.assert_allclose(geometry.rotate_z(rotated, yaw, inverse=True), vectors,
                               atol=1e-12)
    # xy offsets, one yaw broadcast over many vectors, and JAX under jit.
    xy = geometry.rotate_z(vectors[:, :2], 0.5)
    np.testing.assert_allclose(xy, geometry.rotate_z(vectors, 0.5)[:, :2])
    jitted = jax.jit(geometry.rotate_z)(jnp.asarray(vectors[:, :2], jnp.float32), 0.5)
    assert isinstance(jitted, jax.Array)
    np.testing.assert_allclose(jitted, xy, atol=1e-6)
