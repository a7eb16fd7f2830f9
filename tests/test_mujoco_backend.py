"""Tests of the MuJoCo backend on hand-built scenes (real physics, no fakes)."""

import os

import mujoco
import numpy as np
import pytest

from f2p.scene import CONTAINER, FIXTURE, ITEM, PICK_PLACE, PUSH, REL, Scene, Skill, make_scene
from f2p.world import (
    FELL,
    INTERPENETRATION,
    INVALID_INPUT,
    OK,
    SIM_ERROR,
    STATUS_NAMES,
    TIPPED,
    Simulator,
)
from isaac_bridge import mjcf, protocol
from isaac_bridge.mujoco_backend import MujocoSimulator, item_seed
from isaac_bridge.mujoco_item import simulate_chunk

TABLE = ((0.4, 0.6, 0.02), (0.0, 0.0, 0.38))  # top at z = 0.40
CUP = (0.06, 0.06, 0.05)
CUBE = (0.025, 0.025, 0.025)
CUP_Z, CUBE_Z = 0.45, 0.425


def _scene(objects):
    """objects: (kind, half_extents, pos) triples after the table in slot 0."""
    kinds = [FIXTURE] + [kind for kind, _, _ in objects]
    halves = [TABLE[0]] + [half for _, half, _ in objects]
    poses = [TABLE[1]] + [pos for _, _, pos in objects]
    return make_scene(kinds, halves, poses)


def _skill(kind, obj, support, dx, dy):
    return Skill(np.int32(kind), np.int32(obj), np.int32(support), np.array([dx, dy], np.float32))


def _stack(trees):
    return type(trees[0])(*(np.stack(fields) for fields in zip(*trees, strict=True)))


def _run(simulator, pairs, seed=0):
    scenes, skills = zip(*pairs, strict=True)
    return simulator.execute(_stack(scenes), _stack(skills), seed=seed)


@pytest.fixture(scope="module")
def local():
    return MujocoSimulator(num_workers=0)


@pytest.fixture(scope="module")
def pooled():
    with MujocoSimulator(num_workers=2) as simulator:
        yield simulator


EMPTY_CUP = _scene([(CONTAINER, CUP, (0.1, 0.1, CUP_Z)), (ITEM, CUBE, (-0.1, -0.1, CUBE_Z)),
                    (ITEM, CUBE, (-0.1, 0.15, CUBE_Z))])
LOADED_CUP = _scene([(CONTAINER, CUP, (0.1, 0.1, CUP_Z)),
                     (ITEM, CUBE, (0.1, 0.1, 0.40 + 0.0072 + 0.025)),
                     (ITEM, CUBE, (-0.1, 0.15, CUBE_Z))])


def test_container_model_is_a_floor_and_four_walls():
    parts = mjcf.container_parts(np.array(CUP))
    corners = np.array([[centre - half, centre + half] for centre, half in parts])
    np.testing.assert_allclose(corners[:, 0].min(axis=0), -np.array(CUP), atol=1e-9)
    np.testing.assert_allclose(corners[:, 1].max(axis=0), np.array(CUP), atol=1e-9)
    assert len(parts) == 5
    model, layout = mjcf.build_model(EMPTY_CUP)
    assert model.nq == 3 * 7  # the table is static: only the cup and two cubes are free
    assert layout.qpos_of_slot[0] == -1 and layout.weld_of_slot[0] == -1
    assert (layout.body_of_slot[:4] > 0).all() and (layout.body_of_slot[4:] == -1).all()


def test_item_placed_into_container_ends_inside(local):
    outcome = _run(local, [(EMPTY_CUP, _skill(PICK_PLACE, 2, 1, 0.0, 0.0))])
    assert outcome.status.tolist() == [OK] and outcome.ok.all()
    assert not outcome.relations_pre[0, 2, 1, REL["inside"]]
    assert outcome.relations_post[0, 2, 1, REL["inside"]]
    assert outcome.contact_post[0, 2, 1] and outcome.contact_post[0, 1, 2]
    np.testing.assert_allclose(outcome.post.pos[0, 2, :2], [0.1, 0.1], atol=0.01)
    # The untouched cube and the cup stay where they were.
    np.testing.assert_allclose(outcome.post.pos[0, [1, 3]], outcome.pre.pos[0, [1, 3]], atol=2e-3)


