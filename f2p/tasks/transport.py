"""Multi-object transport: carry every item to table B, across a gap, in a bag."""

from __future__ import annotations

import numpy as np

from f2p.geometry import rotate_z
from f2p.scene import CONTAINER, FIXTURE, ITEM, PICK_PLACE, PUSH, REL, Scene, Skill, make_scene
from f2p.tasks import layout
from f2p.tasks.base import (
    FIXTURE_SLOT,
    Goal,
    SkeletonStep,
    Task,
    make_skill,
    push_params,
    stack_or_place_on_table,
)

TABLE_B_HALF = (0.20, 0.22, 0.075)
TABLE_B_POS = (0.55, 0.35, 0.075)
"""Table B spans x 0.35..0.75, y 0.13..0.57, top at z = 0.15."""
FLOOR_A_LOW, FLOOR_A_HIGH = (0.35, -0.60), (0.75, -0.05)
"""Table A is this region of the ground; the 18 cm gap to table B is bare floor."""
BAG_SLOT = 1
BAG_CELLS = np.array([[x, y] for x in (-0.055, 0.0, 0.055) for y in (-0.028, 0.028)])
"""Bag-frame xy centres of the 6 item places in the bag (3 along x, 2 along y)."""
BAG_MOVE_PROB = 0.75
"""OOD skill distribution: chance that the skill carries the bag to table B."""
OFF_EDGE_PROB = 0.5
"""OOD: chance that a bag placement on table B puts its centre past an edge."""
CARRIED_DISTANCE = 0.03
TABLE_CELLS = np.array([[x, y] for x in (-0.12, 0.0, 0.12) for y in (-0.11, 0.11)])
"""Table-B-frame xy centres of the 6 places the place_direct skeleton puts loose items on."""
TABLE_CELL_HALF = 0.03
"""Half width of the box each place_direct offset may range over around its cell."""


