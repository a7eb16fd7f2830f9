import numpy as np
import pytest

from f2p.relations import hard_relations
from f2p.scene import (
    CONTAINER,
    FIXTURE,
    ITEM,
    K_MAX,
    PICK_PLACE,
    PUSH,
    REL,
    make_scene,
    validate_scene,
    validate_skill,
)
from f2p.tasks import OBJECT_COUNTS, SPLITS, get_task, layout, packing, task_names, transport
from f2p.tasks.base import make_skill

TASKS = ("tabletop", "transport", "packing")
SAMPLES = 45  # per (task, split): 15 scenes of each object count


def samples(name, split, count=SAMPLES, seed=0):
    task = get_task(name)
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        scene = task.sample_scene(rng, OBJECT_COUNTS[index % 3], split)
        yield scene, task.sample_skill(rng, scene, split)


def test_registry_lists_the_three_tasks_and_rejects_unknown_names():
    assert task_names() == TASKS
    with pytest.raises(ValueError, match="tabletop, transport, packing"):
        get_task("stacking")


def test_bad_split_and_object_count_are_rejected():
    task = get_task("tabletop")
    with pytest.raises(ValueError, match="split"):
        task.sample_scene(np.random.default_rng(0), 3, "test")
    with pytest.raises(ValueError, match="num_movable"):
        task.sample_scene(np.random.default_rng(0), 4, "train")


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("split", SPLITS)
def test_samplers_are_deterministic_per_seed(name, split):
    first = list(samples(name, split, count=6, seed=3))
    second = list(samples(name, split, count=6, seed=3))
    other = list(samples(name, split, count=6, seed=4))
    for (scene_a, skill_a), (scene_b, skill_b) in zip(first, second, strict=True):
        for a, b in zip(scene_a + skill_a, scene_b + skill_b, strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0][0].pos, other[0][0].pos)


def _boxes_overlap(scene, i, j):
    gap_xy = (np.abs(scene.pos[i, :2] - scene.pos[j, :2])
              - layout.footprint(scene.half_extents[i], scene.yaw[i])
              - layout.footprint(scene.half_extents[j], scene.yaw[j]))
    gap_z = (abs(scene.pos[i, 2] - scene.pos[j, 2]) - scene.half_extents[i, 2]
             - scene.half_extents[j, 2])
    return bool(np.all(gap_xy < 0) and gap_z < 0)


def _support_heights(scene):
    """Surfaces a movable may rest on: the ground, the fixture top, container floors."""
    heights = [0.0, layout.top_z(scene, 0)]
    for slot in np.flatnonzero(scene.mask & (scene.kind == CONTAINER)):
        heights.append(layout.support_surface(CONTAINER, scene.pos[slot, 2],
                                              scene.half_extents[slot, 2]))
    return np.array(heights)


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("split", SPLITS)
def test_scenes_are_valid_resting_and_apart(name, split):
    for index, (scene, skill) in enumerate(samples(name, split)):
        validate_scene(scene)
        validate_skill(skill, scene)
        count = OBJECT_COUNTS[index % 3]
        assert scene.mask.shape == (K_MAX,)
        assert scene.mask.sum() == count + 1
        assert scene.kind[0] == FIXTURE and np.all(scene.kind[1:count + 1] != FIXTURE)
        supports = _support_heights(scene)
        for slot in range(1, count + 1):
            bottom = scene.pos[slot, 2] - scene.half_extents[slot, 2]
            assert np.min(np.abs(supports - bottom)) < 2 * layout.REST_GAP, (name, slot)
            for other in range(slot):
                inside = layout.is_inside
                if not (inside(scene, slot, other) or inside(scene, other, slot)):
                    assert not _boxes_overlap(scene, slot, other), (name, split, slot, other)


@pytest.mark.parametrize("name", TASKS)
def test_ood_situations_occur_in_ood_and_never_in_train(name):
    train = [get_task(name).ood_situation(*pair) for pair in samples(name, "train")]
    ood = [get_task(name).ood_situation(*pair) for pair in samples(name, "ood")]
    assert not any(train)
    assert np.mean(ood) > 0.5


@pytest.mark.parametrize("name", ("tabletop", "transport"))
def test_containers_are_loaded_only_in_ood_scenes(name):
    for split, expected in (("train", False), ("ood", True)):
        for scene, _ in samples(name, split):
            assert layout.loaded_containers(scene).any() == expected
            contact = np.zeros((K_MAX, K_MAX), bool)
            inside = np.asarray(hard_relations(scene, contact))[..., REL["inside"]]
            assert inside.any() == expected  # the relation module agrees with the layout


