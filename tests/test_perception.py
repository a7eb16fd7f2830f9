"""Tests of isaac_bridge.perception (render, noise, sampling) and isaac_bridge.real2sim (fits)."""

import numpy as np
import open3d as o3d
import pytest

from f2p import tasks
from f2p.scene import CONTAINER, FIXTURE, ITEM, make_scene
from isaac_bridge import mjcf
from isaac_bridge.perception import (
    ROBOT_SIDE_CAMERA,
    NoiseModel,
    Observation,
    farthest_point_sample,
    object_mesh,
    render_images,
    render_observation,
)
from isaac_bridge.real2sim import fit_scene, fit_upright_box, largest_cluster, min_area_rectangle

TABLE = ([0.35, 0.5, 0.02], [0.4, 0.0, -0.02])  # half extents, centre: top surface at z = 0


def _tabletop(items, k_max=8):
    """items: list of (kind, half_extents, xy, yaw, base_z); the table is slot 0."""
    kind, half, pos, yaw = [FIXTURE], [TABLE[0]], [TABLE[1]], [0.0]
    for item_kind, item_half, xy, item_yaw, base_z in items:
        kind.append(item_kind)
        half.append(item_half)
        pos.append([xy[0], xy[1], base_z + item_half[2]])
        yaw.append(item_yaw)
    return make_scene(kind, half, pos, yaw, k_max=k_max)


def _cup_scene():
    """Table, a free item, a cup (container) holding a small item, and a second free item."""
    cup_half = np.array([0.06, 0.06, 0.05])
    floor = mjcf.support_surface_z(CONTAINER, cup_half[2], cup_half)
    return _tabletop([
        (ITEM, [0.03, 0.04, 0.04], (0.3, -0.2), 0.3, 0.0),
        (CONTAINER, cup_half, (0.45, 0.1), 0.2, 0.0),
        (ITEM, [0.02, 0.025, 0.02], (0.45, 0.1), 1.1, floor),
        (ITEM, [0.025, 0.025, 0.05], (0.55, -0.05), -0.4, 0.0),
    ])


def _local(scene, slot, points):
    """World points -> the slot's box frame."""
    cos, sin = np.cos(scene.yaw[slot]), np.sin(scene.yaw[slot])
    offset = points - scene.pos[slot]
    return np.stack([cos * offset[:, 0] + sin * offset[:, 1],
                     -sin * offset[:, 0] + cos * offset[:, 1], offset[:, 2]], -1)


def _distance_outside_box(scene, slot, points):
    """Distance of each point to the slot's outer box (0 inside or on it)."""
    excess = np.abs(_local(scene, slot, points)) - scene.half_extents[slot]
    return np.linalg.norm(np.maximum(excess, 0.0), axis=-1)


def test_container_mesh_is_open_top_with_floor():
    half = np.array([0.06, 0.05, 0.04])
    vertices, triangles = object_mesh(CONTAINER, half, [0.0, 0.0, 0.04], 0.0)
    raycaster = o3d.t.geometry.RaycastingScene()
    raycaster.add_triangles(o3d.core.Tensor(vertices), o3d.core.Tensor(triangles))
    # Straight down through the centre (past the open top) and through a wall.
    rays = np.array([[0, 0, 1, 0, 0, -1], [0.059, 0, 1, 0, 0, -1]], np.float32)
    t_hit = raycaster.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    floor_top = mjcf.support_surface_z(CONTAINER, 0.04, half)
    np.testing.assert_allclose(1.0 - t_hit, [floor_top, 0.08], atol=1e-5)


def test_points_lie_on_their_own_objects_surfaces():
    scene = _cup_scene()
    observation = render_observation(scene)
    assert observation.points.shape == (8, 128, 3) and observation.points.dtype == np.float32
    np.testing.assert_array_equal(observation.mask, scene.mask)
    assert np.all(observation.num_visible[:5] > 0) and np.all(observation.num_visible[5:] == 0)
    for slot in range(5):
        points = observation.points[slot]
        assert _distance_outside_box(scene, slot, points).max() < 1e-4
        # On the surface: some coordinate sits on a face (the outer box, or a container wall).
        gap = np.min(scene.half_extents[slot] - np.abs(_local(scene, slot, points)), axis=-1)
        limit = 1e-4 if scene.kind[slot] != CONTAINER else 0.02
        assert gap.max() < limit
        for other in range(5):
            if other != slot and scene.kind[other] != CONTAINER:
                # Never strictly inside another solid box.
                depth = np.min(scene.half_extents[other] - np.abs(_local(scene, other, points)), -1)
                assert depth.max() < 1e-4
    # The item in the cup is seen only above the cup's floor.
    floor_top = mjcf.support_surface_z(CONTAINER, scene.pos[2, 2], scene.half_extents[2])
    assert observation.points[3, :, 2].min() >= floor_top - 1e-4