class TransportTask(Task):
    """A bag (container, slot 1) and items (slots 2..n) on table A, the ground; table B slot 0.

    Goal: every item above table B, and the bag too when it starts loaded. Skeletons load the
    loose items into the bag and carry it over, carry the bag alone, or (bag off table B) put
    the loose items straight onto table B. Training: the bag is always empty, and when placed
    on table B its whole footprint lands on the table (with a 2 cm margin); bags on table B are
    never pushed. OOD: the bag starts loaded, and bag placements often put its centre past a
    table edge, so it falls. The base model, which never saw either, does not penalise an
    overhanging bag (the planner even drives the carry to the far end of the box), so the
    loaded bag falls off table B; a stable carry of it would succeed.
    """

    name = "transport"
    description = "multi-object transport"

    def _sample_scene(self, rng: np.random.Generator, num_movable: int, split: str) -> Scene:
        items = num_movable - 1
        bag_half = np.array([rng.uniform(0.095, 0.105), rng.uniform(0.068, 0.075),
                             rng.uniform(0.04, 0.05)])
        bag_yaw = rng.uniform(-0.2, 0.2)
        item_half = np.column_stack([rng.uniform(0.013, 0.018, (items, 2)),
                                     rng.uniform(0.015, 0.03, items)])
        item_yaw = rng.uniform(-0.6, 0.6, items)
        table_top = TABLE_B_POS[2] + TABLE_B_HALF[2]
        table_low = np.asarray(TABLE_B_POS[:2]) - TABLE_B_HALF[:2]
        table_high = np.asarray(TABLE_B_POS[:2]) + TABLE_B_HALF[:2]
        occupied = {"a": [], "b": []}
        bag_on_b = split == "train" and rng.random() < 0.3
        low, high = (table_low, table_high) if bag_on_b else (FLOOR_A_LOW, FLOOR_A_HIGH)
        bag_pos = np.zeros(3)
        bag_pos[:2] = layout.scatter(rng, bag_half[None], np.array([bag_yaw]), low, high,
                                     occupied["b" if bag_on_b else "a"])[0]
        bag_pos[2] = (table_top if bag_on_b else layout.FLOOR_TOP) + bag_half[2] + layout.REST_GAP
        loaded = np.zeros(items, bool)
        if split == "ood":
            loaded[rng.permutation(items)[:rng.integers(1, items + 1)]] = True
        cells = rng.permutation(len(BAG_CELLS))
        item_pos = np.zeros((items, 3))
        for k in range(items):
            if loaded[k]:
                item_yaw[k] = bag_yaw + rng.uniform(-0.1, 0.1)
                offset = BAG_CELLS[cells[k]] + rng.uniform(-0.004, 0.004, 2)
                item_pos[k, :2] = bag_pos[:2] + rotate_z(offset, bag_yaw)
                floor = layout.support_surface(CONTAINER, bag_pos[2], bag_half[2])
                item_pos[k, 2] = floor + item_half[k, 2] + layout.REST_GAP
                continue
            on_b = split == "train" and rng.random() < 0.2
            low, high = (table_low, table_high) if on_b else (FLOOR_A_LOW, FLOOR_A_HIGH)
            item_pos[k, :2] = layout.scatter(rng, item_half[k:k + 1], item_yaw[k:k + 1], low,
                                             high, occupied["b" if on_b else "a"])[0]
            base = table_top if on_b else layout.FLOOR_TOP
            item_pos[k, 2] = base + item_half[k, 2] + layout.REST_GAP
        return make_scene(
            kind=[FIXTURE, CONTAINER] + [ITEM] * items,
            half_extents=np.vstack([TABLE_B_HALF, bag_half, item_half]),
            pos=np.vstack([TABLE_B_POS, bag_pos, item_pos]),
            yaw=np.concatenate([[0.0, bag_yaw], item_yaw]),
        )

    def _items(self, scene: Scene) -> list[int]:
        valid = np.asarray(scene.mask, bool) & (np.asarray(scene.kind) == ITEM)
        return [int(s) for s in np.flatnonzero(valid)]

    def _bag_on_table(self, scene: Scene) -> bool:
        bottom = scene.pos[BAG_SLOT][2] - scene.half_extents[BAG_SLOT][2]
        return bool(bottom > layout.top_z(scene, FIXTURE_SLOT) - 0.01)

    def bag_offset_bounds(self, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
        """Return (low, high) bag placement offsets that keep its footprint 2 cm inside table B."""
        foot = layout.footprint(scene.half_extents[BAG_SLOT], scene.yaw[BAG_SLOT])
        room = np.asarray(TABLE_B_HALF[:2]) - foot - 0.02
        return -room, room

    def _off_edge_offset(self, rng: np.random.Generator, scene: Scene) -> np.ndarray:
        """Return a bag offset whose centre lies 10-70 % of its footprint past a table edge."""
        foot = layout.footprint(scene.half_extents[BAG_SLOT], scene.yaw[BAG_SLOT])
        half = np.asarray(TABLE_B_HALF[:2])
        offset = rng.uniform(-half + foot, half - foot)
        axis = int(rng.integers(2))
        sign = rng.choice([-1.0, 1.0])
        offset[axis] = sign * (half[axis] + rng.uniform(0.1, 0.7) * foot[axis])
        return offset

    def _bag_placement(self, rng, scene, split) -> Skill | None:
        if split == "ood" and rng.random() < OFF_EDGE_PROB:
            return make_skill(PICK_PLACE, BAG_SLOT, FIXTURE_SLOT, self._off_edge_offset(rng, scene))
        offset = layout.free_table_offset(rng, scene, BAG_SLOT, FIXTURE_SLOT, margin=0.02)
        if offset is None:
            return None
        return make_skill(PICK_PLACE, BAG_SLOT, FIXTURE_SLOT, offset)

    def _sample_skill(self, rng, scene, split):
        items = self._items(scene)
        if split == "ood" and rng.random() < BAG_MOVE_PROB:
            skill = self._bag_placement(rng, scene, split)
            if skill is not None:
                return skill
        bag_free = split == "ood" or not layout.loaded_containers(scene)[BAG_SLOT]
        pushable = items + ([BAG_SLOT] if bag_free and not self._bag_on_table(scene) else [])
        if rng.random() < 0.25:
            return make_skill(PUSH, int(rng.choice(pushable)), -1, push_params(rng))
        obj = int(rng.choice(items + ([BAG_SLOT] if bag_free else [])))
        if obj == BAG_SLOT:
            skill = self._bag_placement(rng, scene, split)
            if skill is not None:
                return skill
            return make_skill(PUSH, int(rng.choice(items)), -1, push_params(rng))
        choice = rng.random()
        if choice < 0.5:
            cell = BAG_CELLS[rng.integers(len(BAG_CELLS))] + rng.uniform(-0.004, 0.004, 2)
            return make_skill(PICK_PLACE, obj, BAG_SLOT, rotate_z(cell, scene.yaw[BAG_SLOT]))
        return stack_or_place_on_table(rng, scene, obj, items, choice, stack_jitter=0.008)

    def goal(self, scene: Scene) -> Goal:
        """Return the goal relations: every item above table B, and a loaded bag there too."""
        deliver = self._items(scene)
        if layout.loaded_containers(scene)[BAG_SLOT]:  # its contents are part of the delivery
            deliver = [BAG_SLOT] + deliver
        return Goal(tuple((REL["above"], slot, FIXTURE_SLOT) for slot in deliver))

    def carry_bounds(self, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
        """Return (low, high) offsets of the skeletons' bag carry onto table B.

        A bag already on table B keeps bag_offset_bounds. A bag carried over from table A is set
        down at the near edge of table B (the side facing table A, -y): the y range runs from
        footprint fully on the table (2 cm margin) to centre a whole footprint past the edge.
        The box is wider than the stable placements on purpose: the planner's model has to
        reject the overhanging ones, and the base model, which never saw a bag fall, does not.
        """
        low, high = self.bag_offset_bounds(scene)
        if self._bag_on_table(scene):
            return low, high
        foot = layout.footprint(scene.half_extents[BAG_SLOT], scene.yaw[BAG_SLOT])
        low[1] = -TABLE_B_HALF[1] - foot[1]
        high[1] = -TABLE_B_HALF[1] + foot[1] + 0.02
        return low, high

    def skeletons(self, scene: Scene):
        """Return the candidate plan skeletons for `scene`.

        load_and_carry: load every loose item into the bag, carry the bag to table B.
        carry_only: carry the bag (relies on its contents travelling along).
        place_direct (only while the bag is off table B): put every loose item straight onto
        its own cell of table B; items already in the bag stay there.
        """
        items = self._items(scene)
        loose = [item for item in items if not layout.is_inside(scene, item, BAG_SLOT)]
        yaw = float(scene.yaw[BAG_SLOT])
        load = []
        for index, item in enumerate(loose):
            cell = rotate_z(BAG_CELLS[index % len(BAG_CELLS)], yaw)
            load.append(SkeletonStep(PICK_PLACE, item, BAG_SLOT, tuple(cell - 0.004),
                                     tuple(cell + 0.004)))
        low, high = self.carry_bounds(scene)
        carry = SkeletonStep(PICK_PLACE, BAG_SLOT, FIXTURE_SLOT, tuple(low), tuple(high))
        skeletons = (tuple(load) + (carry,), (carry,))
        if self._bag_on_table(scene) or not loose:
            return skeletons
        # Item placements on table B are in the training distribution, so in distribution this
        # skeleton gets a high goal probability while every carry moves a loaded bag (unseen).
        direct = tuple(
            SkeletonStep(PICK_PLACE, item, FIXTURE_SLOT,
                         tuple(TABLE_CELLS[index % len(TABLE_CELLS)] - TABLE_CELL_HALF),
                         tuple(TABLE_CELLS[index % len(TABLE_CELLS)] + TABLE_CELL_HALF))
            for index, item in enumerate(loose))
        return skeletons + (direct,)

    def _off_edge(self, scene: Scene, skill: Skill) -> bool:
        if int(skill.skill) != PICK_PLACE or int(skill.support) != FIXTURE_SLOT:
            return False
        return bool(np.any(np.abs(np.asarray(skill.params)) > np.asarray(TABLE_B_HALF[:2])))

    def ood_situation(self, scene: Scene, skill: Skill) -> bool:
        """Tell whether (scene, skill) is a situation never seen in training."""
        if int(skill.obj) != BAG_SLOT:
            return False
        return bool(layout.loaded_containers(scene)[BAG_SLOT] or self._off_edge(scene, skill))

    def shift_statistics(self, scene, skill, relations_t, relations_t1, pos_t1):
        """Return per-transition flags, measured on executed data."""
        obj = int(skill.obj)
        contents = np.flatnonzero(np.asarray(relations_t)[:, BAG_SLOT, REL["inside"]])
        moved_loaded = obj == BAG_SLOT and contents.size > 0
        shift = np.linalg.norm(np.asarray(pos_t1)[contents, :2] - scene.pos[contents, :2], axis=-1)
        off_edge = obj == BAG_SLOT and self._off_edge(scene, skill)
        bag_fell = off_edge and bool(
            pos_t1[BAG_SLOT][2] - scene.half_extents[BAG_SLOT][2]
            < layout.top_z(scene, FIXTURE_SLOT) - 0.02)
        return {"loaded_bag_moved": bool(moved_loaded),
                "contents_carried": bool(moved_loaded and np.any(shift > CARRIED_DISTANCE)),
                "bag_placed_off_edge": bool(off_edge), "bag_fell": bool(bag_fell)}
