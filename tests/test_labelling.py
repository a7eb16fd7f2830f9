"""Tests of isaac_bridge.labelling on the real MuJoCo backend (tiny hand-built batches)."""

import numpy as np
import pytest

from f2p.geometry import yaw_rotation
from f2p.scene import (
    FIXTURE,
    ITEM,
    K_MAX,
    PICK_PLACE,
    PUSH,
    Skill,
    make_scene,
    stack_rows,
    take_row,
    transition_scene,
)
from f2p.world import (
    DIVERGED,
    FELL,
    OK,
    SIM_ERROR,
    STATUS_NAMES,
    TIPPED,
    USABLE_STATUSES,
    Simulator,
)
from isaac_bridge.labelling import RenderSettings, label_batch
from isaac_bridge.mujoco_backend import MujocoSimulator
from isaac_bridge.perception import render_observation

TABLE = ((0.4, 0.6, 0.02), (0.0, 0.0, 0.38))  # top at z = 0.40
CUBE = (0.025, 0.025, 0.025)
RENDER = RenderSettings(num_points=32)


def _scene(objects):
    """objects: (half_extents, pos) of items after the table in slot 0."""
    return make_scene([FIXTURE] + [ITEM] * len(objects), [TABLE[0]] + [h for h, _ in objects],
                      [TABLE[1]] + [p for _, p in objects])


def _skill(kind, obj, support, dx, dy):
    return Skill(np.int32(kind), np.int32(obj), np.int32(support), np.array([dx, dy], np.float32))


TWO = _scene([(CUBE, (-0.1, -0.1, 0.425)), (CUBE, (0.1, 0.2, 0.425))])
OVERLAP = _scene([(CUBE, (0.0, 0.0, 0.425)), (CUBE, (0.005, 0.0, 0.425))])
PAIRS = [
    (TWO, _skill(PICK_PLACE, 1, 2, 0.0, 0.0)),  # ok: a cube onto the other
    (TWO, _skill(PUSH, 0, -1, 0.1, 0.0)),  # invalid input: fixtures cannot be moved
    (OVERLAP, _skill(PUSH, 1, -1, 0.1, 0.0)),  # interpenetration before the skill
    (TWO, _skill(PICK_PLACE, 2, 0, 0.0, 0.75)),  # fell: placed past the table's edge
    (TWO, _skill(PUSH, 2, -1, 0.1, 0.05)),  # ok: a push
]


def _batch(pairs=PAIRS):
    return stack_rows([scene for scene, _ in pairs]), stack_rows([skill for _, skill in pairs])


@pytest.fixture(scope="module")
def simulator():
    with MujocoSimulator(num_workers=0) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def labelled(simulator):
    scenes, skills = _batch()
    return simulator.execute(scenes, skills, seed=3), label_batch(simulator, scenes, skills, 3,
                                                                   RENDER)


def test_kept_rows_are_the_usable_items_with_their_simulated_states(labelled):
    outcome, (transitions, counts, kept) = labelled
    statuses = [STATUS_NAMES[code] for code in outcome.status]
    assert statuses == ["ok", "invalid_input", "interpenetration", "fell", "ok"]
    np.testing.assert_array_equal(kept, [True, False, False, True, True])
    assert counts == {"attempted": 5, "kept": 3, "dropped": 2,
                      "status": {"ok": 2, "fell": 1, "tipped": 0, "interpenetration": 1,
                                 "diverged": 0, "invalid_input": 1, "sim_error": 0}}
    assert transitions.points_t.shape == (3, K_MAX, RENDER.num_points, 3)
    for row, item in enumerate(np.flatnonzero(kept)):
        np.testing.assert_array_equal(transitions.pos_t[row], outcome.pre.pos[item])
        np.testing.assert_array_equal(transitions.yaw_t1[row], outcome.post.yaw[item])
        np.testing.assert_array_equal(transitions.relations_t[row], outcome.relations_pre[item])
        np.testing.assert_array_equal(transitions.relations_t1[row],
                                      outcome.relations_post[item])
        skill = PAIRS[item][1]
        assert (int(transitions.skill[row]), int(transitions.obj[row]),
                int(transitions.support[row])) == (skill.skill, skill.obj, skill.support)
    dtypes = {name: np.asarray(value).dtype.name for name, value in transitions._asdict().items()}
    assert dtypes == {"points_t": "float32", "mask": "bool", "kind": "int32",
                      "half_extents": "float32", "skill": "int32", "obj": "int32",
                      "support": "int32", "params": "float32", "relations_t": "bool",
                      "relations_t1": "bool", "pos_t": "float32", "pos_t1": "float32",
                      "yaw_t": "float32", "yaw_t1": "float32"}


