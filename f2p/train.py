"""Training of the skill-effect model: jitted steps, resumable fit() with checkpoints, finetune."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import struct

from f2p.compile_cache import CompileCache
from f2p.io import checkpoint
from f2p.models.losses import (
    LossWeights,
    f1_from_counts,
    per_example_losses,
    relation_counts,
    relation_f1,
    true_next_points,
)
from f2p.models.model import SkillEffectModel
from f2p.scene import Transition, take_row, validate_transitions

__all__ = [
    "FitResult", "LossWeights", "OptimizerSpec", "TrainState", "batch_indices",
    "create_train_state", "evaluate", "eval_step", "finetune", "finetune_batches", "fit",
    "make_optimizer", "relation_f1", "train_step", "train_steps",
    "true_next_points", "validate_transitions",
]

MetricsCallback = Callable[[int, dict[str, float]], None]
_FINETUNE_COMPILED = CompileCache()
"""finetune's train_steps by state structure (model, optimiser spec, config) and chunk shapes."""
_LOGIT_TERMS = ("relation_logits_t", "relation_logits_t1")


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """Hyperparameters of make_optimizer; hashable by value, so equal specs share compilations."""

    learning_rate: float
    warmup_steps: int
    total_steps: int
    weight_decay: float
    grad_clip_norm: float
    end_learning_rate_factor: float = 0.05

    def build(self) -> optax.GradientTransformation:
        """Returns the optax transformation."""
        return make_optimizer(self.learning_rate, self.warmup_steps, self.total_steps,
                              self.weight_decay, self.grad_clip_norm,
                              self.end_learning_rate_factor)


class TrainState(struct.PyTreeNode):
    """Parameters and optimiser state; model, optimiser spec and config ride along as static data.

    Attributes:
      step: [] int32 global step (keeps counting through finetune).
      params: model parameters.
      opt_state: optax state of `optimizer.build()`.
      model: the SkillEffectModel.
      optimizer: the OptimizerSpec.
      config: the full frozen config (model, loss, train, finetune sections).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    model: SkillEffectModel = struct.field(pytree_node=False)
    optimizer: OptimizerSpec = struct.field(pytree_node=False)
    config: ml_collections.FrozenConfigDict = struct.field(pytree_node=False)

    @property
    def tx(self) -> optax.GradientTransformation:
        """The optax transformation of `optimizer`."""
        return self.optimizer.build()


class FitResult(NamedTuple):
    """What fit() returns: the final state and the last logged train and eval metrics."""

    state: TrainState
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float] | None


def make_optimizer(learning_rate: float, warmup_steps: int, total_steps: int,
                   weight_decay: float, grad_clip_norm: float,
                   end_learning_rate_factor: float = 0.05) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW on a warmup-cosine schedule (no decay on biases/norms)."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1),
        end_value=learning_rate * end_learning_rate_factor)
    decay_mask = lambda params: jax.tree.map(lambda x: x.ndim > 1, params)  # noqa: E731
    return optax.chain(
        optax.clip_by_global_norm(grad_clip_norm),
        optax.adamw(schedule, weight_decay=weight_decay, mask=decay_mask),
    )


def create_train_state(config: ml_collections.ConfigDict, num_objects: int, num_points: int,
                       seed: int | None = None) -> TrainState:
    """Initialises a model and optimiser from a full config for K objects of P points."""
    frozen = ml_collections.FrozenConfigDict(config)
    model = SkillEffectModel(frozen.model)
    train = frozen.train
    seed = train.seed if seed is None else seed
    optimizer = OptimizerSpec(train.learning_rate, train.warmup_steps, train.num_steps,
                              train.weight_decay, train.grad_clip_norm,
                              train.end_learning_rate_factor)
    params, opt_state = _init_params_and_optimizer(
        model, optimizer, jax.random.PRNGKey(seed), num_objects, num_points)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
                      model=model, optimizer=optimizer, config=frozen)


@functools.partial(jax.jit, static_argnums=(0, 1, 3, 4))
def _init_params_and_optimizer(model, optimizer, key, num_objects, num_points):
    """One compiled function for parameters and optimiser state (eager init is slow)."""
    params = model.init(key, num_objects, num_points)
    return params, optimizer.build().init(params)


def _weights(state: TrainState) -> LossWeights:
    return LossWeights.from_config(state.config.loss)


def _train_step(state: TrainState, batch: Transition
                ) -> tuple[TrainState, dict[str, jax.Array]]:
    def loss(params):
        total, terms = per_example_losses(state.model, params, batch, _weights(state))
        return jnp.mean(total), terms

    (loss_value, terms), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {name: jnp.mean(value) for name, value in terms.items() if name not in _LOGIT_TERMS}
    metrics["loss"] = loss_value
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


@jax.jit
def train_step(state: TrainState, batch: Transition
               ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step on a batch; returns the new state and batch-mean metrics."""
    return _train_step(state, batch)