def _task_scenes(task_name, count=3):
    """Seeded typical scenes of a task: `count` per split, with 3, 5 and 7 movable objects."""
    task, rng = tasks.get_task(task_name), np.random.default_rng(7)
    return [(split, task.sample_scene(rng, objects, split)) for split in tasks.SPLITS
            for objects in tasks.OBJECT_COUNTS[:count]]


@pytest.mark.parametrize("task_name", ["tabletop", "transport", "packing"])
def test_fixtures_and_every_movable_object_are_seen_in_task_scenes(task_name):
    for split, scene in _task_scenes(task_name):
        observation = render_observation(scene)
        valid = np.flatnonzero(scene.mask)
        is_fixture = scene.kind[valid] == FIXTURE
        fixtures, movables = valid[is_fixture], valid[~is_fixture]
        assert fixtures.size and movables.size
        # The fixture (table B, the shelf) is a large surface: many hits, 128 distinct samples.
        assert np.all(observation.num_visible[fixtures] >= 1000), (split, observation.num_visible)
        for slot in fixtures:
            assert len(np.unique(observation.points[slot], axis=0)) == 128
        # Every movable object, tables apart or items in a bag included, is seen by a few pixels.
        assert np.all(observation.num_visible[movables] >= 16), (split, observation.num_visible)
        for slot in valid:  # world frame: on the slot's own box
            assert _distance_outside_box(scene, slot, observation.points[slot]).max() < 1e-4


@pytest.mark.parametrize("task_name", ["tabletop", "transport", "packing"])
def test_cameras_fit_the_whole_scene_tightly(task_name):
    for _, scene in _task_scenes(task_name, count=1):
        images = render_images(scene)
        for labels in images.labels:
            hit = labels >= 0
            # Nothing is cut by the image border...
            assert not (hit[0].any() or hit[-1].any() or hit[:, 0].any() or hit[:, -1].any())
            # ...and the scene fills most of the width or the height (no wasted pixels).
            rows, cols = np.flatnonzero(hit.any(1)), np.flatnonzero(hit.any(0))
            filled = max((np.ptp(rows) + 1) / hit.shape[0], (np.ptp(cols) + 1) / hit.shape[1])
            assert filled > 0.8, filled
        # The render covers every valid slot and only valid slots.
        seen = set(np.unique(images.labels)) - {-1}
        assert seen == set(np.flatnonzero(scene.mask))


def test_only_faces_toward_the_camera_are_seen():
    scene = _tabletop([(ITEM, [0.04, 0.04, 0.04], (0.4, 0.0), 0.0, 0.0)])
    images = render_images(scene, cameras=(ROBOT_SIDE_CAMERA,))
    local = _local(scene, 1, images.points[images.labels == 1])
    on_front = np.isclose(local[:, 0], -0.04, atol=1e-4)
    on_top = np.isclose(local[:, 2], 0.04, atol=1e-4)
    # The camera is on the -x side, level with the box centre in y: only the -x face and the top.
    assert on_front.sum() > 100 and on_top.sum() > 100
    assert np.all(on_front | on_top)


def test_occluded_objects_get_fewer_or_no_points():
    small = (ITEM, [0.025, 0.025, 0.025], (0.5, 0.0), 0.0, 0.0)
    alone = render_observation(_tabletop([small, (ITEM, [0.02, 0.02, 0.02], (0.5, 0.3), 0.0, 0.0)]))
    # A tall box between the robot-side cameras and the small item hides most of it.
    blocker = (ITEM, [0.03, 0.08, 0.12], (0.4, 0.0), 0.0, 0.0)
    hidden = render_observation(_tabletop([small, blocker]))
    assert 0 < hidden.num_visible[1] < alone.num_visible[1] / 2
    # Under the table no camera sees it: the slot stays valid, flagged by num_visible == 0.
    under = render_observation(_tabletop([(ITEM, [0.03, 0.03, 0.03], (0.4, 0.0), 0.0, -0.2),
                                          (ITEM, [0.03, 0.03, 0.03], (0.4, 0.2), 0.0, 0.0)]))
    assert under.mask[1] and under.num_visible[1] == 0
    np.testing.assert_array_equal(under.points[1], 0.0)
    assert under.num_visible[2] > 0


