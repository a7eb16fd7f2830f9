"""Contact labels of the MuJoCo backend on hand-built scenes, whatever the objects' kinds."""

import numpy as np
import pytest

from f2p.scene import CONTAINER, FIXTURE, ITEM, PUSH, REL, Skill, make_scene
from f2p.world import OK
from isaac_bridge.mjcf import CONTACT_TOLERANCE
from isaac_bridge.mujoco_backend import MujocoSimulator

# Task layout: table A is the ground plane (z = 0), table B a fixture in slot 0 (top at 0.15).
TABLE_B = ((0.2, 0.22, 0.075), (0.55, 0.35, 0.075))
TABLE_B_TOP = 0.15
CUP = (0.06, 0.06, 0.05)  # a container: a floor and four wall geoms in one body
CUBE = (0.025, 0.025, 0.025)


def _on_table_b(objects):
    """objects: (kind, half_extents, pos) triples after table B in slot 0."""
    kinds = [FIXTURE] + [kind for kind, _, _ in objects]
    halves = [TABLE_B[0]] + [half for _, half, _ in objects]
    poses = [TABLE_B[1]] + [pos for _, _, pos in objects]
    return make_scene(kinds, halves, poses)


def _stack(trees):
    return type(trees[0])(*(np.stack(fields) for fields in zip(*trees, strict=True)))


@pytest.fixture(scope="module")
def local():
    return MujocoSimulator(num_workers=0)


HOVER_GAPS = (0.0002, 0.001, 0.0019, 0.0025, 0.004)  # metres; the tolerance is 2 mm


def test_a_container_hovering_within_tolerance_over_table_b_is_in_contact(local):
    # A cup and a solid box of the same outer size hover at the same gaps over table B; the
    # pre state of settle is the scene as given, so contact_pre labels exactly these gaps.
    scenes = [_on_table_b([(kind, CUP, (0.55, 0.35, TABLE_B_TOP + CUP[2] + gap))])
              for kind in (CONTAINER, ITEM) for gap in HOVER_GAPS]
    outcome = local.settle(_stack(scenes))
    assert outcome.ok.all()
    expected = [gap < CONTACT_TOLERANCE for gap in HOVER_GAPS]
    container, solid = outcome.contact_pre[:, 0, 1].reshape(2, len(HOVER_GAPS))
    assert container.tolist() == expected
    assert solid.tolist() == expected
    np.testing.assert_array_equal(outcome.contact_pre[:, 1, 0], outcome.contact_pre[:, 0, 1])
    assert outcome.relations_pre[:len(HOVER_GAPS), 1, 0, REL["contact"]].tolist() == expected
    # Settled, every one rests on table B.
    assert outcome.contact_post[:, 0, 1].all()


SIDE_GAPS = (0.0005, 0.001, 0.0015)


def test_an_item_beside_a_cup_is_in_contact_after_settling_as_beside_a_solid_box(local):
    # A cube rests on table B 0.5 to 1.5 mm beside a cup, or beside a solid box of the cup's
    # size; both neighbours stand on table B. Settling leaves the gaps alone.
    x = 0.50
    scenes = [_on_table_b([(kind, CUP, (x, 0.35, TABLE_B_TOP + CUP[2])),
                           (ITEM, CUBE, (x + CUP[0] + gap + CUBE[0], 0.35, TABLE_B_TOP + CUBE[2]))])
              for kind in (CONTAINER, ITEM) for gap in SIDE_GAPS]
    far = _on_table_b([(CONTAINER, CUP, (x, 0.35, TABLE_B_TOP + CUP[2])),
                       (ITEM, CUBE, (x + CUP[0] + 0.004 + CUBE[0], 0.35, TABLE_B_TOP + CUBE[2]))])
    outcome = local.settle(_stack(scenes + [far]))
    assert outcome.ok.all()
    moved = outcome.post.pos[:, 2, 0] - outcome.pre.pos[:, 2, 0]
    np.testing.assert_allclose(moved, 0.0, atol=2e-4)  # the gaps are what they were given
    beside_cup, beside_solid = outcome.contact_post[:-1, 1, 2].reshape(2, len(SIDE_GAPS))
    assert beside_cup.all() and beside_solid.all()
    assert outcome.relations_post[:-1, 2, 1, REL["contact"]].all()
    assert not outcome.contact_post[-1, 1, 2]  # 4 mm apart: beyond the tolerance
    assert outcome.contact_post[:, 0, 1].all() and outcome.contact_post[:, 0, 2].all()


def _push(obj, displacement):
    return Skill(np.int32(PUSH), np.int32(obj), np.int32(-1),
                 np.asarray(displacement, np.float32))