def test_moving_a_loaded_container_carries_its_contents(local):
    outcome = _run(local, [(LOADED_CUP, _skill(PICK_PLACE, 1, 0, -0.2, -0.25))])
    assert outcome.ok.all(), STATUS_NAMES[outcome.status[0]]
    assert outcome.relations_pre[0, 2, 1, REL["inside"]]
    assert outcome.relations_post[0, 2, 1, REL["inside"]]
    np.testing.assert_allclose(outcome.post.pos[0, 1, :2], [-0.2, -0.25], atol=0.01)
    np.testing.assert_allclose(outcome.post.pos[0, 2, :2], outcome.post.pos[0, 1, :2], atol=0.02)
    # The cup rests on the table again, with its contents.
    assert outcome.contact_post[0, 0, 1] and outcome.contact_post[0, 1, 2]


def test_item_placed_beyond_the_table_edge_falls(local):
    outcome = _run(local, [(EMPTY_CUP, _skill(PICK_PLACE, 2, 0, 0.48, 0.0))])
    assert outcome.status.tolist() == [FELL] and outcome.ok.all()
    assert outcome.fell[0].tolist() == [False, False, True, False] + [False] * 4
    assert outcome.post.pos[0, 2, 2] < 0.1  # on the floor, far below the table top (0.40)
    assert not outcome.contact_post[0, 2, 0]


def test_push_into_a_blocked_neighbour_stops_with_contact(local):
    # cube 1 | cube 2 | a wall fixture standing on the table: cube 2 cannot move on +x.
    scene = _scene([(ITEM, CUBE, (0.0, 0.0, CUBE_Z)), (ITEM, CUBE, (0.06, 0.0, CUBE_Z)),
                    (FIXTURE, (0.01, 0.15, 0.05), (0.096, 0.0, 0.45))])
    free = _scene([(ITEM, CUBE, (0.0, 0.0, CUBE_Z)), (ITEM, CUBE, (0.0, 0.3, CUBE_Z))])
    outcome = _run(local, [(scene, _skill(PUSH, 1, -1, 0.15, 0.0)),
                           (free, _skill(PUSH, 1, -1, 0.15, 0.0))])
    assert outcome.status.tolist() == [OK, OK]
    blocked_moved = outcome.post.pos[0, 1, 0] - outcome.pre.pos[0, 1, 0]
    assert blocked_moved < 0.02  # commanded 0.15
    assert outcome.contact_post[0, 1, 2] and outcome.relations_post[0, 1, 2, REL["contact"]]
    np.testing.assert_allclose(outcome.post.pos[0, 2], outcome.pre.pos[0, 2], atol=3e-3)
    # The same push without an obstacle reaches the commanded displacement.
    np.testing.assert_allclose(outcome.post.pos[1, 1, :2] - outcome.pre.pos[1, 1, :2],
                               [0.15, 0.0], atol=0.01)


def test_push_moves_a_loaded_container_with_its_contents(local):
    outcome = _run(local, [(LOADED_CUP, _skill(PUSH, 1, -1, -0.1, -0.1))])
    assert outcome.ok.all()
    np.testing.assert_allclose(outcome.post.pos[0, 1, :2] - outcome.pre.pos[0, 1, :2],
                               [-0.1, -0.1], atol=0.015)
    assert outcome.relations_post[0, 2, 1, REL["inside"]]


def test_settled_scene_stays_still(local):
    outcome = _run(local, [(LOADED_CUP, _skill(PUSH, 3, -1, 0.0, 0.0))])
    assert outcome.ok.all()
    valid = LOADED_CUP.mask
    np.testing.assert_allclose(outcome.pre.pos[0][valid], LOADED_CUP.pos[valid], atol=2e-3)
    np.testing.assert_allclose(outcome.post.pos[0], outcome.pre.pos[0], atol=5e-4)
    np.testing.assert_allclose(outcome.post.yaw[0], outcome.pre.yaw[0], atol=1e-3)
    # Resting contacts count: everything touches what it stands on.
    contact = outcome.contact_pre[0]
    assert contact[1, 0] and contact[2, 1] and contact[3, 0] and not contact[2, 0]
    np.testing.assert_array_equal(contact, contact.T)
    np.testing.assert_array_equal(outcome.contact_post[0], contact)


def _mixed_batch():
    return [(EMPTY_CUP, _skill(PICK_PLACE, 2, 1, 0.01, -0.01)),
            (LOADED_CUP, _skill(PICK_PLACE, 1, 0, -0.2, -0.2)),
            (LOADED_CUP, _skill(PUSH, 3, -1, 0.1, -0.05)),
            (EMPTY_CUP, _skill(PICK_PLACE, 3, 0, 0.2, -0.3))]


