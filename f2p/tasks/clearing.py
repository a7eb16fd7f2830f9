"""Skeleton reordering that clears a placement's spot before an object is put there."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from f2p.scene import CONTAINER, FIXTURE, PICK_PLACE, Scene
from f2p.tasks.base import FIXTURE_SLOT, Skeleton, SkeletonStep
from f2p.tasks.layout import footprint, is_inside, overlaps

AsideLane = tuple[tuple[float, float], tuple[float, float]]
"""(low, high) placement offsets on the fixture of one spot where a blocker may be put aside."""


class _Layout:
    """Believed xy centres, footprints and hosts of a scene's objects as a skeleton runs."""

    def __init__(self, scene: Scene):
        self.scene = scene
        valid = np.asarray(scene.mask, bool)
        self.slots = [int(s) for s in np.flatnonzero(valid)]
        self.centre = np.asarray(scene.pos, np.float64)[:, :2].copy()
        self.foot = footprint(scene.half_extents, scene.yaw)
        self.host = {s: next((c for c in self.slots if is_inside(scene, s, c)), -1)
                     for s in self.slots}

    def riders(self, obj: int) -> list[int]:
        """Objects that move with obj: those in it, and those in them (transitively)."""
        found, frontier = [], [obj]
        while frontier:
            inner = [s for s in self.slots if self.host[s] in frontier and s not in found]
            found += inner
            frontier = inner
        return found

    def blockers(self, step: SkeletonStep) -> list[int]:
        """Objects standing where step may place its object (its whole [low, high] box)."""
        if step.skill != PICK_PLACE:
            return []
        target_low = self.centre[step.support] + np.asarray(step.low)
        target_high = self.centre[step.support] + np.asarray(step.high)
        # The placed footprint sweeps the target box grown by the object's own footprint.
        centre, half = (target_low + target_high) / 2, (target_high - target_low) / 2
        half = half + self.foot[step.obj]
        exempt = {step.obj, step.support, *self.riders(step.obj)}
        return [s for s in self.slots
                if s not in exempt and int(self.scene.kind[s]) != FIXTURE
                and overlaps(centre, half, self.centre[s], self.foot[s])]

    def apply(self, step: SkeletonStep) -> None:
        """Move step's object (and its riders) to the centre of its target box."""
        if step.skill != PICK_PLACE:
            raise ValueError(f"clearing: step {step} is not a pick_place; only placements "
                             "have a target to clear")
        target = self.centre[step.support] + (np.asarray(step.low) + np.asarray(step.high)) / 2
        delta = target - self.centre[step.obj]
        for slot in [step.obj, *self.riders(step.obj)]:
            self.centre[slot] += delta
        self.host[step.obj] = (step.support if int(self.scene.kind[step.support]) == CONTAINER
                               else -1)


def _objects(step: SkeletonStep, scene: Scene) -> set[int]:
    """The movable objects a step touches: its object and a movable support."""
    touched = {int(step.obj)}
    if step.support >= 0 and int(scene.kind[step.support]) != FIXTURE:
        touched.add(int(step.support))
    return touched


def clearing_order(scene: Scene, skeleton: Skeleton, aside_lanes: Sequence[AsideLane],
                   fits_aside=lambda slot: True) -> Skeleton | None:
    """Reorder a pick_place skeleton so that no step places onto an object still standing there.

    Steps that touch a common movable object (as object or support) keep their order; among
    the steps whose predecessors are done, the earliest whose target box (grown by the
    object's footprint) is clear goes next. When every ready step is blocked, the first
    blocker of the earliest ready step that fits_aside is put aside on the fixture, onto the
    first of aside_lanes that is clear and unused, in a step of its own.

    Args:
      scene: the believed scene the skeleton starts from.
      skeleton: pick_place steps only.
      aside_lanes: (low, high) fixture offsets, each taken by at most one put-aside object.
      fits_aside: tells whether a slot may be put into an aside lane (e.g. small enough).

    Returns:
      The reordered skeleton (possibly with put-aside steps), or None when a blocked step
      cannot be cleared (the blocker does not fit aside, or no lane is left).

    Raises:
      ValueError: a step that is not a pick_place.
    """
    layout = _Layout(scene)
    pending, order, free_lanes = list(skeleton), [], list(aside_lanes)
    while pending:
        ready = [index for index, step in enumerate(pending)
                 if not any(_objects(step, scene) & _objects(before, scene)
                            for before in pending[:index])]
        blocked = {index: layout.blockers(pending[index]) for index in ready}
        clear = [index for index in ready if not blocked[index]]
        if clear:
            step = pending.pop(clear[0])
        else:
            movable = [s for s in blocked[ready[0]] if fits_aside(s)]
            if not movable:
                return None
            step = _aside_step(layout, movable[0], free_lanes)
            if step is None:
                return None
        layout.apply(step)
        order.append(step)
    return tuple(order)


def _aside_step(layout: _Layout, slot: int, free_lanes: list[AsideLane]) -> SkeletonStep | None:
    """A step putting slot into the first clear lane (removed from free_lanes), or None."""
    for lane in list(free_lanes):
        step = SkeletonStep(PICK_PLACE, slot, FIXTURE_SLOT, *lane)
        if not layout.blockers(step):
            free_lanes.remove(lane)
            return step
    return None


def clearing_skeletons(scene: Scene, skeletons: Sequence[Skeleton],
                       aside_lanes: Sequence[AsideLane], fits_aside=lambda slot: True
                       ) -> tuple[Skeleton, ...]:
    """The clearing_order of every skeleton that it changes, without duplicates, in order."""
    found: list[Skeleton] = []
    for skeleton in skeletons:
        reordered = clearing_order(scene, skeleton, aside_lanes, fits_aside)
        if reordered is not None and reordered not in tuple(skeletons) + tuple(found):
            found.append(reordered)
    return tuple(found)