def test_rendered_points_belong_to_the_pre_state(labelled):
    _, (transitions, _, _) = labelled
    for row in range(transitions.mask.shape[0]):
        one = take_row(transitions, row)
        before, after = transition_scene(one), transition_scene(one, after=True)
        np.testing.assert_array_equal(one.points_t,
                                      render_observation(before, RENDER.num_points).points)
        obj = int(one.obj)
        moved = np.linalg.norm(one.pos_t1[obj] - one.pos_t[obj])
        assert moved > 0.05  # every kept skill moved its object far
        assert _inside_box(one.points_t[obj], before, obj).all()
        assert not _inside_box(one.points_t[obj], after, obj).any()


def _inside_box(points, scene, slot, tolerance=1e-4):
    local = (points - scene.pos[slot]) @ yaw_rotation(float(scene.yaw[slot]))
    return np.all(np.abs(local) <= scene.half_extents[slot] + tolerance, axis=-1)


class _Relabelled:
    """The real simulator, with the status of chosen items overwritten (codes MuJoCo rarely
    produces on demand: tipped, diverged, sim_error)."""

    def __init__(self, simulator, statuses):
        self.simulator, self.statuses = simulator, np.asarray(statuses, np.int32)

    def settle(self, scenes, seed=0):
        return self.simulator.settle(scenes, seed)

    def execute(self, scenes, skills, seed=0):
        outcome = self.simulator.execute(scenes, skills, seed)
        return outcome._replace(status=self.statuses,
                                ok=np.isin(self.statuses, USABLE_STATUSES))


def test_every_status_outside_the_usable_ones_is_dropped_and_counted(simulator):
    codes = [OK, FELL, TIPPED, DIVERGED, SIM_ERROR]
    pairs = [(TWO, _skill(PUSH, 1 + index % 2, -1, 0.08, 0.0)) for index in range(len(codes))]
    relabelled = _Relabelled(simulator, codes)
    assert isinstance(relabelled, Simulator)
    transitions, counts, kept = label_batch(relabelled, *_batch(pairs), 0, RENDER)
    np.testing.assert_array_equal(kept, [True, True, False, False, False])
    assert transitions.mask.shape[0] == 2 and counts["dropped"] == 3
    assert {name: counts["status"][name] for name in ("tipped", "diverged", "sim_error")} == {
        "tipped": 1, "diverged": 1, "sim_error": 1}


def test_a_batch_with_nothing_usable_gives_empty_rows_of_the_right_shapes(simulator):
    transitions, counts, kept = label_batch(simulator, *_batch(PAIRS[1:3]), 0, RENDER)
    assert not kept.any() and counts["kept"] == 0 and counts["dropped"] == 2
    assert transitions.points_t.shape == (0, K_MAX, RENDER.num_points, 3)
    assert transitions.relations_t1.shape[0] == 0 and transitions.relations_t1.ndim == 4
    assert transitions.params.shape == (0, 2) and transitions.params.dtype == np.float32


def test_labels_are_a_fixed_function_of_the_seed_and_the_noise_stream(simulator):
    scenes, skills = _batch(PAIRS[:1] + PAIRS[3:])
    noisy = RENDER._replace(noise_level=0.5)
    first = label_batch(simulator, scenes, skills, 11, noisy)
    again = label_batch(simulator, scenes, skills, 11, noisy, rng=np.random.default_rng(11))
    other_noise = label_batch(simulator, scenes, skills, 11, noisy, rng=np.random.default_rng(12))
    for field, a, b in zip(first.transitions._fields, first.transitions, again.transitions,
                           strict=True):
        np.testing.assert_array_equal(a, b, err_msg=field)
    assert first.counts == again.counts
    np.testing.assert_array_equal(first.kept, again.kept)
    # Another noise stream changes the points only; the simulated states stay.
    assert not np.array_equal(other_noise.transitions.points_t, first.transitions.points_t)
    np.testing.assert_array_equal(other_noise.transitions.pos_t1, first.transitions.pos_t1)
    exact = label_batch(simulator, scenes, skills, 11, RENDER)
    assert not np.array_equal(exact.transitions.points_t, first.transitions.points_t)


def test_identical_pre_states_are_rendered_once_without_noise(simulator, monkeypatch):
    import isaac_bridge.labelling as labelling

    calls = []

    def counting(scene, *args, **kwargs):
        calls.append(scene)
        return render_observation(scene, *args, **kwargs)

    monkeypatch.setattr(labelling, "render_observation", counting)
    scenes, skills = _batch(PAIRS[:1] + PAIRS[3:])  # three skills from the same scene
    exact = label_batch(simulator, scenes, skills, 5, RENDER)
    assert exact.counts["kept"] == 3 and len(calls) == 1  # one settled state, one render
    for row in range(3):
        np.testing.assert_array_equal(exact.transitions.points_t[row],
                                      exact.transitions.points_t[0])
    calls.clear()
    label_batch(simulator, scenes, skills, 5, RENDER._replace(noise_level=0.5))
    assert len(calls) == 3  # noisy renders draw from the stream item by item
