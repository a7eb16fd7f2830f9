"""Golden and property tests of f2p.relations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from f2p import relations
from f2p.scene import CONTAINER, FIXTURE, ITEM, K_MAX, REL, RELATION_NAMES, Scene, make_scene

NO_CONTACT = np.zeros((K_MAX, K_MAX), bool)
CUBE = [0.03, 0.03, 0.03]
# A table top 0.8 m (x) by 1.0 m (y), 4 cm thick, top surface at z = 0.72.
TABLE = dict(kind=FIXTURE, half=[0.4, 0.5, 0.02], pos=[0.5, 0.0, 0.7])
# A cup 12 x 12 x 10 cm standing on the table (outer box), centre 5 cm above the table top.
CUP_HALF = [0.06, 0.06, 0.05]
CUP_POS = [0.5, 0.0, 0.77]
CUP_FLOOR_TOP = 0.72 + 0.006  # floor 6 mm thick


def scene_of(objects):
    """objects: list of (kind, half_extents, pos[, yaw])."""
    kind = [o[0] for o in objects]
    half = [o[1] for o in objects]
    pos = [o[2] for o in objects]
    yaw = [o[3] if len(o) > 3 else 0.0 for o in objects]
    return make_scene(kind, half, pos, yaw)


def labels(rel, i, j):
    return {RELATION_NAMES[r] for r in range(9) if bool(rel[i, j, r])}


def hard(scene, contact=NO_CONTACT):
    return np.asarray(relations.hard_relations(scene, contact))


@pytest.mark.parametrize(
    "offset, i_of_j",
    [
        ([0.0, 0.2, 0.0], "left"),
        ([0.0, -0.2, 0.0], "right"),
        ([-0.2, 0.0, 0.0], "front"),
        ([0.2, 0.0, 0.0], "behind"),
    ],
)
def test_each_horizontal_direction(offset, i_of_j):
    opposite = {"left": "right", "right": "left", "front": "behind", "behind": "front"}
    base = np.array([0.5, 0.0, 0.75])
    rel = hard(scene_of([(ITEM, CUBE, base), (ITEM, CUBE, base + offset)]))
    assert labels(rel, 1, 0) == {i_of_j}
    assert labels(rel, 0, 1) == {opposite[i_of_j]}


def test_touching_faces_are_still_directional():
    # i's near face exactly at j's far face: centre past the face, near face past the centre.
    rel = hard(scene_of([(ITEM, CUBE, [0.5, 0.0, 0.75]), (ITEM, CUBE, [0.5, 0.06, 0.75])]))
    assert labels(rel, 1, 0) == {"left"}


def test_cone_rule_boundaries():
    base = [0.5, 0.0, 0.75]
    # Overlapping boxes: i's centre is not past j's far face, so no direction at all.
    rel = hard(scene_of([(ITEM, CUBE, base), (ITEM, CUBE, [0.5, 0.025, 0.75])]))
    assert labels(rel, 1, 0) == set() and labels(rel, 0, 1) == set()
    # Overlapping by 1 cm but with i's centre past j's face: left (the rule allows overlap).
    rel = hard(scene_of([(ITEM, CUBE, base), (ITEM, CUBE, [0.5, 0.05, 0.75])]))
    assert labels(rel, 1, 0) == {"left"}
    # i 5 cm past j's +y face: cross-axis tolerance is 0.03 + tan(80 deg) * 0.05 = 0.3136 m.
    inside_cone = hard(scene_of([(ITEM, CUBE, base), (ITEM, CUBE, [0.81, 0.08, 0.75])]))
    outside_cone = hard(scene_of([(ITEM, CUBE, base), (ITEM, CUBE, [0.82, 0.08, 0.75])]))
    assert "left" in labels(inside_cone, 1, 0)
    assert "left" not in labels(outside_cone, 1, 0)
    assert "behind" in labels(outside_cone, 1, 0)  # but it is clearly behind


def test_yaw_enlarges_the_aabb():
    # A 10 x 2 cm bar yawed by 90 deg spans 10 cm along y: a cube centred 4.5 cm to its left has
    # its centre short of the bar's +y face, so it is not left of it any more.
    bar = [0.05, 0.01, 0.03]
    cube = (ITEM, CUBE, [0.5, 0.045, 0.75])
    straight = hard(scene_of([(ITEM, bar, [0.5, 0.0, 0.75]), cube]))
    turned = hard(scene_of([(ITEM, bar, [0.5, 0.0, 0.75], np.pi / 2), cube]))
    assert labels(straight, 1, 0) == {"left"}
    assert labels(turned, 1, 0) == set()


def test_stacking_and_table_support():
    top_z = 0.72
    scene = scene_of(
        [
            (TABLE["kind"], TABLE["half"], TABLE["pos"]),
            (ITEM, CUBE, [0.3, 0.3, top_z + 0.03]),  # near the table's corner, far from its centre
            (ITEM, CUBE, [0.3, 0.3, top_z + 0.09]),  # stacked on item 1
        ]
    )
    rel = hard(scene)
    assert labels(rel, 2, 1) == {"above"}
    assert labels(rel, 1, 2) == {"below"}
    assert "above" in labels(rel, 1, 0) and "below" in labels(rel, 0, 1)
    assert "above" in labels(rel, 2, 0)  # higher than the table, within its cone
    assert not rel[0, 1, [REL["left"], REL["right"], REL["front"], REL["behind"]]].any()


def test_item_in_container_is_inside():
    item_half = [0.02, 0.02, 0.03]
    resting = [0.5, 0.01, CUP_FLOOR_TOP + 0.03]
    rel = hard(scene_of([(CONTAINER, CUP_HALF, CUP_POS), (ITEM, item_half, resting)]))
    assert labels(rel, 1, 0) == {"inside"}
    assert labels(rel, 0, 1) == set()  # the cup is not inside the item, nor below it


@pytest.mark.parametrize(
    "item_half, item_pos, expected",
    [
        # On the rim (bottom at the cup's top): not inside, above.
        ([0.02, 0.02, 0.03], [0.5, 0.0, 0.82 + 0.03], {"above"}),
        # Floating well above the rim.
        ([0.02, 0.02, 0.03], [0.5, 0.0, 0.95], {"above"}),
        # Beside the cup on the table: xy not within the cup.
        ([0.02, 0.02, 0.03], [0.5, 0.1, 0.75], {"left"}),
        # Straddling the cup's wall: xy not strictly within.
        ([0.02, 0.02, 0.03], [0.5, 0.05, CUP_FLOOR_TOP + 0.03], set()),
        # A bottom only 2 cm below the rim is not in (it must be 3 cm below); its centre is
        # above the rim, so it is above the cup.
        ([0.02, 0.02, 0.03], [0.5, 0.0, 0.80 + 0.03], {"above"}),
        # A tall item standing on the floor and sticking 12.8 cm out of the cup is inside; one
        # sticking out 15 cm is not (limit 14 cm).
        ([0.02, 0.02, 0.11], [0.5, 0.0, 0.728 + 0.11], {"inside"}),
        ([0.02, 0.02, 0.12], [0.5, 0.0, 0.73 + 0.12], set()),
    ],
)
def test_item_not_inside_container(item_half, item_pos, expected):
    rel = hard(scene_of([(CONTAINER, CUP_HALF, CUP_POS), (ITEM, item_half, item_pos)]))
    assert labels(rel, 1, 0) == expected


def test_inside_needs_a_container():
    # The same geometry against a solid item (interpenetration) or a fixture is not "inside".
    for kind in (ITEM, FIXTURE):
        rel = hard(scene_of([(kind, CUP_HALF, CUP_POS), (ITEM, CUBE, [0.5, 0.0, 0.76])]))
        assert not rel[1, 0, REL["inside"]]


def test_container_in_container():
    small_cup = [0.04, 0.04, 0.04]
    rel = hard(scene_of([(CONTAINER, CUP_HALF, CUP_POS), (CONTAINER, small_cup, [0.5, 0.0, 0.77])]))
    assert labels(rel, 1, 0) == {"inside"}


@pytest.mark.parametrize(
    "xy, boundary",
    [
        ([0.5, 0.0], False),  # table centre
        ([0.85, 0.0], True),  # 5 cm from the far (+x) edge
        ([0.18, 0.0], True),  # 8 cm from the near edge
        ([0.5, -0.45], True),  # 5 cm from the right edge
        ([0.5, 0.38], False),  # 12 cm from the left edge
        ([0.75, 0.35], False),  # 15 cm from both edges
    ],
)
def test_boundary_near_table_edges(xy, boundary):
    item = (ITEM, CUBE, [*xy, 0.72 + 0.03])
    rel = hard(scene_of([(TABLE["kind"], TABLE["half"], TABLE["pos"]), item]))
    assert "above" in labels(rel, 1, 0)
    assert bool(rel[1, 0, REL["boundary"]]) == boundary
    assert not rel[0, 1, REL["boundary"]]  # the table is not above the item


def test_boundary_needs_a_large_surface():
    # An 18 x 40 cm board is too narrow on x to be a surface with a boundary.
    board = (FIXTURE, [0.09, 0.2, 0.02], [0.5, 0.0, 0.7])
    rel = hard(scene_of([board, (ITEM, CUBE, [0.55, 0.0, 0.75])]))
    assert "above" in labels(rel, 1, 0) and not rel[1, 0, REL["boundary"]]


def test_contact_passes_through_and_is_symmetrised():
    scene = scene_of([(ITEM, CUBE, [0.5, 0.0, 0.75]), (ITEM, CUBE, [0.5, 0.06, 0.75])] * 2)
    contact = NO_CONTACT.copy()
    contact[0, 1] = True  # one-sided on purpose
    contact[2, 2] = True  # self contact is meaningless
    contact[3, 6] = contact[6, 3] = True  # slot 6 is masked
    rel = hard(scene, contact)
    got = {(i, j) for i in range(K_MAX) for j in range(K_MAX) if rel[i, j, REL["contact"]]}
    assert got == {(0, 1), (1, 0)}


def random_scenes(seed, batch):
    """Random scenes with every kind, random sizes (some large surfaces) and yaws."""
    rng = np.random.default_rng(seed)
    count = rng.integers(2, K_MAX + 1, size=batch)
    mask = np.arange(K_MAX)[None, :] < count[:, None]
    half = rng.uniform(0.02, 0.08, size=(batch, K_MAX, 3))
    large = rng.random((batch, K_MAX)) < 0.2
    half[large, :2] = rng.uniform(0.12, 0.4, size=(large.sum(), 2))
    return Scene(
        kind=rng.integers(0, 3, size=(batch, K_MAX)).astype(np.int32),
        half_extents=half.astype(np.float32),
        pos=rng.uniform([0.0, -0.4, 0.0], [0.8, 0.4, 0.5], size=(batch, K_MAX, 3)).astype(
            np.float32
        ),
        yaw=rng.uniform(-np.pi, np.pi, size=(batch, K_MAX)).astype(np.float32),
        mask=mask,
    )


def random_contacts(seed, batch):
    contact = np.random.default_rng(seed).random((batch, K_MAX, K_MAX)) < 0.3
    return contact | np.swapaxes(contact, 1, 2)


def test_masked_slots_and_diagonal_have_no_relations():
    scenes = random_scenes(0, 64)
    rel = np.asarray(relations.hard_relations(scenes, np.ones((64, K_MAX, K_MAX), bool)))
    smooth = np.asarray(relations.smooth_relations(scenes, np.ones((64, K_MAX, K_MAX))))
    assert not rel[:, np.arange(K_MAX), np.arange(K_MAX)].any()
    assert np.all(smooth[:, np.arange(K_MAX), np.arange(K_MAX)] == 0)
    for b in range(64):
        invalid = ~scenes.mask[b]
        assert not rel[b][invalid].any() and not rel[b][:, invalid].any()
        assert np.all(smooth[b][invalid] == 0) and np.all(smooth[b][:, invalid] == 0)
        valid = scenes.mask[b]
        offdiag = valid[:, None] & valid[None, :] & ~np.eye(K_MAX, dtype=bool)
        assert rel[b][offdiag, REL["contact"]].all()


def test_antisymmetry_on_random_scenes():
    scenes = random_scenes(1, 256)
    rel = np.asarray(relations.hard_relations(scenes, random_contacts(1, 256)))
    transposed = np.swapaxes(rel, 1, 2)
    for a, b in [("left", "right"), ("front", "behind"), ("below", "above")]:
        np.testing.assert_array_equal(rel[..., REL[a]], transposed[..., REL[b]])
        assert not (rel[..., REL[a]] & rel[..., REL[b]]).any()
        assert rel[..., REL[a]].sum() > 50  # the random scenes do exercise the rule
    np.testing.assert_array_equal(rel[..., REL["contact"]], transposed[..., REL["contact"]])
    assert not (rel[..., REL["inside"]] & transposed[..., REL["inside"]]).any()
    assert not (rel[..., REL["boundary"]] & ~rel[..., REL["above"]]).any()


def pair_min_abs_margin(scene):
    """[K, K] smallest |margin| among all margins that decide the relations of pair (i, j)."""
    m = relations.relation_margins(scene)
    side = np.abs(np.asarray(m.side)).min(axis=(0, 3))
    side = np.minimum(side, side.T)  # directions are judged from both objects
    inside = np.abs(np.asarray(m.inside)).min(axis=-1)
    surface = np.abs(np.asarray(m.surface)).min(axis=-1)[None, :]
    edge = np.abs(np.asarray(m.edge)).min(axis=-1)
    return functools.reduce(np.minimum, [side, inside, surface, edge])


def test_hard_and_smooth_agree_away_from_margins():
    # Every pair has ~50 margins, so a small temperature keeps enough pairs clear of all of them.
    temperature = 0.003
    scenes = random_scenes(2, 128)
    contact = random_contacts(2, 128)
    rel = np.asarray(relations.hard_relations(scenes, contact))
    smooth = np.asarray(relations.smooth_relations(scenes, contact.astype(np.float32), temperature))
    assert smooth.min() >= 0 and smooth.max() <= 1
    far = np.stack(
        [
            pair_min_abs_margin(jax.tree.map(lambda x, b=b: x[b], scenes)) > 8 * temperature
            for b in range(128)
        ]
    )
    valid = scenes.mask[:, :, None] & scenes.mask[:, None, :] & ~np.eye(K_MAX, dtype=bool)
    far &= valid
    assert far.sum() > 500
    np.testing.assert_allclose(smooth[far], rel[far].astype(np.float32), atol=0.01)
    for name in ("left", "front", "above", "boundary"):
        assert rel[far][:, REL[name]].any(), name  # agreement is checked on true labels too


def test_jit_vmap_over_a_batch_matches_single_scenes():
    scenes = random_scenes(3, 16)
    contact = random_contacts(3, 16)
    batched_hard = jax.jit(jax.vmap(relations.hard_relations))(scenes, contact)
    batched_smooth = jax.jit(jax.vmap(relations.smooth_relations))(scenes, contact * 0.7)
    for b in range(16):
        scene = jax.tree.map(lambda x, b=b: x[b], scenes)
        np.testing.assert_array_equal(batched_hard[b], relations.hard_relations(scene, contact[b]))
        np.testing.assert_allclose(
            batched_smooth[b], relations.smooth_relations(scene, contact[b] * 0.7), atol=1e-6
        )
    # Leading batch axes are also accepted directly.
    np.testing.assert_array_equal(relations.hard_relations(scenes, contact), batched_hard)


def test_smooth_gradients_match_finite_differences():
    scene = jax.tree.map(lambda x: x[0], random_scenes(4, 1))
    weights = np.random.default_rng(4).normal(size=(K_MAX, K_MAX, 9))
    with jax.enable_x64(True):
        pos0 = jnp.asarray(scene.pos, jnp.float64)
        yaw0 = jnp.asarray(scene.yaw, jnp.float64)

        def objective(pos, yaw):
            posed = scene._replace(pos=pos, yaw=yaw, half_extents=scene.half_extents * 1.0)
            rel = relations.smooth_relations(posed, np.zeros((K_MAX, K_MAX)), temperature=0.05)
            return jnp.sum(rel * weights)

        grad_pos, grad_yaw = jax.jit(jax.grad(objective, argnums=(0, 1)))(pos0, yaw0)
        assert np.all(np.isfinite(grad_pos)) and np.all(np.isfinite(grad_yaw))
        assert np.abs(grad_pos).max() > 1e-3  # the test is not vacuous
        rng = np.random.default_rng(5)
        eps = 1e-6
        for _ in range(4):
            d_pos = rng.normal(size=pos0.shape)
            d_yaw = rng.normal(size=yaw0.shape)
            numeric = (
                objective(pos0 + eps * d_pos, yaw0 + eps * d_yaw)
                - objective(pos0 - eps * d_pos, yaw0 - eps * d_yaw)
            ) / (2 * eps)
            analytic = jnp.sum(grad_pos * d_pos) + jnp.sum(grad_yaw * d_yaw)
            np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-6)


def test_bad_inputs_raise():
    scene = scene_of([(ITEM, CUBE, [0.5, 0.0, 0.75])])
    with pytest.raises(ValueError, match="contact"):
        relations.hard_relations(scene, np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="temperature"):
        relations.smooth_relations(scene, np.zeros((K_MAX, K_MAX)), temperature=0.0)


def test_direction_table_matches_relation_names():
    names = ["left", "right", "front", "behind", "below", "above"]
    assert [REL[n] for n in names] == list(range(6))
    for d, (axis, sign) in enumerate(relations.DIRECTIONS):
        opposite = relations.DIRECTIONS[relations.OPPOSITE[d]]
        assert opposite == (axis, -sign)