def test_tabletop_ood_has_one_stray_more_than_cups_lying_in_a_cup():
    task = get_task("tabletop")
    for split in SPLITS:
        for scene, _ in samples("tabletop", split):
            cups, items = task._slots(scene)
            goal = task.goal(scene)
            stray_rules = [t for t in goal.must_not_hold if t[0] == REL["inside"]]
            if split == "train":  # one spare cup, every item loose, no stray
                assert len(cups) == len(items) + 1 and not stray_rules
                assert not any(layout.is_inside(scene, i, c) for i in items for c in cups)
                continue
            assert len(items) == len(cups) + 1
            stray = items[-1]
            assert [i for i in items if any(layout.is_inside(scene, i, c) for c in cups)] == [stray]
            assert sorted(stray_rules) == [(REL["inside"], stray, c) for c in cups]
            assert len(goal.must_hold) == 2 * len(cups) + len(cups) - 1  # in, on B, row


def test_tabletop_skeletons_sort_first_or_fill_only_loose_items():
    task = get_task("tabletop")
    for split in SPLITS:
        for scene, _ in samples("tabletop", split, count=15):
            cups, items = task._slots(scene)
            pairs = list(zip(items, cups, strict=False))
            items_first, cups_first, cups_only = task.skeletons(scene)
            row = [(PICK_PLACE, c, 0) for c in cups]
            as_args = [[(s.skill, s.obj, s.support) for s in k]
                       for k in (items_first, cups_first, cups_only)]
            loose = [(PICK_PLACE, i, c) for i, c in pairs]  # OOD: only the stray is in a cup
            if split == "train":
                assert as_args == [loose + row, row + loose, row]
                continue
            stray = items[-1]
            assert as_args == [[(PICK_PLACE, stray, 0)] + loose + row, row + loose, row]
            aside = items_first[0]
            for other in cups_first[:len(cups)]:  # the stray's strip is clear of every lane
                assert aside.high[0] + 0.031 < other.low[0] - 0.065


def test_transport_bag_goes_off_the_edge_only_in_ood():
    task = get_task("transport")
    for split, expected in (("train", False), ("ood", True)):
        off_edge = [task._off_edge(scene, skill) for scene, skill in samples("transport", split)]
        assert any(off_edge) == expected


def test_packing_shelf_has_room_in_train_and_is_crowded_in_ood():
    task = get_task("packing")
    for split in SPLITS:
        for scene, _ in samples("packing", split, count=15):
            new_item = int(scene.mask.sum()) - 1
            half_length = scene.half_extents[0, 1]
            foot = layout.footprint(scene.half_extents[new_item], scene.yaw[new_item])
            offsets = np.linspace(-half_length + foot[1], half_length - foot[1], 400)
            blocked = [layout.placement_blocked(scene, new_item, 0, (0.0, dy)) for dy in offsets]
            assert all(blocked) == (split == "ood")
            skeletons = task.skeletons(scene)
            if split == "ood":
                assert len(skeletons) == new_item - 1  # 0 .. n_s - 1 pushes, then the placement
            else:
                assert len(skeletons) == 1 and len(skeletons[0]) == 1  # place into the gap


def test_packing_place_bounds_cover_only_the_free_gap():
    """Train: every dy in the place step's box leaves the new item clear of its neighbours."""
    task = get_task("packing")
    for scene, _ in samples("packing", "train", count=30):
        new_item = int(scene.mask.sum()) - 1
        low, high = task.free_gap(scene)
        foot = layout.footprint(scene.half_extents[new_item], scene.yaw[new_item])
        assert high - low >= 2 * foot[1] - packing.FIT_TOLERANCE
        (place,) = task.skeletons(scene)[0]
        assert (place.skill, place.obj, place.support) == (PICK_PLACE, new_item, 0)
        assert place.low[1] <= place.high[1]
        for dy in np.linspace(place.low[1], place.high[1], 25):
            for dx in (place.low[0], place.high[0]):
                assert not layout.placement_blocked(scene, new_item, 0, (dx, dy), min_gap=0.0)
    for scene, _ in samples("packing", "ood", count=30):
        assert task.free_gap(scene) is None