PUSH_ANGLES = np.radians(np.arange(0, 181, 15))  # 13 directions


def _blocked_chain(theta):
    """Cube 0, then cube 1 10 mm further along theta, then a wall fixture 0.5 mm behind cube 1.

    Everything is turned by theta on the ground plane, so a push of cube 0 along theta closes
    the 10 mm and then cube 1 cannot give way.
    """
    direction = np.array([np.cos(theta), np.sin(theta)])
    neighbour = 2 * CUBE[0] + 0.01
    wall = neighbour + CUBE[0] + 0.01 + 0.0005
    scene = make_scene([ITEM, ITEM, FIXTURE], [CUBE, CUBE, (0.01, 0.15, 0.05)],
                       [(0.0, 0.0, CUBE[2]), (*(neighbour * direction), CUBE[2]),
                        (*(wall * direction), 0.05)], [theta] * 3)
    return scene, _push(0, 0.05 * direction)


def test_pushes_into_a_blocked_neighbour_end_in_contact_in_every_direction(local):
    # The 5 cm push is stopped after 1 cm; the old kinematic paddle overlapped the cubes by
    # 2 to 4 mm there and the final settle sprang 6 of these 13 pushes out of contact.
    scenes, skills = zip(*(_blocked_chain(theta) for theta in PUSH_ANGLES), strict=True)
    outcome = local.execute(_stack(scenes), _stack(skills))
    assert outcome.status.tolist() == [OK] * len(PUSH_ANGLES)
    assert outcome.contact_post[:, 0, 1].all() and outcome.contact_post[:, 1, 2].all()
    assert outcome.relations_post[:, 0, 1, REL["contact"]].all()
    directions = np.stack([np.cos(PUSH_ANGLES), np.sin(PUSH_ANGLES)], axis=1)
    moved = np.einsum("bj,bj->b", outcome.post.pos[:, 0, :2] - outcome.pre.pos[:, 0, :2],
                      directions)
    np.testing.assert_allclose(moved, 0.0105, atol=1e-3)  # the 10 mm gap, and cube 1's 0.5 mm


HEAVY = (0.1, 0.1, 0.1)  # 6.4 kg at 800 kg/m^3: sliding it takes 0.6 * 6.4 * 9.81 = 38 N
PUSHABLE = (0.06, 0.06, 0.06)  # 1.4 kg: sliding it takes 8.1 N, under the 10 N limit


def test_a_heavy_block_is_not_shoved_by_the_force_limited_paddle(local):
    limit = local.settings.push_force_limit
    assert limit < 0.6 * 6.4 * 9.81
    direct = make_scene([ITEM], [HEAVY], [(0.0, 0.0, HEAVY[2])])
    pairs = [(direct, _push(0, (0.1, 0.0))), (direct, _push(0, (-0.07, 0.07)))]
    for theta in np.radians([0.0, 45.0, 100.0, 180.0]):  # a cube pushed into the block
        direction = np.array([np.cos(theta), np.sin(theta)])
        start = -(HEAVY[0] + CUBE[0] + 0.02) / np.abs(direction).max() * direction
        scene = make_scene([ITEM, ITEM], [HEAVY, CUBE], [(0.0, 0.0, HEAVY[2]), (*start, CUBE[2])])
        pairs.append((scene, _push(1, 0.1 * direction)))
    light = make_scene([ITEM], [PUSHABLE], [(0.0, 0.0, PUSHABLE[2])])
    pairs.append((light, _push(0, (0.1, 0.0))))
    scenes, skills = zip(*pairs, strict=True)
    outcome = local.execute(_stack(scenes), _stack(skills))
    assert outcome.status.tolist() == [OK] * len(pairs)
    # Under 10 N the block only creeps as MuJoCo's soft friction allows (about 0.5 mm/s) for
    # the fraction of a second the paddle presses: 0.2 mm here; the old paddle shoved it 4 to
    # 15 mm. 1 mm leaves room for other timesteps and MuJoCo versions.
    shoved = np.linalg.norm(outcome.post.pos[:-1, 0, :2] - outcome.pre.pos[:-1, 0, :2], axis=1)
    assert shoved.max() < 1e-3, shoved
    assert outcome.contact_post[2:-1, 0, 1].all()  # the cubes end against the block
    # A block the paddle can slide is pushed all the way (its servo lags by a few mm).
    np.testing.assert_allclose(outcome.post.pos[-1, 0, :2] - outcome.pre.pos[-1, 0, :2],
                               [0.1, 0.0], atol=0.006)
