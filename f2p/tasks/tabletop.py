"""Hierarchical tabletop organisation: items into their cups, cups in a row on table B."""

from __future__ import annotations

import numpy as np

from f2p.scene import CONTAINER, FIXTURE, ITEM, PICK_PLACE, PUSH, REL, Scene, Skill, make_scene
from f2p.tasks import clearing, layout
from f2p.tasks.base import (
    FIXTURE_SLOT,
    Goal,
    SkeletonStep,
    Task,
    make_skill,
    place_on_table_or_push,
    push_params,
    stack_or_place_on_table,
)

TABLE_B_HALF = (0.20, 0.25, 0.05)
TABLE_B_POS = (0.55, 0.35, 0.05)
"""Table B spans x 0.35..0.75, y 0.10..0.60, top at z = 0.10."""
FLOOR_A_LOW, FLOOR_A_HIGH = (0.35, -0.60), (0.75, -0.05)
"""Table A is this region of the ground, right of the robot, 15 cm from table B."""
ON_TABLE_B_PROB = 0.25
"""Chance that a cup or a free item starts on table B instead of table A."""
MOVE_LOADED_PROB = 0.7
"""OOD skill distribution: chance of moving a loaded cup (its contents ride along)."""
CARRIED_DISTANCE = 0.03
"""A content object counts as carried when it moved this far in xy (metres)."""
FILL_JITTER = 0.006
"""Half width (metres) of the box of offsets that put an item into its cup, around the centre."""
ASIDE_DX = (-0.16, -0.13)
"""dx range (from table B's centre) of the strip in front of the row where strays are put down:
clear of the cups, whose row lanes stay within dx +-0.02 plus a footprint of at most 0.065."""
ASIDE_HALF_Y = TABLE_B_HALF[1] - 0.05
"""The strip spans dy +-this: a footprint's margin from table B's side edges."""
ITEM_MAX_FOOTPRINT = 0.032
"""Upper bound of an item's xy footprint half size (half extent 0.022 at yaw 0.6: 0.031)."""


def num_cups(num_movable: int, split: str = "train") -> int:
    """Return the cups per scene.

    Train: 2, 3, 4 cups for 3, 5, 7 movables, so one cup always stays empty. OOD: 1, 2, 3, so
    there is one item more than cups: a stray that belongs in no cup.
    """
    return (num_movable + 1) // 2 if split == "train" else (num_movable - 1) // 2