def test_packing_free_gap_picks_the_widest_gap_and_sees_nested_boxes():
    box, new = (0.04, 0.03, 0.04), (0.04, 0.035, 0.04)
    board = (0.075, 0.2, 0.06)
    ys = (0.05, 0.16, 0.38)  # gaps: ends 0.02 and 0.0, 0.05 and 0.16 between the items
    scene = make_scene([FIXTURE, ITEM, ITEM, ITEM, ITEM], [board, box, box, box, new],
                       [(0.6, 0.2, 0.06)] + [(0.6, y, 0.16) for y in ys] + [(0.4, 0.1, 0.04)])
    low, high = get_task("packing").free_gap(scene)
    np.testing.assert_allclose((low, high), (0.19, 0.35), atol=1e-9)
    (place,) = get_task("packing").skeletons(scene)[0]
    reach = 0.5 * (0.16 - 0.07) - packing.PLACE_MARGIN
    np.testing.assert_allclose((place.low[1], place.high[1]), (0.07 - reach, 0.07 + reach),
                               atol=1e-6)
    # A long box over the gap (e.g. a fit floating above the board) with item 3 nested in its
    # span: the 0.07 m stretch past item 3 (0.33 .. 0.40) is covered, so no gap is left.
    crowded = scene._replace(pos=scene.pos.copy(), half_extents=scene.half_extents.copy())
    crowded.pos[2], crowded.half_extents[2] = (0.6, 0.24, 0.2), (0.04, 0.15, 0.04)
    crowded.pos[3] = (0.6, 0.30, 0.16)
    assert get_task("packing").free_gap(crowded) is None
    place = get_task("packing").skeletons(crowded)[0][-1]  # fallback: anywhere on the shelf
    np.testing.assert_allclose((place.low[1], place.high[1]), (-0.165, 0.165), atol=1e-6)


@pytest.mark.parametrize("name", TASKS)
def test_skeletons_are_valid_skills(name):
    task = get_task(name)
    for scene, _ in samples(name, "ood", count=9):
        for skeleton in task.skeletons(scene):
            assert skeleton
            for step in skeleton:
                assert np.all(np.asarray(step.low) <= np.asarray(step.high))
                middle = 0.5 * (np.asarray(step.low) + np.asarray(step.high))
                validate_skill(make_skill(step.skill, step.obj, step.support, middle), scene)
                assert step.skill in (PICK_PLACE, PUSH)


def _contacts(scene, pairs):
    contact = np.zeros((K_MAX, K_MAX), bool)
    for i, j in pairs:
        contact[i, j] = contact[j, i] = True
    return contact


def _success(name, scene, pairs):
    relations = np.asarray(hard_relations(scene, _contacts(scene, pairs)))
    return get_task(name).is_success(scene, relations)


def test_tabletop_success_on_solved_and_unsolved_scenes():
    # Table B, cups 1-2 in a row on it (cup 2 left of cup 1), item 3 in cup 1.
    table_top = 0.10
    cup = (0.047, 0.047, 0.04)
    item = (0.02, 0.02, 0.025)
    floor = table_top + layout.MAX_CONTAINER_WALL
    solved = make_scene([FIXTURE, CONTAINER, CONTAINER, ITEM],
                        [(0.20, 0.25, 0.05), cup, cup, item],
                        [(0.55, 0.35, 0.05), (0.55, 0.2, table_top + 0.04),
                         (0.55, 0.4, table_top + 0.04), (0.55, 0.2, floor + 0.025)])
    pairs = [(0, 1), (0, 2), (1, 3)]
    assert _success("tabletop", solved, pairs)
    outside = solved._replace(pos=solved.pos.copy())
    outside.pos[3] = (0.45, -0.2, 0.025)  # item left on table A
    assert not _success("tabletop", outside, [(0, 1), (0, 2)])
    swapped = solved._replace(pos=solved.pos.copy())
    swapped.pos[[1, 2]] = swapped.pos[[2, 1]]  # row in the wrong order
    swapped.pos[3, :2] = swapped.pos[1, :2]
    assert not _success("tabletop", swapped, pairs)


