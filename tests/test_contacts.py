"""Contact labels of the MuJoCo backend on hand-built scenes, whatever the objects' kinds."""

import numpy as np
import pytest

from f2p.scene import CONTAINER, FIXTURE, ITEM, REL, make_scene
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
