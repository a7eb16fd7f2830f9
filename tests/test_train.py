"""Tests of training: losses, metrics, jitted steps, fit/resume, checkpoints and finetune."""

import os
import shutil

import jax
import numpy as np
import pytest
from synthetic import box_points

from f2p.io import checkpoint
from f2p.models import get_config
from f2p.scene import CONTAINER, FIXTURE, ITEM, PICK_PLACE, PUSH, Transition
from f2p.train import (
    batch_indices,
    create_train_state,
    eval_step,
    evaluate,
    finetune,
    finetune_batches,
    fit,
    relation_f1,
    train_step,
    true_next_points,
)

K, P = 5, 32


def synthetic_transitions(seed, rows, num_objects=K, num_points=P):
    """Random boxes on a table (slot 0), a random skill on a random item, random relations."""
    rng = np.random.default_rng(seed)
    columns = {name: [] for name in Transition._fields}
    for _ in range(rows):
        num_valid = rng.integers(3, num_objects + 1)
        kind = np.zeros(num_objects, np.int32)
        kind[0] = FIXTURE
        kind[1:num_valid] = rng.choice([ITEM, CONTAINER], num_valid - 1)
        half = rng.uniform(0.02, 0.06, (num_objects, 3)).astype(np.float32)
        half[0] = (0.4, 0.5, 0.02)
        pos = np.stack([rng.uniform(0.3, 0.8, num_objects), rng.uniform(-0.3, 0.3, num_objects),
                        rng.uniform(0.02, 0.15, num_objects)], axis=1).astype(np.float32)
        yaw = rng.uniform(-np.pi, np.pi, num_objects).astype(np.float32)
        mask = np.arange(num_objects) < num_valid
        skill = rng.choice([PICK_PLACE, PUSH])
        obj = rng.integers(1, num_valid)
        support = -1 if skill == PUSH else rng.choice([s for s in range(num_valid) if s != obj])
        params = rng.uniform(-0.1, 0.1, 2).astype(np.float32)
        pos_t1, yaw_t1 = pos.copy(), yaw.copy()
        pos_t1[obj, :2] += params
        yaw_t1[obj] += rng.uniform(-0.3, 0.3)
        relations = rng.random((2, num_objects, num_objects, 9)) < 0.3
        row = dict(
            points_t=np.stack([box_points(rng, half[i], pos[i], yaw[i], num_points)
                               for i in range(num_objects)]),
            mask=mask, kind=kind, half_extents=half, skill=np.int32(skill), obj=np.int32(obj),
            support=np.int32(support), params=params, relations_t=relations[0],
            relations_t1=relations[1], pos_t=pos, pos_t1=pos_t1, yaw_t=yaw, yaw_t1=yaw_t1)
        for name, value in row.items():
            columns[name].append(value)
    return Transition(**{name: np.stack(values) for name, values in columns.items()})


def small_config():
    config = get_config("tiny")
    config.train.num_steps = 20
    config.train.learning_rate = 3e-3
    config.train.checkpoint_every = 10
    config.train.eval_every = 10
    config.train.log_every = 5
    return config


@pytest.fixture(scope="module")
def data():
    return synthetic_transitions(0, 12), synthetic_transitions(1, 6)


def test_true_next_points_follow_the_pose_change():
    rng = np.random.default_rng(3)
    half = np.array([0.05, 0.02, 0.03], np.float32)
    points = box_points(rng, half, np.array([0.5, 0.1, 0.03]), 0.3, 64)
    batch = synthetic_transitions(2, 1)._replace(
        points_t=np.broadcast_to(points, (1, K, 64, 3)),
        pos_t=np.broadcast_to(np.array([0.5, 0.1, 0.03], np.float32), (1, K, 3)),
        yaw_t=np.full((1, K), 0.3, np.float32),
        pos_t1=np.broadcast_to(np.array([0.2, -0.1, 0.13], np.float32), (1, K, 3)),
        yaw_t1=np.full((1, K), 0.3 + np.pi / 2, np.float32))
    moved = np.asarray(true_next_points(batch))[0, 0]
    # Back in the box frame at t+1 (yaw 0.3 + 90 deg), every point lies on the same box surface.
    cos, sin = np.cos(-(0.3 + np.pi / 2)), np.sin(-(0.3 + np.pi / 2))
    local = moved - np.array([0.2, -0.1, 0.13])
    local = np.stack([cos * local[:, 0] - sin * local[:, 1],
                      sin * local[:, 0] + cos * local[:, 1], local[:, 2]], axis=-1)
    assert np.all(np.abs(local) <= half + 1e-5)
    assert np.allclose(np.max(np.abs(local) / half, axis=1), 1.0, atol=1e-4)