def test_tabletop_stray_must_end_in_no_cup():
    # One cup on table B with its item 2 inside; item 3 is a stray (one item more than cups).
    cup, item = (0.047, 0.047, 0.04), (0.015, 0.015, 0.025)
    floor = 0.10 + layout.MAX_CONTAINER_WALL
    solved = make_scene([FIXTURE, CONTAINER, ITEM, ITEM], [(0.20, 0.25, 0.05), cup, item, item],
                        [(0.55, 0.35, 0.05), (0.55, 0.35, 0.14), (0.55, 0.35, floor + 0.025),
                         (0.41, 0.35, 0.125)])
    assert _success("tabletop", solved, [(0, 1), (1, 2), (0, 3)])
    carried = solved._replace(pos=solved.pos.copy())
    carried.pos[3] = (0.55, 0.37, floor + 0.025)  # the stray came along in the cup
    carried.pos[2] = (0.55, 0.36, floor + 0.075)  # and item 2 landed on top of it
    assert not _success("tabletop", carried, [(0, 1), (1, 2), (1, 3), (2, 3)])
    beside = solved._replace(pos=solved.pos.copy())
    beside.pos[2] = (0.55, 0.33, floor + 0.025)  # both on the cup's floor: only the stray's
    beside.pos[3] = (0.55, 0.368, floor + 0.025)  # rule is broken
    relations = np.asarray(hard_relations(beside, _contacts(beside, [(0, 1), (1, 2), (1, 3)])))
    assert relations[2, 1, REL["inside"]] and relations[3, 1, REL["inside"]]
    assert not get_task("tabletop").is_success(beside, relations)


def test_transport_success_on_solved_and_unsolved_scenes():
    bag = (0.1, 0.07, 0.045)
    item = (0.015, 0.015, 0.02)
    floor = 0.15 + layout.MAX_CONTAINER_WALL
    solved = make_scene([FIXTURE, CONTAINER, ITEM, ITEM], [(0.2, 0.22, 0.075), bag, item, item],
                        [(0.55, 0.35, 0.075), (0.55, 0.35, 0.195),
                         (0.5, 0.35, floor + 0.02), (0.6, 0.35, floor + 0.02)])
    assert _success("transport", solved, [(0, 1), (1, 2), (1, 3)])
    on_floor = solved._replace(pos=solved.pos.copy())
    on_floor.pos[1:, 1] -= 0.6  # the loaded bag still on table A
    on_floor.pos[1:, 2] -= 0.15
    assert not _success("transport", on_floor, [(1, 2), (1, 3)])


def test_packing_success_on_solved_and_unsolved_scenes():
    box = (0.04, 0.03, 0.04)
    solved = make_scene([FIXTURE, ITEM, ITEM, ITEM], [(0.075, 0.2, 0.06), box, box, box],
                        [(0.6, 0.2, 0.06), (0.6, 0.05, 0.16), (0.6, 0.11, 0.16),
                         (0.6, 0.3, 0.16)])
    assert _success("packing", solved, [(0, 1), (0, 2), (0, 3), (1, 2)])
    stacked = solved._replace(pos=solved.pos.copy())
    stacked.pos[3] = (0.6, 0.11, 0.24)  # the new item on top of item 2
    assert not _success("packing", stacked, [(0, 1), (0, 2), (1, 2), (2, 3)])


def _run_plan(simulator, scene, steps):
    """Executes (step, params) pairs one by one in MuJoCo; returns the final scene, relations."""
    relations = None
    for step, params in steps:
        skill = make_skill(step.skill, step.obj, step.support, params)
        batch = [type(t)(*(np.asarray(x)[None] for x in t)) for t in (scene, skill)]
        outcome = simulator.execute(*batch, seed=0)
        assert outcome.ok[0], outcome.status_names[outcome.status[0]]
        scene = type(scene)(*(np.asarray(x)[0] for x in outcome.post))
        relations = outcome.relations_post[0]
    return scene, relations


def _middle(step):
    return 0.5 * (np.asarray(step.low) + np.asarray(step.high))


def test_skeletons_solve_the_tasks_in_mujoco():
    from isaac_bridge.mujoco_backend import MujocoSimulator

    with MujocoSimulator(num_workers=1) as simulator:
        for name, which in (("tabletop", 1), ("transport", 0)):  # cups_first, load_and_carry
            task = get_task(name)
            scene = task.sample_scene(np.random.default_rng(1), 5, "train")
            assert not task.is_success(scene, hard_relations(scene, np.zeros((K_MAX, K_MAX))))
            steps = [(step, _middle(step)) for step in task.skeletons(scene)[which]]
            assert task.is_success(*_run_plan(simulator, scene, steps)), name

        # Crowded shelf: placing straight away fails; pushing the row together first works.
        task = get_task("packing")
        scene = task.sample_scene(np.random.default_rng(2), 5, "ood")
        place = task.skeletons(scene)[0][0]
        assert not task.is_success(*_run_plan(simulator, scene, [(place, (0.0, place.high[1]))]))
        for step in task.skeletons(scene)[-1]:
            if step.skill == PUSH:
                row = sorted(layout.resting_on(scene, 0), key=lambda slot: scene.pos[slot][1])
                before = row[row.index(step.obj) - 1]
                gap = (scene.pos[step.obj][1] - scene.half_extents[step.obj][1]
                       - scene.pos[before][1] - scene.half_extents[before][1])
                scene, relations = _run_plan(simulator, scene, [(step, (0.0, -gap - 0.004))])
            else:
                target = (0.0, step.high[1] - 0.005)  # the free +y end
                scene, relations = _run_plan(simulator, scene, [(step, target)])
        assert task.is_success(scene, relations)


