"""Scene, Skill and Transition pytrees (DESIGN section 3): constants, validation, batch helpers."""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import numpy as np

K_MAX = 8
"""Object slots per scene (fixtures included); unused slots are masked out."""

ITEM, CONTAINER, FIXTURE = 0, 1, 2
KIND_NAMES = ("item", "container", "fixture")

PICK_PLACE, PUSH = 0, 1
SKILL_NAMES = ("pick_place", "push")

RELATION_NAMES = (
    "left", "right", "front", "behind", "below", "above", "contact", "boundary", "inside",
)
NUM_RELATIONS = len(RELATION_NAMES)
REL = {name: index for index, name in enumerate(RELATION_NAMES)}
"""Relation name -> index in the last axis of a [K, K, 9] relation tensor."""


class Scene(NamedTuple):
    """Boxes in the world frame (x away from the robot, y to its left, z up), padded to K slots.

    Works unbatched ([K] leading shapes) or batched (an extra leading axis on every field), and
    with either NumPy or JAX arrays.

    Attributes:
      kind: [K] int, 0 item, 1 container (open-top box), 2 fixture (static: table, shelf).
      half_extents: [K, 3] half sizes in metres (a container's outer box).
      pos: [K, 3] box centres in metres.
      yaw: [K] rotation about z in radians.
      mask: [K] bool, valid slots.
    """

    kind: np.ndarray
    half_extents: np.ndarray
    pos: np.ndarray
    yaw: np.ndarray
    mask: np.ndarray


class Skill(NamedTuple):
    """One parameterised skill; batched like Scene.

    Attributes:
      skill: [] int, index into SKILL_NAMES.
      obj: [] int, slot of the object moved.
      support: [] int, slot of the support for pick_place (-1 for push).
      params: [2] float, (dx, dy): offset from the support's top centre for pick_place, the
        displacement for push, in metres.
    """

    skill: np.ndarray
    obj: np.ndarray
    support: np.ndarray
    params: np.ndarray


def skill_index(name: str) -> int:
    """Returns the index of a skill name, or raises a ValueError listing the allowed names."""
    if name not in SKILL_NAMES:
        raise ValueError(f"unknown skill {name!r}; allowed: {', '.join(SKILL_NAMES)}")
    return SKILL_NAMES.index(name)


def make_scene(kind, half_extents, pos, yaw=None, k_max: int = K_MAX) -> Scene:
    """Builds a padded, validated NumPy Scene from per-object lists (len <= k_max)."""
    kind = np.asarray(kind, np.int32)
    count = kind.shape[0]
    if count > k_max:
        raise ValueError(f"kind: {count} objects exceed k_max={k_max}")
    yaw = np.zeros(count) if yaw is None else yaw
    padded = Scene(
        kind=np.zeros(k_max, np.int32),
        half_extents=np.full((k_max, 3), 0.01, np.float32),
        pos=np.zeros((k_max, 3), np.float32),
        yaw=np.zeros(k_max, np.float32),
        mask=np.zeros(k_max, bool),
    )
    padded.kind[:count] = kind
    padded.half_extents[:count] = np.asarray(half_extents, np.float32).reshape(count, 3)
    padded.pos[:count] = np.asarray(pos, np.float32).reshape(count, 3)
    padded.yaw[:count] = np.asarray(yaw, np.float32).reshape(count)
    padded.mask[:count] = True
    validate_scene(padded)
    return padded


def validate_scene(scene: Scene) -> None:
    """Raises ValueError naming the field when a (possibly batched) NumPy scene is malformed."""
    kind = np.asarray(scene.kind)
    batch = kind.shape[:-1]
    k = kind.shape[-1] if kind.ndim else 0
    expected = {
        "kind": batch + (k,),
        "half_extents": batch + (k, 3),
        "pos": batch + (k, 3),
        "yaw": batch + (k,),
        "mask": batch + (k,),
    }
    for field, shape in expected.items():
        actual = np.shape(getattr(scene, field))
        if actual != shape:
            raise ValueError(f"scene.{field}: shape {actual}, expected {shape} (K={k})")
    mask = np.asarray(scene.mask).astype(bool)
    if not mask.any(axis=-1).all():
        raise ValueError("scene.mask: a scene has no valid objects")
    if np.any(~np.isin(kind[mask], (ITEM, CONTAINER, FIXTURE))):
        raise ValueError(f"scene.kind: values must be in {{0, 1, 2}} ({', '.join(KIND_NAMES)})")
    for field in ("half_extents", "pos", "yaw"):
        values = np.asarray(getattr(scene, field))[mask]
        if not np.all(np.isfinite(values)):
            raise ValueError(f"scene.{field}: non-finite values in valid slots")
    if np.any(np.asarray(scene.half_extents)[mask] <= 0):
        raise ValueError("scene.half_extents: must be > 0 for valid slots")