def test_same_seed_gives_the_same_outcome_for_any_worker_count(pooled):
    noisy = protocol.PhysicsParams(pose_noise=0.005, yaw_noise=0.05, size_noise=0.05)
    with MujocoSimulator(num_workers=2, physics=noisy) as two, \
            MujocoSimulator(num_workers=0, physics=noisy) as one:
        first = _run(two, _mixed_batch(), seed=7)
        again = _run(two, _mixed_batch(), seed=7)
        alone = _run(one, _mixed_batch(), seed=7)
        other = _run(two, _mixed_batch(), seed=8)
    assert first.ok.all()
    for result in (again, alone):
        for name in ("pos", "yaw", "half_extents"):
            np.testing.assert_array_equal(getattr(result.post, name), getattr(first.post, name))
        np.testing.assert_array_equal(result.relations_post, first.relations_post)
        np.testing.assert_array_equal(result.status, first.status)
    assert not np.array_equal(other.pre.pos, first.pre.pos)  # the noise follows the seed


def test_bad_items_are_flagged_and_the_rest_of_the_batch_is_fine(pooled, local):
    nan_pose = EMPTY_CUP._replace(pos=EMPTY_CUP.pos.copy())
    nan_pose.pos[2, 0] = np.nan
    empty = EMPTY_CUP._replace(mask=np.zeros_like(EMPTY_CUP.mask))
    overlap = _scene([(ITEM, CUBE, (0.0, 0.0, CUBE_Z)), (ITEM, CUBE, (0.005, 0.0, CUBE_Z))])
    # Valid for validate_scene, but MuJoCo refuses to compile a body of (almost) zero mass.
    speck = _scene([(ITEM, CUBE, (0.0, 0.0, CUBE_Z)), (ITEM, (1e-9,) * 3, (0.2, 0.0, 0.40))])
    good = (EMPTY_CUP, _skill(PICK_PLACE, 2, 1, 0.0, 0.0))
    batch = [good,
             (nan_pose, _skill(PICK_PLACE, 2, 1, 0.0, 0.0)),
             (EMPTY_CUP, _skill(PICK_PLACE, 2, 6, 0.0, 0.0)),  # slot 6 is padding
             (empty, _skill(PUSH, 1, -1, 0.1, 0.0)),
             (overlap, _skill(PUSH, 1, -1, 0.1, 0.0)),
             (EMPTY_CUP, _skill(PUSH, 0, -1, 0.1, 0.0)),  # fixtures cannot be moved
             (speck, _skill(PUSH, 1, -1, 0.1, 0.0)),
             good]
    outcome = _run(pooled, batch)
    assert outcome.status.tolist() == [
        OK, INVALID_INPUT, INVALID_INPUT, INVALID_INPUT,
        INTERPENETRATION, INVALID_INPUT, SIM_ERROR, OK]
    assert outcome.ok.tolist() == [True] + [False] * 6 + [True]
    for index in (1, 2, 3, 5, 6):  # nothing simulated: no contacts, no relations
        assert not outcome.relations_post[index].any() and not outcome.contact_post[index].any()
    single = _run(local, [good])
    for index in (0, 7):
        np.testing.assert_array_equal(outcome.post.pos[index], single.post.pos[0])
        np.testing.assert_array_equal(outcome.relations_post[index], single.relations_post[0])


CRASH_SEED = item_seed(5, 2)
"""The seed of item 2 of a batch executed with seed 5: the item whose worker crashes."""


def _crash_on_marked_item(items, physics, settings):
    """Test stand-in for MujocoSimulator.chunk_runner: the worker dies on the marked item.

    os._exit ends the worker process at once, as a crash inside MuJoCo or the OOM killer would;
    every other chunk is simulated as usual.
    """
    if any(seed == CRASH_SEED for _, _, seed in items):
        os._exit(3)
    return simulate_chunk(items, physics, settings)


class _CrashingSimulator(MujocoSimulator):
    chunk_runner = staticmethod(_crash_on_marked_item)


