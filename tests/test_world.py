"""Tests of the world contracts: RealWorld is a World and branches bit-identically."""

import numpy as np
import pytest

from f2p.scene import CONTAINER, FIXTURE, ITEM, PICK_PLACE, PUSH, Skill, make_scene
from f2p.world import Observation, Simulator, World, WorldSnapshot
from isaac_bridge.mujoco_backend import MujocoSimulator
from isaac_bridge.real_world import PhysicsRanges, RealWorld

TABLE, ITEM_A, CUP, ITEM_B = 0, 1, 2, 3


def _task_scene():
    return make_scene(
        [FIXTURE, ITEM, CONTAINER, ITEM],
        [[0.35, 0.5, 0.02], [0.025, 0.025, 0.03], [0.06, 0.06, 0.045], [0.02, 0.03, 0.025]],
        [[0.4, 0.0, -0.02], [0.3, -0.2, 0.03], [0.45, 0.15, 0.045], [0.55, -0.05, 0.025]],
        [0.0, 0.2, 0.0, -0.3],
    )


def _skill(kind, obj, support=-1, dx=0.0, dy=0.0):
    return Skill(np.int32(kind), np.int32(obj), np.int32(support), np.array([dx, dy], np.float32))


def _assert_same(first, second):
    for a, b in zip(first, second, strict=True):
        if a is None or b is None:
            assert a is b
        else:
            np.testing.assert_array_equal(a, b)


def test_real_world_and_mujoco_satisfy_the_core_contracts():
    assert isinstance(RealWorld(_task_scene(), seed=0), World)
    assert isinstance(MujocoSimulator(num_workers=1), Simulator)


def test_a_restored_snapshot_replays_bit_identically():
    world = RealWorld(_task_scene(), noise_level=0.5, seed=11)
    world.observe()  # advance the perception stream, so the snapshot has to carry it
    world.step(_skill(PUSH, ITEM_A, dx=0.05))
    snapshot = world.snapshot()
    skills = [_skill(PICK_PLACE, ITEM_B, CUP), _skill(PUSH, ITEM_A, dy=0.1)]
    first = [world.step(skill) for skill in skills] + [world.observe()]
    first_truth = (world.true_scene(), world.true_relations(), world.true_status(), world.steps)
    world.restore(snapshot)
    assert world.steps == 1
    second = [world.step(skill) for skill in skills] + [world.observe()]
    for a, b in zip(first, second, strict=True):
        assert isinstance(b, Observation)
        _assert_same(a, b)
    _assert_same(first_truth[0], world.true_scene())
    np.testing.assert_array_equal(first_truth[1], world.true_relations())
    assert first_truth[2:] == (world.true_status(), world.steps)


def test_a_snapshot_restores_into_a_fresh_world_built_the_same_way():
    """A failure saved to disk branches in a new process: rebuild the world, then restore."""
    ranges = PhysicsRanges()
    world = RealWorld(_task_scene(), ranges, noise_level=0.3, seed=5)
    world.step(_skill(PUSH, ITEM_B, dx=-0.06))
    snapshot = WorldSnapshot({k: v.copy() for k, v in world.snapshot().arrays.items()},
                             world.snapshot().metadata)
    expected = world.step(_skill(PICK_PLACE, ITEM_A, CUP))
    fresh = RealWorld(_task_scene(), ranges, noise_level=0.3, seed=5)
    fresh.restore(snapshot)
    _assert_same(expected, fresh.step(_skill(PICK_PLACE, ITEM_A, CUP)))
    np.testing.assert_array_equal(world.true_relations(), fresh.true_relations())


def test_restore_refuses_a_snapshot_of_another_world():
    snapshot = RealWorld(_task_scene(), seed=1).snapshot()
    with pytest.raises(ValueError, match="hidden physics"):
        RealWorld(_task_scene(), seed=2).restore(snapshot)
    other = _task_scene()._replace(kind=np.array([FIXTURE, ITEM, ITEM, ITEM, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="kinds"):
        RealWorld(other, seed=1).restore(snapshot)
