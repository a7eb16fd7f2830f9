import jax.numpy as jnp
import numpy as np
import pytest
from test_dataset import random_transitions

from f2p.scene import (
    CONTAINER,
    ITEM,
    PICK_PLACE,
    PUSH,
    Skill,
    make_scene,
    stack_rows,
    take_row,
    transition_scene,
    transition_skill,
    validate_scene,
)


def _scenes():
    first = make_scene([ITEM, CONTAINER], [[0.02] * 3, [0.05, 0.05, 0.04]],
                       [[0.1, 0.0, 0.02], [0.3, 0.1, 0.04]], [0.0, 0.5], k_max=4)
    second = make_scene([ITEM], [[0.03, 0.02, 0.01]], [[-0.2, 0.4, 0.01]], [1.2], k_max=4)
    return first, second


def test_stack_rows_then_take_row_round_trips_every_field_and_dtype():
    first, second = _scenes()
    batch = stack_rows([first, second])
    validate_scene(batch)
    assert batch.pos.shape == (2, 4, 3) and batch.mask.shape == (2, 4)
    for index, row in enumerate((first, second)):
        back = take_row(batch, index)
        assert type(back) is type(row)
        for field, a, b in zip(row._fields, row, back, strict=True):
            assert np.asarray(b).dtype == np.asarray(a).dtype, field
            np.testing.assert_array_equal(a, b, err_msg=field)


def test_stack_rows_keeps_scalar_fields_and_rejects_an_empty_list():
    skills = [
        Skill(np.int32(PICK_PLACE), np.int32(1), np.int32(0), np.array([0.1, 0.2], np.float32)),
        Skill(np.int32(PUSH), np.int32(2), np.int32(-1), np.array([0.0, 0.1], np.float32))]
    batch = stack_rows(skills)
    assert batch.skill.shape == (2,) and batch.skill.dtype == np.int32
    np.testing.assert_array_equal(batch.support, [0, -1])
    assert batch.params.shape == (2, 2) and batch.params.dtype == np.float32
    with pytest.raises(ValueError, match="rows"):
        stack_rows([])


def test_take_row_copies_and_selects_sub_batches():
    first, second = _scenes()
    batch = stack_rows([first, second, first])
    row = take_row(batch, 0)
    row.pos[0, 0] = 99.0  # a copy: the batch keeps its value
    assert batch.pos[0, 0, 0] == pytest.approx(0.1)
    sub = take_row(batch, np.array([2, 1]))
    np.testing.assert_array_equal(sub.yaw, batch.yaw[[2, 1]])
    masked = take_row(batch, np.array([False, True, False]))
    np.testing.assert_array_equal(masked.pos, batch.pos[1:2])
    # JAX batches come back as NumPy rows.
    from_jax = take_row(type(batch)(*(jnp.asarray(field) for field in batch)), 1)
    assert isinstance(from_jax.pos, np.ndarray)
    np.testing.assert_array_equal(from_jax.pos, second.pos)


def test_transition_scene_and_skill_read_the_right_fields():
    data = random_transitions(3)
    row = take_row(data, 1)
    before, after = transition_scene(row), transition_scene(row, after=True)
    np.testing.assert_array_equal(before.pos, row.pos_t)
    np.testing.assert_array_equal(before.yaw, row.yaw_t)
    np.testing.assert_array_equal(after.pos, row.pos_t1)
    np.testing.assert_array_equal(after.yaw, row.yaw_t1)
    for scene in (before, after):
        np.testing.assert_array_equal(scene.kind, row.kind)
        np.testing.assert_array_equal(scene.half_extents, row.half_extents)
        np.testing.assert_array_equal(scene.mask, row.mask)
    skill = transition_skill(row)
    assert (int(skill.skill), int(skill.obj), int(skill.support)) == (
        int(row.skill), int(row.obj), int(row.support))
    np.testing.assert_array_equal(skill.params, row.params)
    # On a batch, the Scene is batched alike.
    batched = transition_scene(data, after=True)
    np.testing.assert_array_equal(take_row(batched, 1).pos, row.pos_t1)
    np.testing.assert_array_equal(transition_scene(data).yaw, data.yaw_t)