def test_relation_f1_counts_by_hand():
    labels = np.zeros((1, 3, 3, 9), bool)
    logits = np.full((1, 3, 3, 9), -5.0, np.float32)
    labels[0, 0, 1, 0] = labels[0, 1, 2, 0] = True  # two "left" facts
    logits[0, 0, 1, 0] = 5.0  # one found
    logits[0, 2, 1, 0] = 5.0  # one false alarm
    logits[0, 0, 0, 0] = 5.0  # the diagonal is excluded
    logits[0, 0, 2, 1] = labels[0, 0, 2, 1] = True  # "right": padded slot 2 is excluded
    metrics = relation_f1(logits, labels, np.array([[True, True, True]]))
    assert metrics["precision/left"] == pytest.approx(0.5)
    assert metrics["recall/left"] == pytest.approx(0.5)
    assert metrics["f1/left"] == pytest.approx(0.5)
    padded = relation_f1(logits, labels, np.array([[True, True, False]]))
    assert padded["f1/left"] == pytest.approx(1.0)  # only (0, 1) remains, and it is found
    assert padded["f1/right"] == pytest.approx(1.0)  # nothing present, nothing predicted


def test_batch_indices_are_deterministic_epochs():
    first_epoch = np.concatenate([batch_indices(12, 4, 0, step) for step in range(3)])
    assert sorted(first_epoch) == list(range(12))
    np.testing.assert_array_equal(batch_indices(12, 4, 0, 4), batch_indices(12, 4, 0, 4))
    assert batch_indices(3, 4, 0, 0).shape == (4,)  # fewer rows than a batch: with replacement


def test_training_steps_lower_the_loss_on_a_fixed_batch(data):
    config = small_config()
    batch = jax.tree.map(lambda x: x[:4], data[0])
    state = create_train_state(config, K, P)
    weight = np.ones(4, np.float32)
    before = float(eval_step(state, batch, weight)["loss"]) / 4
    for _ in range(15):
        state, metrics = train_step(state, batch)
    after = float(eval_step(state, batch, weight)["loss"]) / 4
    assert np.isfinite(float(metrics["grad_norm"]))
    assert int(state.step) == 15
    assert after < 0.8 * before, (before, after)


def test_fit_checkpoints_and_resumes_exactly(data, tmp_path):
    config = small_config()
    logged = []
    result = fit(config, data[0], data[1], str(tmp_path), lambda step, m: logged.append((step, m)))
    assert int(result.state.step) == 20
    assert {"t1/f1/macro", "t/f1/left", "loss"} <= set(result.eval_metrics)
    assert [step for step, m in logged if "train/loss" in m] == [5, 10, 15, 20]
    assert all(np.isfinite(m["train/loss"]) for _, m in logged if "train/loss" in m)
    assert "train/steps_per_second" in logged[0][1]
    checkpoints = os.path.join(tmp_path, "checkpoints")
    assert checkpoint.latest_step(checkpoints) == 20

    # Drop the last checkpoint: fit resumes at 10 and reproduces the same parameters.
    shutil.rmtree(os.path.join(checkpoints, "20"))
    assert checkpoint.latest_step(checkpoints) == 10
    resumed_logs = []
    resumed = fit(config, data[0], None, str(tmp_path),
                  lambda step, m: resumed_logs.append(step))
    assert resumed_logs == [15, 20]
    for a, b in zip(jax.tree.leaves(result.state.params), jax.tree.leaves(resumed.state.params),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    expected = {"step": resumed.state.step, "params": resumed.state.params,
                "opt_state": resumed.state.opt_state}
    restored = checkpoint.restore_checkpoint(checkpoints, expected, config)
    assert int(restored["step"]) == 20
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    assert evaluate(resumed.state, data[1])["loss"] > 0


def test_missing_or_incompatible_checkpoint_raises(tmp_path):
    config = small_config()
    tree = {"step": np.int32(3), "w": np.arange(4.0, dtype=np.float32)}
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        checkpoint.restore_checkpoint(str(tmp_path / "nowhere"), tree, config)
    directory = str(tmp_path / "ckpt")
    checkpoint.save_checkpoint(directory, 3, tree, config)
    restored = checkpoint.restore_checkpoint(directory, tree, config)
    np.testing.assert_array_equal(restored["w"], tree["w"])
    assert checkpoint.load_config(directory).model.latent_dim == config.model.latent_dim
    with pytest.raises(FileNotFoundError, match="step 7"):
        checkpoint.restore_checkpoint(directory, tree, config, step=7)
    other = small_config()
    other.model.latent_dim = 48
    with pytest.raises(ValueError, match="model.latent_dim: 32 -> 48"):
        checkpoint.restore_checkpoint(directory, tree, other)
    with pytest.raises(ValueError, match="incompatible"):
        checkpoint.save_checkpoint(directory, 4, tree, other)
    changed_train = small_config()
    changed_train.train.num_steps = 99  # non-model sections may change (e.g. train longer)
    checkpoint.restore_checkpoint(directory, tree, changed_train)


def test_finetune_with_replay_runs_and_updates(data):
    config = small_config()
    state = create_train_state(config, K, P)
    new_data = synthetic_transitions(5, 3)
    logged = []
    tuned = finetune(state, new_data, replay_data=data[0], replay_fraction=0.5, steps=3,
                     callback=lambda step, m: logged.append((step, m)))
    assert int(tuned.step) == 3
    assert [step for step, _ in logged] == [1, 2, 3]
    assert all(np.isfinite(m["finetune/loss"]) for _, m in logged)
    changed = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(state.params),
                                                      jax.tree.leaves(tuned.params), strict=True)]
    assert any(changed)
    with pytest.raises(ValueError, match="replay_fraction"):
        finetune(state, new_data, replay_data=data[0], replay_fraction=1.0, steps=3)
    with pytest.raises(ValueError, match="replay_data.points_t"):
        finetune(state, new_data, replay_data=data[0]._replace(points_t=np.zeros((2, 3))))