class TabletopTask(Task):
    """Cups (containers) and small items start on table A (the ground, right of the robot).

    Goal: item k inside cup k, and every cup on table B (slot 0) in a row along +y: cup c + 1
    left of cup c, not in front of or behind it. Items beyond the number of cups are strays:
    they must end inside no cup. Slots: 0 table B, 1..C cups, C+1..n items.

    Training scenes have one cup more than items and never hold an item in a cup, so the base
    model never sees a loaded cup move. OOD scenes have one item more than cups, and that stray
    starts inside one of the cups (whose own item is loose); their skills mostly move the loaded
    cup. The base model believes a carried cup leaves its contents behind, so it moves the cups
    first and then fills them: the stray rides along in its cup, and the cup's own item lands
    on it. Emptying the cup first, then filling it, then carrying it (its item riding along)
    succeeds, but the base model believes the carried items fall out.
    """

    name = "tabletop"
    description = "hierarchical tabletop organisation"

    def _sample_scene(self, rng: np.random.Generator, num_movable: int, split: str) -> Scene:
        cups = num_cups(num_movable, split)
        items = num_movable - cups
        cup_half = np.column_stack([rng.uniform(0.044, 0.05, (cups, 2)),
                                    rng.uniform(0.035, 0.045, cups)])
        item_half = np.column_stack([rng.uniform(0.016, 0.022, (items, 2)),
                                     rng.uniform(0.02, 0.035, items)])
        cup_yaw = rng.uniform(-0.25, 0.25, cups)
        item_yaw = rng.uniform(-0.6, 0.6, items)
        host = np.full(items, -1)  # the cup an item starts in, -1 for none
        if split == "ood":
            host[-1] = rng.integers(cups)  # the stray (the last item) lies in a random cup
        table_top = TABLE_B_POS[2] + TABLE_B_HALF[2]
        table_low = np.asarray(TABLE_B_POS[:2]) - TABLE_B_HALF[:2]
        table_high = np.asarray(TABLE_B_POS[:2]) + TABLE_B_HALF[:2]
        occupied = {"a": [], "b": []}
        cup_on_b = rng.random(cups) < ON_TABLE_B_PROB
        cup_pos = np.zeros((cups, 3))
        for c in range(cups):
            where = "b" if cup_on_b[c] else "a"
            low, high = (table_low, table_high) if cup_on_b[c] else (FLOOR_A_LOW, FLOOR_A_HIGH)
            cup_pos[c, :2] = layout.scatter(rng, cup_half[c:c + 1], cup_yaw[c:c + 1], low, high,
                                            occupied[where])[0]
            base = table_top if cup_on_b[c] else layout.FLOOR_TOP
            cup_pos[c, 2] = base + cup_half[c, 2] + layout.REST_GAP
        item_pos = np.zeros((items, 3))
        for k in range(items):
            if host[k] >= 0:
                # The item rests on the floor of its host cup, nearly aligned with it.
                c = host[k]
                item_yaw[k] = cup_yaw[c] + rng.uniform(-0.1, 0.1)
                offset = layout.inside_offset(rng, cup_half[c], item_half[k],
                                              item_yaw[k] - cup_yaw[c])
                item_pos[k, :2] = cup_pos[c, :2] + layout.rotate(offset, cup_yaw[c])
                floor = layout.support_surface(CONTAINER, cup_pos[c, 2], cup_half[c, 2])
                item_pos[k, 2] = floor + item_half[k, 2] + layout.REST_GAP
                continue
            on_b = rng.random() < ON_TABLE_B_PROB
            low, high = (table_low, table_high) if on_b else (FLOOR_A_LOW, FLOOR_A_HIGH)
            item_pos[k, :2] = layout.scatter(rng, item_half[k:k + 1], item_yaw[k:k + 1], low,
                                             high, occupied["b" if on_b else "a"])[0]
            base = table_top if on_b else layout.FLOOR_TOP
            item_pos[k, 2] = base + item_half[k, 2] + layout.REST_GAP
        return make_scene(
            kind=[FIXTURE] + [CONTAINER] * cups + [ITEM] * items,
            half_extents=np.vstack([TABLE_B_HALF, cup_half, item_half]),
            pos=np.vstack([TABLE_B_POS, cup_pos, item_pos]),
            yaw=np.concatenate([[0.0], cup_yaw, item_yaw]),
        )

    def _slots(self, scene: Scene) -> tuple[list[int], list[int]]:
        kind = np.asarray(scene.kind)
        valid = np.asarray(scene.mask, bool)
        cups = [int(s) for s in np.flatnonzero(valid & (kind == CONTAINER))]
        items = [int(s) for s in np.flatnonzero(valid & (kind == ITEM))]
        return cups, items

    def _sample_skill(self, rng, scene, split):
        cups, items = self._slots(scene)
        loaded = layout.loaded_containers(scene)
        loaded_cups = [c for c in cups if loaded[c]]
        if split == "ood" and loaded_cups and rng.random() < MOVE_LOADED_PROB:
            cup = int(rng.choice(loaded_cups))
            if rng.random() < 0.3:
                return make_skill(PUSH, cup, -1, push_params(rng))
            return place_on_table_or_push(rng, scene, cup)
        # Training never moves a loaded cup (none exist there) and never blocks a placement.
        movable = [s for s in cups + items if split == "ood" or not loaded[s]]
        obj = int(rng.choice(movable))
        if rng.random() < 0.3:
            return make_skill(PUSH, obj, -1, push_params(rng))
        if obj in items:
            containing = [c for c in cups if layout.is_inside(scene, obj, c)]
            choice = rng.random()
            targets = [c for c in cups if c not in containing]
            if choice < 0.45 and targets:
                return make_skill(PICK_PLACE, obj, int(rng.choice(targets)),
                                  rng.uniform(-0.006, 0.006, 2))
            return stack_or_place_on_table(rng, scene, obj, items, choice, stack_jitter=0.01)
        return place_on_table_or_push(rng, scene, obj)

    def goal(self, scene: Scene) -> Goal:
        """Return the goal relations over the slots of `scene` (strays: inside no cup)."""
        cups, items = self._slots(scene)
        holds = [(REL["inside"], item, cup) for item, cup in zip(items, cups, strict=False)]
        holds += [(REL["above"], cup, FIXTURE_SLOT) for cup in cups]
        holds += [(REL["left"], b, a) for a, b in zip(cups[:-1], cups[1:], strict=True)]
        forbidden = [(REL[side], b, a) for a, b in zip(cups[:-1], cups[1:], strict=True)
                     for side in ("front", "behind")]
        forbidden += [(REL["inside"], stray, cup) for stray in items[len(cups):] for cup in cups]
        return Goal(tuple(holds), tuple(forbidden))

    def row_bounds(self, scene: Scene) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Return per cup the (low, high) placement offsets on table B: lane c of a row along +y."""
        cups, _ = self._slots(scene)
        half_x, half_y = TABLE_B_HALF[:2]
        lane = 2.0 * half_y / len(cups)
        bounds = []
        for index, cup in enumerate(cups):
            foot = layout.footprint(scene.half_extents[cup], scene.yaw[cup])
            centre = -half_y + lane * (index + 0.5)
            slack_y = max(0.5 * lane - foot[1] - 0.005, 0.0)
            bounds.append(((-0.02, centre - slack_y), (0.02, centre + slack_y)))
        return bounds

    def aside_bounds(self, scene: Scene) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Return per stray the (low, high) offsets on table B, in front of the row.

        Each stray gets its own stretch along y of the ASIDE_DX strip, so strays never land on
        a cup nor on each other.
        """
        cups, items = self._slots(scene)
        return self._aside_lanes(len(items) - len(cups), margin=0.02)

    def clearing_lanes(self, scene: Scene) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Return one aside lane per item: narrower stretches of the strip, apart from each other.

        Every item may have to go aside (a stray, or an item standing where a cup's lane is);
        the margin of an item's largest footprint keeps neighbouring lanes' items apart.
        """
        _, items = self._slots(scene)
        return self._aside_lanes(len(items), margin=ITEM_MAX_FOOTPRINT)

    @staticmethod
    def _aside_lanes(count: int, margin: float):
        lane = 2.0 * ASIDE_HALF_Y / max(count, 1)
        return [((ASIDE_DX[0], -ASIDE_HALF_Y + lane * index + margin),
                 (ASIDE_DX[1], -ASIDE_HALF_Y + lane * (index + 1) - margin))
                for index in range(count)]

    def skeletons(self, scene: Scene):
        """Return the candidate plan skeletons for `scene`.

        items_first: put every stray aside on table B, every item not yet in its own cup into
        it, then carry the cups to their lanes (whatever is in a cup rides along).
        cups_first: carry the cups to their lanes, then put every loose item (one inside no
        cup) into its cup; items already inside a cup are left to travel with it.
        cups_only: carry the cups (relies on the items already being in their cups).
        In distribution no item starts in a cup, so cups_first is the only skeleton that never
        carries a loaded cup, and there it is what the base model rightly prefers.
        """
        return self._skeletons(scene, self.aside_bounds(scene))

    def clearing_skeletons(self, scene: Scene):
        """Return the skeletons reordered to clear each placement's spot first (f2p.tasks.clearing).

        Strays go to the first clearing lanes; an item standing where a step places (in a cup's
        lane, say) goes before that step, or is put aside into a lane still free. Cups do not fit
        the strip, so a step blocked only by a cup that cannot move first yields no skeleton.
        """
        lanes = self.clearing_lanes(scene)
        cups, items = self._slots(scene)
        strays = max(len(items) - len(cups), 0)
        return clearing.clearing_skeletons(
            scene, self._skeletons(scene, lanes[:strays]), lanes[strays:],
            fits_aside=lambda slot: int(scene.kind[slot]) == ITEM)

    def _skeletons(self, scene: Scene, stray_lanes):
        cups, items = self._slots(scene)
        pairs = list(zip(items, cups, strict=False))
        in_some_cup = {item: any(layout.is_inside(scene, item, cup) for cup in cups)
                       for item in items}
        strays = items[len(cups):]
        aside = tuple(SkeletonStep(PICK_PLACE, stray, FIXTURE_SLOT, low, high)
                      for stray, (low, high) in zip(strays, stray_lanes, strict=True))
        jitter = ((-FILL_JITTER, -FILL_JITTER), (FILL_JITTER, FILL_JITTER))
        sort = tuple(SkeletonStep(PICK_PLACE, item, cup, *jitter) for item, cup in pairs
                     if not layout.is_inside(scene, item, cup))
        fill = tuple(SkeletonStep(PICK_PLACE, item, cup, *jitter) for item, cup in pairs
                     if not in_some_cup[item])
        row = tuple(SkeletonStep(PICK_PLACE, cup, FIXTURE_SLOT, low, high)
                    for cup, (low, high) in zip(cups, self.row_bounds(scene), strict=True))
        return (aside + sort + row, row + fill, row)

    def ood_situation(self, scene: Scene, skill: Skill) -> bool:
        """Tell whether (scene, skill) is a situation never seen in training."""
        obj = int(skill.obj)
        return bool(scene.kind[obj] == CONTAINER and layout.loaded_containers(scene)[obj])

    def shift_statistics(self, scene, skill, relations_t, relations_t1, pos_t1):
        """Return per-transition flags, measured on executed data."""
        obj = int(skill.obj)
        contents = np.flatnonzero(np.asarray(relations_t)[:, obj, REL["inside"]])
        moved_loaded = bool(scene.kind[obj] == CONTAINER and contents.size > 0)
        shift = np.linalg.norm(np.asarray(pos_t1)[contents, :2] - scene.pos[contents, :2], axis=-1)
        carried = moved_loaded and bool(np.any(shift > CARRIED_DISTANCE))
        still_inside = moved_loaded and bool(
            np.all(np.asarray(relations_t1)[contents, obj, REL["inside"]]))
        return {"loaded_container_moved": moved_loaded, "contents_carried": carried,
                "contents_still_inside": still_inside}