def test_tabletop_ood_cups_first_carries_the_stray_and_items_first_works_in_mujoco():
    """The physical OOD failure: moving the loaded cup first takes the stray along."""
    from isaac_bridge.mujoco_backend import MujocoSimulator

    task = get_task("tabletop")
    scene = task.sample_scene(np.random.default_rng(4), 3, "ood")
    items_first, cups_first, _ = task.skeletons(scene)
    (cup,), (_, stray) = task._slots(scene)
    with MujocoSimulator(num_workers=1) as simulator:
        final, relations = _run_plan(simulator, scene, [(s, _middle(s)) for s in cups_first])
        assert relations[stray, cup, REL["inside"]]  # it rode along to table B
        assert not task.is_success(final, relations)
        assert task.is_success(*_run_plan(simulator, scene,
                                          [(s, _middle(s)) for s in items_first]))


def test_transport_skeletons_place_directly_and_carry_to_the_near_edge():
    task = get_task("transport")
    for split in SPLITS:
        for scene, _ in samples("transport", split, count=15):
            skeletons = task.skeletons(scene)
            loose = [s for s in task._items(scene) if not layout.is_inside(scene, s, 1)]
            moved = {step.obj for skeleton in skeletons for step in skeleton}
            assert moved == set(loose) | {1}  # items already in the bag travel with it
            carry = skeletons[1][0]
            foot = layout.footprint(scene.half_extents[1], scene.yaw[1])
            if task._bag_on_table(scene):
                assert len(skeletons) == 2
                assert np.all(np.abs(carry.low) + foot <= np.asarray(transport.TABLE_B_HALF[:2]))
                continue
            # The carry box runs from fully on table B to a whole footprint past its near edge.
            assert carry.high[1] - foot[1] > -transport.TABLE_B_HALF[1]
            assert carry.low[1] + transport.TABLE_B_HALF[1] == pytest.approx(-foot[1])
            if not loose:  # every item already in the bag: nothing to place directly
                assert len(skeletons) == 2
                continue
            direct = skeletons[2]
            assert [step.obj for step in direct] == loose
            boxes = [(np.asarray(step.low), np.asarray(step.high)) for step in direct]
            for index, (low, high) in enumerate(boxes):
                assert np.all(np.abs(low) < transport.TABLE_B_HALF[:2])
                assert np.all(np.abs(high) < transport.TABLE_B_HALF[:2])
                for other_low, other_high in boxes[index + 1:]:  # cells never overlap
                    assert np.any((high < other_low) | (other_high < low))


def test_transport_direct_placement_works_and_an_overhanging_bag_falls_in_mujoco():
    from isaac_bridge.mujoco_backend import MujocoSimulator

    task = get_task("transport")
    scene = task.sample_scene(np.random.default_rng(0), 3, "train")
    load_and_carry, _, direct = task.skeletons(scene)
    *load, carry = load_and_carry
    with MujocoSimulator(num_workers=1) as simulator:
        assert task.is_success(*_run_plan(simulator, scene, [(s, _middle(s)) for s in direct]))
        loaded, _ = _run_plan(simulator, scene, [(s, _middle(s)) for s in load])
        on_table = (_middle(carry)[0], carry.high[1])
        assert task.is_success(*_run_plan(simulator, loaded, [(carry, on_table)]))
        overhanging = (_middle(carry)[0], carry.low[1])  # centre a footprint past the edge
        fallen, relations = _run_plan(simulator, loaded, [(carry, overhanging)])
        assert not task.is_success(fallen, relations)
        assert fallen.pos[1][2] < layout.top_z(scene, 0)  # the bag fell off table B


def test_transport_goal_delivers_a_loaded_bag_too():
    task = get_task("transport")
    for split in SPLITS:
        for scene, _ in samples("transport", split, count=15):
            goal = task.goal(scene).must_hold
            items = {(REL["above"], slot, 0) for slot in task._items(scene)}
            bag = {(REL["above"], 1, 0)} if split == "ood" else set()  # OOD bags start loaded
            assert set(goal) == items | bag and len(goal) == len(items | bag)