def test_noise_free_render_is_exact_and_deterministic():
    scene = _cup_scene()
    first = render_observation(scene)
    second = render_observation(scene, rng=np.random.default_rng(5))
    for field in Observation._fields:
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))


def _noise_stats(scene, level, seed):
    observation = render_observation(scene, noise_level=level, rng=np.random.default_rng(seed))
    distance = [_distance_outside_box(scene, slot, observation.points[slot]).mean()
                for slot in range(1, 5)]
    return np.mean(distance), observation.num_visible[:5].sum()


def test_noise_grows_with_level_and_is_seeded():
    scene = _cup_scene()
    levels = (0.0, 0.3, 0.6, 1.0)
    stats = np.array([[_noise_stats(scene, level, seed) for seed in range(3)] for level in levels])
    mean_distance, visible = stats[..., 0].mean(1), stats[..., 1].mean(1)
    assert mean_distance[0] < 1e-5
    assert np.all(np.diff(mean_distance) > 0), mean_distance
    assert np.all(np.diff(visible) < 0), visible
    a = render_observation(scene, noise_level=0.5, rng=np.random.default_rng(3))
    b = render_observation(scene, noise_level=0.5, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a.points, b.points)


def test_segmentation_bleed_relabels_points_to_neighbours():
    scene = _cup_scene()
    bleed_only = NoiseModel(jitter_std=0.0, dropout=0.0)
    clean = render_images(scene)
    observation = render_observation(scene, noise_level=1.0, rng=np.random.default_rng(0),
                                     noise=bleed_only)
    assert observation.num_visible.sum() == np.sum(clean.labels >= 0)  # nothing dropped
    # The free items' segments now hold table points off their boxes.
    bled = [_distance_outside_box(scene, slot, observation.points[slot]).max() for slot in (1, 4)]
    assert min(bled) > 0.003


def test_farthest_point_sample_pads_and_spreads():
    few = np.arange(15, dtype=np.float32).reshape(5, 3)
    padded = farthest_point_sample(few, 12)
    np.testing.assert_array_equal(padded[:5], few)
    np.testing.assert_array_equal(padded[5:10], few)
    np.testing.assert_array_equal(farthest_point_sample(np.zeros((0, 3)), 4), 0.0)
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 30), np.linspace(0, 1, 30), [0.0]), -1)
    sampled = farthest_point_sample(grid.reshape(-1, 3), 16)
    assert len(np.unique(sampled, axis=0)) == 16
    pairwise = np.linalg.norm(sampled[:, None] - sampled[None], axis=-1) + np.eye(16)
    assert pairwise.min() > 0.2  # 16 well-spread points on a unit square, not a clump


def test_render_rejects_bad_input():
    scene = _cup_scene()
    with pytest.raises(ValueError, match="noise_level"):
        render_observation(scene, noise_level=1.5)
    with pytest.raises(ValueError, match="rng"):
        render_observation(scene, noise_level=0.2)
    with pytest.raises(ValueError, match="unbatched"):
        render_observation(type(scene)(*(np.stack([field] * 2) for field in scene)))
    with pytest.raises(ValueError, match="num_points"):
        render_observation(scene, num_points=0)
    with pytest.raises(ValueError, match="cameras"):
        render_observation(scene, cameras=(ROBOT_SIDE_CAMERA._replace(elevation_deg=90.0),))
    with pytest.raises(ValueError, match="margin"):
        render_observation(scene, cameras=(ROBOT_SIDE_CAMERA._replace(margin=0.9),))


def _canonical(yaw, half_xy):
    """Fold a yaw into [-pi/4, pi/4), swapping the xy half sizes on odd quarter turns."""
    quarter = np.round(yaw / (np.pi / 2))
    folded = yaw - quarter * np.pi / 2
    return folded, (half_xy[::-1] if int(quarter) % 2 else half_xy)