def validate_skill(skill: Skill, scene: Scene) -> None:
    """Raises ValueError naming the field when a (possibly batched) skill does not fit its scene."""
    names = np.asarray(skill.skill)
    if np.any((names < 0) | (names >= len(SKILL_NAMES))):
        raise ValueError(f"skill.skill: must index {SKILL_NAMES}")
    mask = np.asarray(scene.mask).astype(bool)
    kind = np.asarray(scene.kind)
    k = mask.shape[-1]
    obj = np.asarray(skill.obj)
    support = np.asarray(skill.support)
    if np.any((obj < 0) | (obj >= k)) or not np.all(np.take_along_axis(
            mask, obj[..., None], axis=-1)):
        raise ValueError("skill.obj: must be a valid (masked-in) object slot")
    if np.any(np.take_along_axis(kind, obj[..., None], axis=-1) == FIXTURE):
        raise ValueError("skill.obj: fixtures cannot be moved")
    is_place = names == PICK_PLACE
    bad_support = (support < 0) | (support >= k) | (support == obj)
    safe_support = np.clip(support, 0, k - 1)
    bad_support |= ~np.take_along_axis(mask, safe_support[..., None], axis=-1)[..., 0]
    if np.any(is_place & bad_support):
        raise ValueError("skill.support: pick_place needs a valid slot other than skill.obj")
    params = np.asarray(skill.params)
    if params.shape[-1:] != (2,) or not np.all(np.isfinite(params)):
        raise ValueError(f"skill.params: expected finite [..., 2] (dx, dy), got {params.shape}")


class Transition(NamedTuple):
    """One dataset row (DESIGN section 3); batched with a leading axis [N] in datasets.

    Attributes:
      points_t: [K, P, 3] float32 per-object observed points before the skill.
      mask: [K] bool valid slots.
      kind: [K] int32 object kinds.
      half_extents: [K, 3] float32 box half sizes.
      skill: [] int32 skill index; obj, support: [] int32 discrete args (support -1 for push).
      params: [2] float32 continuous args (dx, dy).
      relations_t: [K, K, 9] bool true relations before the skill.
      relations_t1: [K, K, 9] bool true relations after the skill.
      pos_t, pos_t1: [K, 3] float32 true box centres before and after.
      yaw_t, yaw_t1: [K] float32 true yaws before and after.
    """

    points_t: np.ndarray
    mask: np.ndarray
    kind: np.ndarray
    half_extents: np.ndarray
    skill: np.ndarray
    obj: np.ndarray
    support: np.ndarray
    params: np.ndarray
    relations_t: np.ndarray
    relations_t1: np.ndarray
    pos_t: np.ndarray
    pos_t1: np.ndarray
    yaw_t: np.ndarray
    yaw_t1: np.ndarray


Rows = TypeVar("Rows", bound=tuple)


def stack_rows(rows: list[Rows]) -> Rows:
    """Stack unbatched NamedTuples of arrays (Scene, Skill, Transition...) into one batch.

    Args:
      rows: one or more NamedTuples of the same type whose fields have equal shapes row to row.

    Returns:
      A NamedTuple of that type whose every field is a new NumPy array with a leading [B] axis
      (B = len(rows)); dtypes are kept.
    """
    if not rows:
        raise ValueError("rows: need at least one row to stack")
    return type(rows[0])(*(np.stack(fields) for fields in zip(*rows, strict=True)))


def take_row(batch: Rows, index) -> Rows:
    """Index the leading axis of every field of a batched NamedTuple of arrays.

    Args:
      batch: NamedTuple (NumPy or JAX arrays) with a leading batch axis on every field.
      index: an int gives one unbatched row; a slice, an int array or a bool mask gives a
        sub-batch.

    Returns:
      A NamedTuple of NumPy copies (never views: changing it leaves `batch` unchanged).
    """
    return type(batch)(*(np.asarray(field)[index].copy() for field in batch))


def transition_scene(transition: Transition, after: bool = False) -> Scene:
    """The true Scene before (or, with after=True, after) the skill of a Transition.

    Works on one row or on a batch (the Scene is then batched alike); the arrays are shared.
    """
    return Scene(kind=transition.kind, half_extents=transition.half_extents,
                 pos=transition.pos_t1 if after else transition.pos_t,
                 yaw=transition.yaw_t1 if after else transition.yaw_t, mask=transition.mask)


def transition_skill(transition: Transition) -> Skill:
    """The Skill a Transition executed (one row or a batch; the arrays are shared)."""
    return Skill(skill=transition.skill, obj=transition.obj, support=transition.support,
                 params=transition.params)


def validate_transitions(data: Transition, name: str = "data") -> tuple[int, int, int]:
    """Checks a batched Transition of arrays; returns (rows N, objects K, points P).

    Raises:
      ValueError: naming the field whose type or shape is wrong.
    """
    if not isinstance(data, Transition):
        raise ValueError(f"{name}: expected an f2p.scene.Transition, got {type(data).__name__}")
    points = np.shape(data.points_t)
    if len(points) != 4 or points[-1] != 3:
        raise ValueError(f"{name}.points_t: shape {points}, expected [N, K, P, 3]")
    rows, objects, _, _ = points
    expected = {
        "mask": (rows, objects), "kind": (rows, objects), "half_extents": (rows, objects, 3),
        "skill": (rows,), "obj": (rows,), "support": (rows,), "params": (rows, 2),
        "relations_t": (rows, objects, objects, NUM_RELATIONS),
        "relations_t1": (rows, objects, objects, NUM_RELATIONS),
        "pos_t": (rows, objects, 3), "pos_t1": (rows, objects, 3),
        "yaw_t": (rows, objects), "yaw_t1": (rows, objects),
    }
    for field, shape in expected.items():
        if np.shape(getattr(data, field)) != shape:
            raise ValueError(f"{name}.{field}: shape {np.shape(getattr(data, field))}, "
                             f"expected {shape}")
    if rows == 0:
        raise ValueError(f"{name}: no rows")
    return rows, objects, points[2]
