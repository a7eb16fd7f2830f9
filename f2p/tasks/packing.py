"""Constrained packing: one more item onto a shelf board already holding a row of items."""

from __future__ import annotations

import numpy as np

from f2p.scene import FIXTURE, ITEM, PICK_PLACE, PUSH, REL, Scene, Skill, make_scene
from f2p.tasks import layout
from f2p.tasks.base import FIXTURE_SLOT, Goal, SkeletonStep, Task, make_skill

SHELF_X, SHELF_Y = 0.60, 0.20
SHELF_HALF_X, SHELF_HALF_Z = 0.075, 0.06
"""The shelf board: 15 cm deep (x), top at z = 0.12; its length depends on the scene."""
NEW_ITEM_LOW, NEW_ITEM_HIGH = (0.33, -0.05), (0.45, 0.45)
"""Ground region in front of the shelf (toward the robot) where the new item starts."""
MIN_GAP = 0.005
"""Smallest gap between neighbours (and at the shelf's ends) when a scene is laid out."""
ROOM_MARGIN = 0.03
"""Training: one gap exceeds the new item's width by at least this much."""
PLACE_PROB = 0.6
"""Chance that a random skill places the new item on the shelf."""


class PackingTask(Task):
    """A shelf board (slot 0) holding a row of items; one more item to place on it.

    Slots 1..n-1 are the items on the shelf, in a row along y (ascending y); slot n is the new
    item, on the ground in front of the shelf.

    Goal: every movable object above and in contact with the shelf, none above another.
    Training: one gap on the shelf fits the new item and every placement targets free room, so
    no placement is ever blocked. OOD: the shelf is crowded, every gap (the ends included) is
    narrower than the new item, but the gaps add up to enough room: the new item is blocked
    unless items are first pushed together.
    """

    name = "packing"
    description = "constrained packing"

    def _sample_scene(self, rng, num_movable, split):
        on_shelf = num_movable - 1
        shelf_half = np.column_stack([rng.uniform(0.03, 0.05, on_shelf),
                                      rng.uniform(0.022, 0.032, on_shelf),
                                      rng.uniform(0.03, 0.06, on_shelf)])
        new_half = np.array([rng.uniform(0.03, 0.05), rng.uniform(0.036, 0.044),
                             rng.uniform(0.03, 0.05)])
        width = 2.0 * new_half[1]
        if split == "train":
            gaps = rng.uniform(MIN_GAP, 0.05, on_shelf + 1)
            gaps[rng.integers(on_shelf + 1)] = rng.uniform(width + ROOM_MARGIN, width + 0.08)
        else:
            # Every gap is at least 1.2 cm too narrow, yet the gaps after the first item add up
            # to room: pushing the row together against the first item frees the +y end.
            while True:
                gaps = rng.uniform(MIN_GAP, width - 0.012, on_shelf + 1)
                if gaps[1:].sum() >= width + 0.025:
                    break
        length = 2.0 * shelf_half[:, 1].sum() + gaps.sum()
        shelf_top = 2.0 * SHELF_HALF_Z
        y = SHELF_Y - 0.5 * length + gaps[0]
        shelf_pos = np.zeros((on_shelf, 3))
        for index in range(on_shelf):
            room_x = SHELF_HALF_X - shelf_half[index, 0]
            shelf_pos[index] = (SHELF_X + rng.uniform(-room_x, room_x) * 0.5,
                                y + shelf_half[index, 1], shelf_top + shelf_half[index, 2]
                                + layout.REST_GAP)
            y += 2.0 * shelf_half[index, 1] + gaps[index + 1]
        new_yaw = rng.uniform(-0.3, 0.3)
        new_pos = np.zeros(3)
        new_pos[:2] = layout.scatter(rng, new_half[None], np.array([new_yaw]), NEW_ITEM_LOW,
                                     NEW_ITEM_HIGH, [])[0]
        new_pos[2] = new_half[2] + layout.REST_GAP
        board = (SHELF_HALF_X, 0.5 * length, SHELF_HALF_Z)
        return make_scene(
            kind=[FIXTURE] + [ITEM] * num_movable,
            half_extents=np.vstack([board, shelf_half, new_half]),
            pos=np.vstack([(SHELF_X, SHELF_Y, SHELF_HALF_Z), shelf_pos, new_pos]),
            yaw=np.concatenate([[0.0], np.zeros(on_shelf), [new_yaw]]),
        )

    def _movables(self, scene: Scene) -> list[int]:
        valid = np.asarray(scene.mask, bool) & (np.asarray(scene.kind) != FIXTURE)
        return [int(s) for s in np.flatnonzero(valid)]

    def _free_offset(self, rng: np.random.Generator, scene: Scene, obj: int) -> np.ndarray | None:
        """Return an offset on the shelf with room for `obj` (1 cm clear of every neighbour)."""
        return layout.free_table_offset(rng, scene, obj, FIXTURE_SLOT, margin=0.0,
                                        clearance=0.01, tries=200)

    def _sample_skill(self, rng, scene, split):
        movables = self._movables(scene)
        new_item = movables[-1]
        shelf_items = layout.resting_on(scene, FIXTURE_SLOT)
        if rng.random() < PLACE_PROB:
            if split == "ood":
                # Anywhere along the crowded shelf: every such footprint hits a neighbour.
                foot = layout.footprint(scene.half_extents[new_item], scene.yaw[new_item])
                room = layout.footprint(scene.half_extents[FIXTURE_SLOT], 0.0) - foot
                return make_skill(PICK_PLACE, new_item, FIXTURE_SLOT,
                                  rng.uniform(-room, room) * np.array([0.3, 1.0]))
            offset = self._free_offset(rng, scene, new_item)
            if offset is not None:
                return make_skill(PICK_PLACE, new_item, FIXTURE_SLOT, offset)
        if split == "train" and shelf_items and rng.random() < 0.3:
            obj = int(rng.choice(shelf_items))
            offset = self._free_offset(rng, scene, obj)
            if offset is not None:
                return make_skill(PICK_PLACE, obj, FIXTURE_SLOT, offset)
        # Push a shelf item along the row, toward a neighbour (the way items are packed).
        obj = int(rng.choice(shelf_items or movables))
        step = rng.choice([-1.0, 1.0]) * rng.uniform(0.01, 0.07)
        return make_skill(PUSH, obj, -1, (rng.uniform(-0.003, 0.003), step))

    def goal(self, scene: Scene) -> Goal:
        """Return the goal relations over the slots of `scene`."""
        movables = self._movables(scene)
        holds = [(REL[name], slot, FIXTURE_SLOT) for slot in movables
                 for name in ("above", "contact")]
        forbidden = [(REL["above"], i, j) for i in movables for j in movables if i != j]
        return Goal(tuple(holds), tuple(forbidden))

    def skeletons(self, scene: Scene):
        """Return the candidate plan skeletons for `scene`."""
        movables = self._movables(scene)
        new_item = movables[-1]
        row = sorted(layout.resting_on(scene, FIXTURE_SLOT), key=lambda s: scene.pos[s][1])
        foot = layout.footprint(scene.half_extents[new_item], scene.yaw[new_item])
        room = layout.footprint(scene.half_extents[FIXTURE_SLOT], 0.0) - foot
        place = SkeletonStep(PICK_PLACE, new_item, FIXTURE_SLOT,
                             (-0.01, float(-room[1])), (0.01, float(room[1])))
        # Skeleton k pushes the 2nd..(k+1)-th items of the row toward -y, each against its
        # neighbour, so the free room gathers at the +y end; then places the new item.
        skeletons = []
        for count in range(len(row)):
            pushes = tuple(SkeletonStep(PUSH, slot, -1, (-0.003, -0.08), (0.003, 0.0))
                           for slot in row[1:count + 1])
            skeletons.append(pushes + (place,))
        return tuple(skeletons)

    def ood_situation(self, scene: Scene, skill: Skill) -> bool:
        """Tell whether (scene, skill) is a situation never seen in training."""
        if int(skill.skill) != PICK_PLACE or int(skill.support) != FIXTURE_SLOT:
            return False
        return layout.placement_blocked(scene, int(skill.obj), FIXTURE_SLOT, skill.params)

    def shift_statistics(self, scene, skill, relations_t, relations_t1, pos_t1):
        """Return per-transition flags, measured on executed data."""
        blocked = self.ood_situation(scene, skill)
        obj = int(skill.obj)
        relations_t1 = np.asarray(relations_t1)
        placed = int(skill.skill) == PICK_PLACE and int(skill.support) == FIXTURE_SLOT
        on_shelf = bool(relations_t1[obj, FIXTURE_SLOT, REL["contact"]]
                        and relations_t1[obj, FIXTURE_SLOT, REL["above"]]
                        and not relations_t1[obj, :, REL["above"]][1:].any())
        pushed = int(skill.skill) == PUSH
        contact_made = pushed and bool(
            (relations_t1[obj, 1:, REL["contact"]] & ~np.asarray(relations_t)[obj, 1:,
                                                                               REL["contact"]]).any())
        return {"placement_blocked": bool(blocked),
                "placed_flat_on_shelf": bool(placed and on_shelf),
                "blocked_placed_flat": bool(blocked and on_shelf),
                "push_made_contact": contact_made}
