"""The Task interface (DESIGN sections 5 and 7): scene samplers, goals, skeletons, success."""

from __future__ import annotations

import abc
from typing import NamedTuple

import numpy as np

from f2p.scene import (
    PICK_PLACE,
    PUSH,
    RELATION_NAMES,
    Scene,
    Skill,
    Transition,
    transition_scene,
    transition_skill,
    validate_scene,
)
from f2p.tasks.layout import LayoutError, free_table_offset

SPLITS = ("train", "ood")
"""Scene distributions: what the base model learns from, and where it goes wrong."""
OBJECT_COUNTS = (3, 5, 7)
"""Numbers of movable objects a task scene may have (the fixture comes on top)."""
FIXTURE_SLOT = 0
"""Every task puts its single fixture (the destination table or shelf) in slot 0."""
LAYOUT_ATTEMPTS = 20
"""Random layouts tried per sampled scene before giving up."""


class Goal(NamedTuple):
    """Relations that must hold, and relations that must not, at the end of an episode.

    Attributes:
      must_hold: (relation index, i, j) triples over slots that must be True.
      must_not_hold: (relation index, i, j) triples that must be False.

    """

    must_hold: tuple[tuple[int, int, int], ...]
    must_not_hold: tuple[tuple[int, int, int], ...] = ()

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return (relation, i, j, target) int32/int32/int32/bool arrays, holds first."""
        triples = list(self.must_hold) + list(self.must_not_hold)
        table = np.asarray(triples, np.int32).reshape(-1, 3)
        target = np.array([True] * len(self.must_hold) + [False] * len(self.must_not_hold))
        return table[:, 0], table[:, 1], table[:, 2], target

    def describe(self) -> list[str]:
        """Return human-readable lines such as 'inside(4, 1)' and 'not above(2, 3)'."""
        lines = [f"{RELATION_NAMES[r]}({i}, {j})" for r, i, j in self.must_hold]
        return lines + [f"not {RELATION_NAMES[r]}({i}, {j})" for r, i, j in self.must_not_hold]


class SkeletonStep(NamedTuple):
    """One step of a plan skeleton: the discrete args, and box bounds for the continuous ones.

    Attributes:
      skill: index into scene.SKILL_NAMES.
      obj: slot of the object moved.
      support: slot of the support for pick_place, -1 for push.
      low: (dx, dy) lower bounds of the continuous args (metres).
      high: (dx, dy) upper bounds.

    """

    skill: int
    obj: int
    support: int
    low: tuple[float, float]
    high: tuple[float, float]


Skeleton = tuple[SkeletonStep, ...]


def make_skill(skill: int, obj: int, support: int, params) -> Skill:
    """Build one unbatched NumPy Skill."""
    return Skill(
        skill=np.int32(skill),
        obj=np.int32(obj),
        support=np.int32(support if skill == PICK_PLACE else -1),
        params=np.asarray(params, np.float32).reshape(2),
    )


def push_params(rng: np.random.Generator, low: float = 0.03, high: float = 0.12) -> np.ndarray:
    """Return a push displacement of uniform direction and length in [low, high] metres."""
    angle = rng.uniform(0.0, 2.0 * np.pi)
    length = rng.uniform(low, high)
    return np.array([length * np.cos(angle), length * np.sin(angle)])


def place_on_table_or_push(rng: np.random.Generator, scene: Scene, obj: int) -> Skill:
    """Return a placement of `obj` on a free spot of the destination fixture, else a push."""
    offset = free_table_offset(rng, scene, obj, FIXTURE_SLOT)
    if offset is None:
        return make_skill(PUSH, obj, -1, push_params(rng))
    return make_skill(PICK_PLACE, obj, FIXTURE_SLOT, offset)


def stack_or_place_on_table(rng: np.random.Generator, scene: Scene, obj: int, items,
                            choice: float, stack_jitter: float) -> Skill:
    """Return `obj` stacked on another of `items` when choice > 0.9, else on the table.

    The stacking offset is uniform within +-stack_jitter; the table case is
    place_on_table_or_push.
    """
    others = [slot for slot in items if slot != obj]
    if choice > 0.9 and others:
        return make_skill(PICK_PLACE, obj, int(rng.choice(others)),
                          rng.uniform(-stack_jitter, stack_jitter, 2))
    return place_on_table_or_push(rng, scene, obj)


def check_split(split: str) -> None:
    """Raise a ValueError naming the allowed splits."""
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {', '.join(SPLITS)}")


class Task(abc.ABC):
    """A manipulation task: scene distributions, a goal, plan skeletons and a success test.

    Slot 0 always holds the task's single fixture (so 7 movable objects still fit K_MAX = 8);
    movable objects fill slots 1..n and the remaining slots are padding.
    """

    name: str = ""
    description: str = ""

    def sample_scene(self, rng: np.random.Generator, num_movable: int,
                     split: str = "train") -> Scene:
        """Sample one padded, validated Scene.

        Args:
          rng: NumPy generator; the result is a deterministic function of its state.
          num_movable: number of movable objects, one of OBJECT_COUNTS.
          split: "train" (the base model's distribution) or "ood" (where it goes wrong).

        Returns:
          An unbatched NumPy Scene with the fixture in slot 0 and objects resting, apart.

        """
        check_split(split)
        if num_movable not in OBJECT_COUNTS:
            raise ValueError(f"num_movable: {num_movable} is not one of {OBJECT_COUNTS}")
        for _ in range(LAYOUT_ATTEMPTS):
            try:
                scene = self._sample_scene(rng, num_movable, split)
            except LayoutError:  # a random layout can fail to fit: draw again
                continue
            validate_scene(scene)
            return scene
        raise LayoutError(f"{self.name}: no layout of {num_movable} objects in "
                          f"{LAYOUT_ATTEMPTS} attempts")

    def sample_skill(self, rng: np.random.Generator, scene: Scene, split: str = "train") -> Skill:
        """Sample random skill arguments from the task's skill distribution for `split`."""
        check_split(split)
        return self._sample_skill(rng, scene, split)

    def num_movable(self, scene: Scene) -> int:
        """Return the number of movable objects (valid slots other than the fixture)."""
        return int(np.asarray(scene.mask).sum()) - 1

    def is_success(self, true_scene: Scene, true_relations) -> bool:
        """Tell whether every goal relation holds and no forbidden one does.

        Args:
          true_scene: the true final Scene (unbatched).
          true_relations: [K, K, 9] bool true relations of that scene.

        """
        relations = np.asarray(true_relations, bool)
        goal = self.goal(true_scene)
        holds = all(relations[i, j, r] for r, i, j in goal.must_hold)
        return bool(holds and not any(relations[i, j, r] for r, i, j in goal.must_not_hold))

    def measure(self, transition: Transition) -> dict[str, bool]:
        """Flags of one executed dataset row that tell the training from the OOD distribution.

        Returns:
          {"ood_situation": ood_situation(...)} plus shift_statistics(...), both read from the
          row's true pre-skill scene, its skill, relations and post-skill positions.
        """
        scene, skill = transition_scene(transition), transition_skill(transition)
        return {"ood_situation": self.ood_situation(scene, skill),
                **self.shift_statistics(scene, skill, transition.relations_t,
                                        transition.relations_t1, transition.pos_t1)}

    @abc.abstractmethod
    def _sample_scene(self, rng: np.random.Generator, num_movable: int, split: str) -> Scene:
        """Sample a scene; the public wrapper validates the arguments and the result."""

    @abc.abstractmethod
    def _sample_skill(self, rng: np.random.Generator, scene: Scene, split: str) -> Skill:
        """Sample a skill; the public wrapper validates the split."""

    @abc.abstractmethod
    def goal(self, scene: Scene) -> Goal:
        """Return the goal relations over the slots of `scene` (they depend on its object count)."""

    @abc.abstractmethod
    def skeletons(self, scene: Scene) -> tuple[Skeleton, ...]:
        """Return candidate plan skeletons for `scene`, each a tuple of SkeletonSteps."""

    def clearing_skeletons(self, scene: Scene) -> tuple[Skeleton, ...]:
        """Return extra skeletons that clear each placement's spot before filling it.

        Planners add them to skeletons(scene) when asked to (PlannerConfig.clearing_skeletons);
        a task whose skeletons never place onto standing objects has none (the default).
        """
        del scene
        return ()

    @abc.abstractmethod
    def ood_situation(self, scene: Scene, skill: Skill) -> bool:
        """Tell whether (scene, skill) is a situation the base model never sees in training."""

    @abc.abstractmethod
    def shift_statistics(self, scene: Scene, skill: Skill, relations_t, relations_t1,
                         pos_t1) -> dict[str, bool]:
        """Return per-transition flags, measured on executed data, that tell train from OOD."""


__all__ = [
    "FIXTURE_SLOT", "Goal", "OBJECT_COUNTS", "PICK_PLACE", "PUSH", "SPLITS", "Skeleton",
    "SkeletonStep", "Task", "check_split", "make_skill", "push_params",
]