def test_finetune_batches_mix_replay_rows_in_the_configured_share(data):
    new_data, replay_data = synthetic_transitions(5, 3), data[0]
    batch_size, num_replay = 8, 2
    batches = finetune_batches(new_data, replay_data, num_replay, batch_size, seed=1,
                               steps=np.arange(4))
    assert batches.points_t.shape == (4, batch_size, K, P, 3)
    assert batches.relations_t.shape == (4, batch_size, K, K, 9)
    again = finetune_batches(new_data, replay_data, num_replay, batch_size, seed=1,
                             steps=np.arange(2, 4))
    np.testing.assert_array_equal(again.points_t, batches.points_t[2:])  # pure in (seed, step)

    def source(row_points):  # which dataset a batch row came from
        in_new = any(np.array_equal(row_points, p) for p in new_data.points_t)
        in_replay = any(np.array_equal(row_points, p) for p in replay_data.points_t)
        assert in_new != in_replay
        return "replay" if in_replay else "new"

    for batch in batches.points_t:
        assert [source(points) for points in batch] == ["new"] * 6 + ["replay"] * 2
    replayed = {tuple(np.flatnonzero([np.array_equal(p, q) for q in replay_data.points_t]))
                for batch in batches.points_t for p in batch[batch_size - num_replay:]}
    assert len(replayed) > 1  # replay rows are drawn across the replay set, not one row
    plain = finetune_batches(new_data, None, 0, batch_size, seed=1, steps=np.arange(2))
    assert all(source(points) == "new" for batch in plain.points_t for points in batch)


def test_finetune_equals_train_step_on_its_batches(data):
    """The scanned chunks run exactly the steps train_step would run on the same batches."""
    config = small_config()
    config.finetune.log_every = 2  # two chunks of 2 steps
    state = create_train_state(config, K, P)
    new_data, replay_data = synthetic_transitions(5, 3), data[0]
    logged = []
    tuned = finetune(state, new_data, replay_data=replay_data, replay_fraction=0.25, steps=4,
                     callback=lambda step, m: logged.append((step, m)))
    settings = config.finetune
    num_replay = int(round(0.25 * settings.batch_size))
    batches = finetune_batches(new_data, replay_data, num_replay, settings.batch_size,
                               settings.seed, np.arange(4))
    stepped = state.replace(optimizer=tuned.optimizer,
                            opt_state=tuned.optimizer.build().init(state.params))
    for step in range(4):
        stepped, _ = train_step(stepped, jax.tree.map(lambda x, s=step: x[s], batches))
    for a, b in zip(jax.tree.leaves(stepped.params), jax.tree.leaves(tuned.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert [step for step, _ in logged] == [2, 4]
    assert logged[0][1]["finetune/compile_seconds"] >= 0.0
    assert logged[1][1]["finetune/compile_seconds"] == logged[0][1]["finetune/compile_seconds"]