def test_a_crashed_worker_flags_its_items_sim_error_and_the_pool_recovers(local):
    batch = _mixed_batch() * 2  # 8 items: one item per chunk over 2 workers
    expected = _run(local, batch, seed=5)
    with _CrashingSimulator(num_workers=2) as simulator:
        crashed = _run(simulator, batch, seed=5)
        assert crashed.status[2] == SIM_ERROR
        # The broken pool loses the chunks that had not come back yet; the others are intact.
        lost = crashed.status == SIM_ERROR
        assert not crashed.ok[lost].any()
        assert not crashed.relations_post[lost].any() and not crashed.contact_post[lost].any()
        np.testing.assert_array_equal(crashed.status[~lost], expected.status[~lost])
        np.testing.assert_array_equal(crashed.post.pos[~lost], expected.post.pos[~lost])
        # The next batch runs on a fresh pool (no item of it carries the crashing seed).
        assert CRASH_SEED not in [item_seed(6, index) for index in range(len(batch))]
        recovered = _run(simulator, batch, seed=6)
    again = _run(local, batch, seed=6)
    assert recovered.ok.all()
    np.testing.assert_array_equal(recovered.status, again.status)
    np.testing.assert_array_equal(recovered.post.pos, again.post.pos)
    np.testing.assert_array_equal(recovered.relations_post, again.relations_post)


def test_malformed_batches_and_settings_raise():
    with pytest.raises(ValueError, match="scenes.kind"):
        MujocoSimulator(num_workers=0).execute(EMPTY_CUP, _skill(PUSH, 1, -1, 0.1, 0.0))
    with pytest.raises(ValueError, match="skills.skill"):
        MujocoSimulator(num_workers=0).execute(
            _stack([EMPTY_CUP]), _stack([_skill(PUSH, 1, -1, 0.1, 0.0)] * 2))
    with pytest.raises(ValueError, match="start_method"):
        MujocoSimulator(start_method="fork")
    assert isinstance(MujocoSimulator(num_workers=0), Simulator)
    assert isinstance(Scene(*EMPTY_CUP), Scene)


# Task layout (f2p/tasks): table A is the ground plane (z = 0), table B a fixture (top 0.15).
TABLE_B = ((0.2, 0.22, 0.075), (0.55, 0.35, 0.075))
THIN = (0.006, 0.04, 0.12)  # a tall, thin board standing on the ground


def _ground_scene(objects):
    """objects: (kind, half_extents, pos) triples after table B in slot 0."""
    kinds = [FIXTURE] + [kind for kind, _, _ in objects]
    halves = [TABLE_B[0]] + [half for _, half, _ in objects]
    poses = [TABLE_B[1]] + [pos for _, _, pos in objects]
    return make_scene(kinds, halves, poses)


ON_GROUND = _ground_scene([(CONTAINER, CUP, (0.1, -0.2, 0.05)), (ITEM, CUBE, (0.0, 0.0, 0.025)),
                           (ITEM, CUBE, (0.55, 0.35, 0.175)), (ITEM, THIN, (-0.2, 0.1, 0.12))])
LOADED_ON_B = _ground_scene([(CONTAINER, CUP, (0.55, 0.35, 0.2)),
                             (ITEM, CUBE, (0.55, 0.35, 0.15 + 0.0072 + 0.025)),
                             (ITEM, (0.1, 0.1, 0.01), (0.0, -0.2, 0.01))])  # a flat board


def test_objects_on_the_ground_plane_have_not_fallen(local):
    outcome = _run(local, [
        (ON_GROUND, _skill(PUSH, 2, -1, 0.1, 0.0)),  # a cube slides along the ground
        (ON_GROUND, _skill(PICK_PLACE, 3, 1, 0.0, 0.0)),  # down from table B into a cup
        (LOADED_ON_B, _skill(PICK_PLACE, 1, 3, 0.0, 0.0)),  # a loaded cup down onto a board
        (ON_GROUND, _skill(PICK_PLACE, 2, 0, 0.3, 0.0)),  # beyond table B's edge (x 0.35..0.75)
    ])
    assert outcome.status.tolist() == [OK, OK, OK, FELL]
    assert not outcome.fell[:3].any()
    np.testing.assert_allclose(outcome.post.pos[0, 2, 0] - outcome.pre.pos[0, 2, 0], 0.1,
                               atol=0.01)
    assert outcome.relations_post[1, 3, 1, REL["inside"]]
    # The rider came down 0.15 m with its cup and is still inside it.
    assert outcome.post.pos[2, 2, 2] < outcome.pre.pos[2, 2, 2] - 0.1
    assert outcome.relations_post[2, 2, 1, REL["inside"]]
    assert outcome.fell[3].tolist() == [False, False, True] + [False] * 5
    assert outcome.post.pos[3, 2, 2] < 0.03  # on the ground beside table B


