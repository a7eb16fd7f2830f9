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
PLACE_MARGIN = 0.006
"""Planning: clearance kept, where the gap allows, between the placed item and each side of
its gap (metres); in a tighter gap the placement range shrinks to the gap's centre."""
FIT_TOLERANCE = 0.005
"""Planning: a gap holds the new item when it is at most this much narrower than the item's
footprint. Boxes fitted to noisy points come out a few mm larger than the objects, so a
training gap (ROOM_MARGIN wider than the item) can look slightly too narrow; OOD gaps are
short by over 1.2 cm (about 2.5 cm on the yawed footprint), so they never pass."""
PLACE_DX = 0.01
"""Planning: half range of the placement's dx (across the shelf's depth)."""


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

    def free_gap(self, scene: Scene) -> tuple[float, float] | None:
        """Return the widest free y interval (world frame) on the shelf that holds the new item.

        The intervals are the stretches of the board's length between the footprints of the
        objects over the board (its ends included). The widest one holds the new item when it
        is at least the item's footprint width minus FIT_TOLERANCE.

        Args:
          scene: the scene the agent believes (e.g. the Real2Sim fit of its first observation).

        Returns:
          (low, high) y bounds of the widest free interval, or None when it is too narrow.

        """
        movables = self._movables(scene)
        new_item = movables[-1]
        board_foot = layout.footprint(scene.half_extents[FIXTURE_SLOT], scene.yaw[FIXTURE_SLOT])
        board_y = float(scene.pos[FIXTURE_SLOT][1])
        # Every object whose footprint overlaps the board's in xy occupies part of its length,
        # whatever its height: an estimate slightly off the board top still blocks the spot.
        spans = []
        for slot in movables[:-1]:
            foot = layout.footprint(scene.half_extents[slot], scene.yaw[slot])
            if layout.overlaps(scene.pos[slot][:2], foot, scene.pos[FIXTURE_SLOT][:2],
                               board_foot):
                y = float(scene.pos[slot][1])
                spans.append((y - float(foot[1]), y + float(foot[1])))
        # Sweep the spans by their low end; `covered` is the highest y occupied so far, so
        # overlapping or nested spans never leave a false gap.
        gaps, covered = [], board_y - float(board_foot[1])
        for span_low, span_high in sorted(spans):
            gaps.append((covered, span_low))
            covered = max(covered, span_high)
        gaps.append((covered, board_y + float(board_foot[1])))
        low, high = max(gaps, key=lambda gap: gap[1] - gap[0])
        width = 2.0 * float(layout.footprint(scene.half_extents[new_item],
                                             scene.yaw[new_item])[1])
        if high - low < width - FIT_TOLERANCE:
            return None
        return low, high

    def skeletons(self, scene: Scene):
        """Return the candidate plan skeletons for `scene` (the scene the agent believes).

        The skeletons, with the bounds of their continuous args, are the task's plan
        specification computed from the scene the agent believes. When the shelf has a free gap
        that holds the new item (see free_gap), the plan is one placement whose dy range keeps
        the item's footprint inside that gap, PLACE_MARGIN from its sides (only the gap's centre
        when it is tighter than that): no pushes are needed, and a placement onto a neighbour
        is no plan of the task. Otherwise (a crowded shelf) the skeletons are k = 0 .. n_s - 1
        pushes of the row together, then a placement anywhere along the shelf.
        """
        movables = self._movables(scene)
        new_item = movables[-1]
        foot = layout.footprint(scene.half_extents[new_item], scene.yaw[new_item])
        gap = self.free_gap(scene)
        if gap is not None:
            # dy is relative to the board's centre; the range is centred on the gap's.
            middle = 0.5 * (gap[0] + gap[1]) - float(scene.pos[FIXTURE_SLOT][1])
            reach = max(0.0, 0.5 * (gap[1] - gap[0]) - float(foot[1]) - PLACE_MARGIN)
            return ((SkeletonStep(PICK_PLACE, new_item, FIXTURE_SLOT, (-PLACE_DX, middle - reach),
                                  (PLACE_DX, middle + reach)),),)
        row = sorted(layout.resting_on(scene, FIXTURE_SLOT), key=lambda s: scene.pos[s][1])
        room = layout.footprint(scene.half_extents[FIXTURE_SLOT], 0.0) - foot
        place = SkeletonStep(PICK_PLACE, new_item, FIXTURE_SLOT,
                             (-PLACE_DX, float(-room[1])), (PLACE_DX, float(room[1])))
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