@jax.jit
def train_steps(state: TrainState, batches: Transition
                ) -> tuple[TrainState, dict[str, jax.Array]]:
    """Steps through batches stacked on a leading [S] axis in one lax.scan.

    Returns the state after S steps and every step's metrics, each [S].
    """
    return jax.lax.scan(_train_step, state, batches)


@jax.jit
def eval_step(state: TrainState, batch: Transition, example_weight: jax.Array
              ) -> dict[str, jax.Array]:
    """Weighted sums of every loss term plus relation counts [3, R] at t and t+1."""
    total, terms = per_example_losses(state.model, state.params, batch, _weights(state))
    sums = {name: jnp.sum(value * example_weight) for name, value in terms.items()
            if name not in _LOGIT_TERMS}
    sums["loss"] = jnp.sum(total * example_weight)
    sums["weight"] = jnp.sum(example_weight)
    mask = batch.mask.astype(bool)
    sums["counts_t"] = relation_counts(terms["relation_logits_t"], batch.relations_t, mask,
                                       example_weight)
    sums["counts_t1"] = relation_counts(terms["relation_logits_t1"], batch.relations_t1, mask,
                                        example_weight)
    return sums


def batch_indices(num_rows: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Rows of batch `step`: epoch-wise shuffles, a pure function of (seed, step) for resuming."""
    if num_rows < batch_size:  # too few rows for an epoch: sample with replacement
        return np.random.default_rng([seed, step]).choice(num_rows, batch_size, replace=True)
    steps_per_epoch = num_rows // batch_size
    epoch, offset = divmod(step, steps_per_epoch)
    permutation = np.random.default_rng([seed, epoch]).permutation(num_rows)
    return permutation[offset * batch_size:(offset + 1) * batch_size]


def _stacked_indices(num_rows: int, batch_size: int, seed: int, steps) -> np.ndarray:
    """[S, batch_size] rows of the batches of `steps` (batch_indices, stacked)."""
    return np.stack([batch_indices(num_rows, batch_size, seed, int(step)) for step in steps])


def finetune_batches(new_data: Transition, replay_data: Transition | None, num_replay: int,
                     batch_size: int, seed: int, steps) -> Transition:
    """The fine-tune's batches of `steps`, stacked: a Transition of [S, batch_size] arrays.

    Each batch holds batch_size - num_replay rows of new_data (epoch-wise shuffles of seed)
    followed by num_replay rows of replay_data (of seed + 1); a pure function of its inputs.
    """
    num_new = batch_size - num_replay
    batches = take_row(new_data, _stacked_indices(len(new_data.points_t), num_new, seed, steps))
    if not num_replay:
        return batches
    replay = take_row(replay_data, _stacked_indices(len(replay_data.points_t), num_replay,
                                                    seed + 1, steps))
    return Transition(*(np.concatenate(pair, axis=1) for pair in zip(batches, replay,
                                                                     strict=True)))


def evaluate(state: TrainState, data: Transition, batch_size: int | None = None
             ) -> dict[str, float]:
    """Mean loss terms and relation precision/recall/F1 (at t and t+1) over a whole dataset."""
    rows, _, _ = validate_transitions(data, "eval_data")
    batch_size = batch_size or state.config.train.eval_batch_size
    totals = None
    for start in range(0, rows, batch_size):
        # The last batch is padded with repeated rows at weight 0: one compiled shape.
        indices = np.arange(start, start + batch_size)
        weight = (indices < rows).astype(np.float32)
        sums = jax.device_get(eval_step(state, take_row(data, np.minimum(indices, rows - 1)),
                                        weight))
        totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
    weight = float(totals.pop("weight"))
    counts_t, counts_t1 = totals.pop("counts_t"), totals.pop("counts_t1")
    metrics = {name: float(value) / weight for name, value in totals.items()}
    metrics.update({f"t/{k}": v for k, v in f1_from_counts(counts_t).items()})
    metrics.update({f"t1/{k}": v for k, v in f1_from_counts(counts_t1).items()})
    return metrics


def _log_line(prefix: str, step: int, total: int, metrics: dict[str, float], rate: float):
    eta = (total - step) / max(rate, 1e-9)
    logging.info("%s step %d/%d loss %.4f rel_t1 %.4f disp %.4f (%.2f steps/s, ETA %.0f s)",
                 prefix, step, total, metrics["loss"], metrics["relation_t1"],
                 metrics["displacement"], rate, eta)


def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
    """Mean of each metric over a list of steps' (scalars) or chunks' ([S] arrays) metrics."""
    stacked = jax.device_get(history)
    return {name: float(np.mean(np.concatenate([np.ravel(m[name]) for m in stacked])))
            for name in stacked[0]}


def _checkpoint_tree(state: TrainState) -> dict[str, Any]:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def fit(config: ml_collections.ConfigDict, train_data: Transition,
        eval_data: Transition | None = None, workdir: str | None = None,
        callback: MetricsCallback | None = None) -> FitResult:
    """Trains from scratch, or resumes from the newest checkpoint in `workdir`/checkpoints.

    Args:
      config: full config (model, loss, train sections; see f2p.models.config).
      train_data: batched Transition of NumPy arrays with a leading [N] axis.
      eval_data: optional held-out Transition batch, evaluated every train.eval_every steps.
      workdir: where checkpoints go (every train.checkpoint_every steps and at the end);
        None trains without checkpoints.
      callback: called as callback(step, metrics) with "train/..." or "eval/..." keys.

    Returns:
      A FitResult with the final state and the last train and eval metrics.
    """
    _, num_objects, num_points = validate_transitions(train_data, "train_data")
    if eval_data is not None:
        validate_transitions(eval_data, "eval_data")
    train = config.train
    state = create_train_state(config, num_objects, num_points)
    checkpoint_dir = None if workdir is None else os.path.join(workdir, "checkpoints")
    if checkpoint_dir is not None and checkpoint.latest_step(checkpoint_dir) is not None:
        restored = checkpoint.restore_checkpoint(checkpoint_dir, _checkpoint_tree(state), config)
        state = state.replace(**restored)
        logging.info("resumed from %s at step %d", checkpoint_dir, int(state.step))

    rows = train_data.points_t.shape[0]
    start = int(state.step)
    history, train_metrics, eval_metrics = [], {}, None
    interval_start, interval_step = time.perf_counter(), start
    for step in range(start, train.num_steps):
        batch = take_row(train_data, batch_indices(rows, train.batch_size, train.seed, step))
        state, metrics = train_step(state, batch)
        history.append(metrics)
        done = step + 1
        if done % train.log_every == 0 or done == train.num_steps:
            train_metrics = _mean_metrics(history)
            history = []
            rate = (done - interval_step) / (time.perf_counter() - interval_start)
            interval_start, interval_step = time.perf_counter(), done
            _log_line("train", done, train.num_steps, train_metrics, rate)
            if callback is not None:
                callback(done, {f"train/{k}": v for k, v in train_metrics.items()}
                         | {"train/steps_per_second": rate})
        if eval_data is not None and (done % train.eval_every == 0 or done == train.num_steps):
            eval_metrics = evaluate(state, eval_data)
            logging.info("eval step %d loss %.4f f1_t %.3f f1_t1 %.3f", done,
                         eval_metrics["loss"], eval_metrics["t/f1/macro"],
                         eval_metrics["t1/f1/macro"])
            if callback is not None:
                callback(done, {f"eval/{k}": v for k, v in eval_metrics.items()})
        if checkpoint_dir is not None and (done % train.checkpoint_every == 0
                                           or done == train.num_steps):
            checkpoint.save_checkpoint(checkpoint_dir, done, _checkpoint_tree(state), config,
                                       keep=train.keep_checkpoints)
    if eval_data is not None and eval_metrics is None:  # resumed after the last step
        eval_metrics = evaluate(state, eval_data)
    return FitResult(state, train_metrics, eval_metrics)


def finetune(state: TrainState, new_data: Transition, replay_data: Transition | None = None,
             replay_fraction: float | None = None, steps: int | None = None,
             callback: MetricsCallback | None = None) -> TrainState:
    """Fine-tunes on new data with the same train step, mixing in replayed old data.

    A fresh optimiser (config.finetune: learning rate, warmup, cosine over `steps`) starts from
    the current parameters; every batch holds round(replay_fraction * batch_size) replay rows.
    The steps run as chunks of train_steps (one lax.scan each, compiled once per model,
    optimiser spec and batch shape, the compile timed apart); the batches are those of
    train_step called step by step.

    Args:
      state: the trained state.
      new_data: batched Transition of the targeted (e.g. Fail2Progress) data.
      replay_data: optional batched Transition of the original training data.
      replay_fraction: share of each batch from replay_data in [0, 1); config default if None.
      steps: optimiser steps; config default if None.
      callback: called every config.finetune.log_every steps as callback(step, metrics) with
        the mean "finetune/..." metrics since the last call and "finetune/compile_seconds",
        the compile time so far (0 when the compilation was reused).

    Returns:
      The fine-tuned state (its step keeps counting from `state.step`).
    """
    settings = state.config.finetune
    steps = settings.steps if steps is None else int(steps)
    fraction = settings.replay_fraction if replay_fraction is None else float(replay_fraction)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"replay_fraction: {fraction}, allowed [0, 1)")
    if steps <= 0:
        raise ValueError(f"steps: {steps}, must be > 0")
    _, num_objects, num_points = validate_transitions(new_data, "new_data")
    num_replay = 0
    if replay_data is not None:
        _, replay_objects, replay_points = validate_transitions(
            replay_data, "replay_data")
        if (replay_objects, replay_points) != (num_objects, num_points):
            raise ValueError(f"replay_data: K, P = {replay_objects}, {replay_points} differ "
                             f"from new_data's {num_objects}, {num_points}")
        num_replay = int(round(fraction * settings.batch_size))
    train = state.config.train
    optimizer = OptimizerSpec(settings.learning_rate, settings.warmup_steps, steps,
                              train.weight_decay, train.grad_clip_norm,
                              train.end_learning_rate_factor)
    state = state.replace(optimizer=optimizer,
                          opt_state=jax.jit(optimizer.build().init)(state.params))
    # Chunks of equal length divide both the steps and the log interval: one compilation.
    chunk = math.gcd(steps, settings.log_every)
    history, interval_start, interval_compile, compile_seconds = [], time.perf_counter(), 0.0, 0.0
    for start in range(0, steps, chunk):
        batches = finetune_batches(new_data, replay_data, num_replay, settings.batch_size,
                                   settings.seed, np.arange(start, start + chunk))
        (state, metrics), timings = _FINETUNE_COMPILED.run(("finetune",), train_steps, (),
                                                           (state, batches))
        compile_seconds += timings["compile_seconds"]
        interval_compile += timings["compile_seconds"]
        history.append(metrics)
        done = start + chunk
        if done % settings.log_every == 0 or done == steps:
            mean = _mean_metrics(history)
            seconds = time.perf_counter() - interval_start - interval_compile
            rate = sum(np.size(m["loss"]) for m in history) / max(seconds, 1e-9)
            history, interval_start, interval_compile = [], time.perf_counter(), 0.0
            _log_line("finetune", done, steps, mean, rate)
            if callback is not None:
                callback(int(state.step), {f"finetune/{k}": v for k, v in mean.items()}
                         | {"finetune/compile_seconds": compile_seconds})
    return state