def test_an_object_tipped_over_on_the_ground_is_tipped_not_fallen(local):
    outcome = _run(local, [(ON_GROUND, _skill(PUSH, 4, -1, 0.15, 0.0))])
    assert outcome.status.tolist() == [TIPPED] and not outcome.ok.any()
    assert not outcome.fell.any()
    assert outcome.post.pos[0, 4, 2] < 0.02  # lying flat: its centre is a half thickness high


def test_settle_drops_objects_onto_their_supports(local, pooled):
    low, high = LOADED_CUP.pos.copy(), LOADED_CUP.pos.copy()
    low[3, 2] += 0.01  # 1 cm above the table: settles, has not fallen
    high[3, 2] += 0.1  # 10 cm above the table: lands clearly lower than it was given
    scenes = _stack([LOADED_CUP._replace(pos=low), LOADED_CUP._replace(pos=high)])
    for simulator in (local, pooled):
        outcome = simulator.settle(scenes, seed=3)
        assert outcome.status.tolist() == [OK, FELL]
        assert outcome.fell[:, 3].tolist() == [False, True] and outcome.fell[:, :3].sum() == 0
        # pre is the scene as given, post the settled one.
        np.testing.assert_allclose(outcome.pre.pos, scenes.pos, atol=1e-6)
        np.testing.assert_allclose(outcome.post.pos[:, 3, 2], CUBE_Z, atol=2e-3)
        assert not outcome.contact_pre[0, 3, 0] and outcome.contact_post[0, 3, 0]
        assert outcome.relations_post[:, 2, 1, REL["inside"]].all()
    with pytest.raises(ValueError, match="scenes.kind"):
        local.settle(LOADED_CUP)
    nan_pose = LOADED_CUP._replace(pos=LOADED_CUP.pos.copy())
    nan_pose.pos[2, 0] = np.nan
    assert local.settle(_stack([nan_pose])).status.tolist() == [INVALID_INPUT]


def test_real_world_starts_from_settle_not_from_a_skill(monkeypatch):
    from isaac_bridge.real_world import RealWorld

    def no_skills(*args, **kwargs):
        raise AssertionError("the initial state must come from settle, not from a skill")

    monkeypatch.setattr(MujocoSimulator, "execute", no_skills)
    scene = LOADED_CUP._replace(pos=LOADED_CUP.pos - np.array([0.0, 0.0, 0.40], np.float32))
    world = RealWorld(scene, seed=0)
    assert world.true_status() == "ok"
    assert world.true_relations()[2, 1, REL["inside"]]


def test_spinning_items_are_not_divergence_but_flying_ones_are():
    from isaac_bridge.mujoco_skills import Diverged, ExecutionSettings, check_finite

    model, _ = mjcf.build_model(EMPTY_CUP)
    data = mujoco.MjData(model)
    settings = ExecutionSettings()
    assert settings.max_angular_speed > settings.max_linear_speed
    data.qvel[3:6] = [60.0, -80.0, 100.0]  # a small cube tumbling out of a falling bag
    check_finite(model, data, settings)
    for dof, speed in ((0, 30.0), (5, 300.0), (8, np.nan)):
        data.qvel[:] = 0.0
        data.qvel[dof] = speed
        with pytest.raises(Diverged):
            check_finite(model, data, settings)


def test_tiny_benchmark_writes_its_results(tmp_path):
    import json

    from absl import flags

    from experiments import sim_benchmark
    from experiments.configs import sim_benchmark as benchmark_config

    # The library module defines no absl flags, so tests may import it beside any main.
    assert "experiments.sim_benchmark" not in flags.FLAGS.flags_by_module_dict()
    config = benchmark_config.get_config("tiny")
    config.num_workers = 0
    assert config.observer == "experiments.sim_benchmark:render_scenes"
    results = sim_benchmark.run(config, str(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["executions"] == config.num_scenes == sum(saved["status_counts"].values())
    assert saved["executions_per_second"] > 0 and saved["environment"]["versions"]["mujoco"]
    assert saved["render_ms_per_scene"] > 0 and saved["cpu_seconds_per_execution"] > 0
    table = (tmp_path / "results.md").read_text()
    assert "labelled executions / s" in table and "observation render per scene" in table
    assert results["executions"] == saved["executions"]
    observations = sim_benchmark.render_scenes(_stack([EMPTY_CUP]))
    assert len(observations) == 1 and observations[0].num_visible[1:4].min() > 0