def test_min_area_rectangle_recovers_a_rotated_rectangle():
    rng = np.random.default_rng(0)
    local = rng.uniform(-1, 1, (200, 2)) * [0.05, 0.02]
    local = np.concatenate([local, [[0.05, 0.02], [-0.05, 0.02], [0.05, -0.02], [-0.05, -0.02]]])
    yaw = 0.9
    rotation = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    centre, fitted_yaw, half = min_area_rectangle(local @ rotation.T + [0.3, -0.1])
    np.testing.assert_allclose(centre, [0.3, -0.1], atol=1e-9)
    expected_yaw, expected_half = _canonical(yaw, np.array([0.05, 0.02]))
    np.testing.assert_allclose([fitted_yaw, *half], [expected_yaw, *expected_half], atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_scene_recovers_unoccluded_boxes(seed):
    rng = np.random.default_rng(seed)
    items = [(ITEM, rng.uniform(0.015, 0.04, 3), xy, rng.uniform(-np.pi, np.pi), 0.0)
             for xy in ((0.25, -0.25), (0.3, 0.25), (0.55, -0.05))]
    scene = _tabletop(items)
    fitted = fit_scene(render_observation(scene), scene.kind, fixtures=scene)
    np.testing.assert_array_equal(fitted.mask, scene.mask)
    np.testing.assert_array_equal(fitted.kind, scene.kind)
    np.testing.assert_allclose(fitted.pos[0], scene.pos[0])  # the fixture is copied
    for slot in (1, 2, 3):
        yaw, half_xy = _canonical(float(scene.yaw[slot]), scene.half_extents[slot, :2])
        np.testing.assert_allclose(fitted.pos[slot], scene.pos[slot], atol=2e-3)
        np.testing.assert_allclose(fitted.half_extents[slot, :2], half_xy, atol=2e-3)
        np.testing.assert_allclose(fitted.half_extents[slot, 2], scene.half_extents[slot, 2],
                                   atol=1e-3)
        assert abs(fitted.yaw[slot] - yaw) < 0.03


def test_fit_scene_puts_hidden_bottoms_on_supports():
    scene = _cup_scene()
    fitted = fit_scene(render_observation(scene), scene.kind, fixtures=scene)
    for slot in (1, 2, 3, 4):  # free items and the cup stand on the table; the item on its floor
        np.testing.assert_allclose(fitted.pos[slot, 2] - fitted.half_extents[slot, 2],
                                   scene.pos[slot, 2] - scene.half_extents[slot, 2], atol=2e-3)
        np.testing.assert_allclose(fitted.pos[slot, :2], scene.pos[slot, :2], atol=3e-3)


def test_fit_scene_degrades_gracefully_with_noise():
    scene = _cup_scene()
    errors = []
    for level in (0.2, 1.0):
        observation = render_observation(scene, noise_level=level, rng=np.random.default_rng(1))
        fitted = fit_scene(observation, scene.kind, fixtures=scene, trim=0.03)
        errors.append(np.abs(fitted.pos[1:5, :2] - scene.pos[1:5, :2]).mean())
    assert errors[0] < 0.01 and errors[0] < errors[1] < 0.08


def test_largest_cluster_drops_a_separate_group():
    rng = np.random.default_rng(0)
    body = rng.uniform(0, 0.05, (60, 3))
    stray = rng.uniform(0, 0.01, (5, 3)) + [0.3, 0.0, 0.0]
    kept = largest_cluster(np.concatenate([body, stray]))
    np.testing.assert_array_equal(np.sort(kept, axis=0), np.sort(body, axis=0))


def test_fit_scene_handles_unseen_objects_and_bad_input():
    scene = _tabletop([(ITEM, [0.03, 0.03, 0.03], (0.4, 0.0), 0.0, -0.2),
                       (ITEM, [0.03, 0.03, 0.03], (0.4, 0.2), 0.0, 0.0)])
    observation = render_observation(scene)
    masked = fit_scene(observation, scene.kind, fixtures=scene)
    assert not masked.mask[1] and masked.mask[2]
    from_prior = fit_scene(observation, scene.kind, fixtures=scene, prior=scene)
    assert from_prior.mask[1]
    np.testing.assert_allclose(from_prior.pos[1], scene.pos[1])
    with pytest.raises(ValueError, match="kind"):
        fit_scene(observation, scene.kind[:3], fixtures=scene)
    with pytest.raises(ValueError, match="observation.points"):
        fit_scene(observation._replace(points=observation.points[0]), scene.kind)
    with pytest.raises(ValueError, match="fixtures"):
        fit_scene(observation, scene.kind, fixtures=scene._replace(kind=np.zeros(8, np.int32)))
    with pytest.raises(ValueError, match="points"):
        fit_upright_box(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="trim"):
        fit_upright_box(np.zeros((3, 3)), trim=0.4)
