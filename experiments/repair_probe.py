"""What one repair teaches: fine-tunes on the same labels, read off held-out OOD transitions.

run(config, workdir) collects a task's failures (development seeds), labels one generator's
N x M pairs per failure, fine-tunes the base model on them once per arm (relation inputs on or
off, replay fraction, learning rate) and evaluates every fine-tuned model, and the base model,
on the labelled pairs themselves, on held-out transitions of the task's OOD split (those whose
container carried its contents, and the rest) and on the base replay data. The contents'
displacement ratio is the share of their true displacement that the model predicts for the
contents of a carried container: 1 when it has learnt that they ride along, 0 when it predicts
them left behind. The container ratio is the converse, on held-out rows that lift an item out of
a container: the share of the item's displacement predicted for the container (0 is right).
Every (failure, arm) is one JSON file under units/, so a stopped run resumes.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
from absl import logging

from f2p import generation, tasks, train
from f2p.io import dataset, failures, reporting
from f2p.io.config import parse_list
from f2p.models.losses import batch_skill
from f2p.repair import labelled_pairs
from f2p.scene import REL, Transition, take_row
from isaac_bridge import datagen
from isaac_bridge.loop import collect, finetune_state, make_setup, read_or_make

COLUMNS = ("task", "failure", "arm", "repair_displacement", "carried_relation_t1",
           "carried_displacement", "carried_inside_f1", "contents_ratio_median",
           "contents_ratio_mean", "other_loss", "container_ratio_median", "replay_loss")


class Arm(NamedTuple):
    """One fine-tune setting: relation inputs, replay fraction, learning rate, carry gate."""

    relation_features: bool
    replay_fraction: float
    learning_rate: float
    carry_gate: int = 0  # 0 off, 1 on, 2 on for held objects only (config.carry_held_only)

    @property
    def name(self) -> str:
        """The arm's unit-file and table name (without the carry gate, as before it existed)."""
        gate = {0: "", 1: ",carry_gate=1", 2: ",carry_gate=held"}[int(self.carry_gate)]
        return (f"relation_features={int(self.relation_features)},replay={self.replay_fraction},"
                f"lr={self.learning_rate}" + gate)


def parse_arms(spec: str) -> list[Arm]:
    """Arms from "rf:replay:lr[:carry],..." (rf 0 or 1, carry 0, 1 or 2 = held objects only).

    Raises:
      ValueError: naming config.arms, for an empty list or a malformed or out-of-range arm.
    """
    arms = []
    for item in [part.strip() for part in str(spec).split(",") if part.strip()]:
        fields = item.split(":")
        try:
            flag, fraction, rate = int(fields[0]), float(fields[1]), float(fields[2])
            carry = int(fields[3]) if len(fields) > 3 else 0
        except (ValueError, IndexError) as error:
            raise ValueError(f"config.arms: {item!r} is not relation_features:replay:lr[:carry] "
                             "(for example 1:0.5:0.001 or 1:0.5:0.001:1)") from error
        if (len(fields) not in (3, 4) or flag not in (0, 1) or carry not in (0, 1, 2)
                or not 0 <= fraction < 1 or rate <= 0):
            raise ValueError(f"config.arms: {item!r}: relation_features 0 or 1, replay in "
                             "[0, 1), learning rate > 0, carry gate 0, 1 or 2 (held only)")
        if carry and not flag:
            raise ValueError(f"config.arms: {item!r}: the carry gate (4th field 1 or 2) needs "
                             "relation_features 1")
        arms.append(Arm(bool(flag), fraction, rate, carry))
    if not arms:
        raise ValueError("config.arms: empty; give at least one relation_features:replay:lr")
    return arms


def _displacements(model, params, data: Transition) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) displacements [N, K, dims] of every object of every row."""
    half_extents = data.half_extents if model.config.use_half_extents else None
    predicted = np.asarray(model.apply(params, data.points_t, np.asarray(data.mask, bool),
                                       data.kind, batch_skill(data), half_extents).displacement)
    return predicted, np.asarray(data.pos_t1 - data.pos_t)[..., :predicted.shape[-1]]


def container_ratio(model, params, data: Transition) -> np.ndarray:
    """Per container of a moved object inside it: predicted container . true moved / |true|^2.

    The share of a lifted item's displacement that the model gives the container it is lifted
    out of: 0 is right (the container stays), 1 would carry it along with the item.
    """
    predicted, true = _displacements(model, params, data)
    ratios = []
    for row in range(len(true)):
        moved = int(data.obj[row])
        squared = float(np.dot(true[row, moved], true[row, moved]))
        if squared <= 1e-6:
            continue
        for holder in np.flatnonzero(np.asarray(data.relations_t)[row, moved, :, REL["inside"]]):
            ratios.append(float(np.dot(predicted[row, holder], true[row, moved])) / squared)
    return np.asarray(ratios)


def contents_ratio(model, params, data: Transition) -> np.ndarray:
    """Per content object of a moved container: predicted . true / |true|^2 displacement."""
    predicted, true = _displacements(model, params, data)
    ratios = []
    for row in range(len(true)):
        moved = int(data.obj[row])
        for content in np.flatnonzero(np.asarray(data.relations_t)[row, :, moved, REL["inside"]]):
            squared = float(np.dot(true[row, content], true[row, content]))
            if squared > 1e-6:
                ratios.append(float(np.dot(predicted[row, content], true[row, content])) / squared)
    return np.asarray(ratios)


def held_out(task, config, setup, workdir: str) -> dict[str, Transition | None]:
    """The OOD split's held-out transitions, split into carried-contents rows and the rest."""
    settings = ml_collections.ConfigDict({**config.probe.to_dict(),
                                          "num_points": setup.num_points})
    directory = os.path.join(workdir, "replay", "probe_" + task.name)
    datagen.generate(task, "ood", settings, directory, setup.simulator)
    data = dataset.load_dataset(directory)
    flags = [task.measure(take_row(data, row)) for row in range(len(data.points_t))]
    carried = np.array([bool(flag.get("contents_carried", False)) for flag in flags])
    loaded = np.array([bool(flag.get("loaded_container_moved", False)) for flag in flags])
    pick = lambda rows: take_row(data, rows) if rows.size else None  # noqa: E731
    return {"carried": pick(np.flatnonzero(carried)), "other": pick(np.flatnonzero(~loaded))}


def measure(state, labels: Transition | None, probe: dict, replay: Transition
            ) -> dict[str, Any]:
    """The COLUMNS of one model (state.params) on the labels (if any), held-out rows, replay."""
    row: dict[str, Any] = {}
    if labels is not None:
        row["repair_displacement"] = train.evaluate(state, labels)["displacement"]
    if probe["carried"] is not None:
        carried = train.evaluate(state, probe["carried"])
        ratios = contents_ratio(state.model, state.params, probe["carried"])
        row.update(carried_relation_t1=carried["relation_t1"],
                   carried_displacement=carried["displacement"],
                   carried_inside_f1=carried["t1/f1/inside"],
                   contents_ratio_median=float(np.median(ratios)) if ratios.size else None,
                   contents_ratio_mean=float(np.mean(ratios)) if ratios.size else None)
    if probe["other"] is not None:
        row["other_loss"] = train.evaluate(state, probe["other"])["loss"]
        lifted = container_ratio(state.model, state.params, probe["other"])
        row["container_ratio_median"] = float(np.median(lifted)) if lifted.size else None
    row["replay_loss"] = train.evaluate(state, replay)["loss"]
    return row


def arm_state(setup, arm: Arm):
    """The base model's TrainState for one arm (extended when the arm adds relation inputs)."""
    return finetune_state(setup.model, setup.params, setup.checkpoint_config, setup.num_points,
                          arm.relation_features, arm.learning_rate, arm.carry_gate >= 1,
                          arm.carry_gate == 2)[-1]


def _finetuned(setup, arm: Arm, labels: Transition, probe: dict, replay: Transition
               ) -> dict[str, Any]:
    """measure() of the base model fine-tuned on `labels` under one arm."""
    tuned = train.finetune(arm_state(setup, arm), labels, replay, arm.replay_fraction)
    return measure(tuned, labels, probe, replay)


def _task_rows(name: str, arms: list[Arm], setup, config, workdir: str) -> list[dict]:
    """The base model's row and every (failure, arm) row of one task."""
    repairer = setup.repairers[name]
    probe = held_out(tasks.get_task(name), config, setup, workdir)
    base_state = arm_state(setup, Arm(False, 0.0, float(config.finetune.learning_rate)))
    rows = [{"task": name, "failure": "-", "arm": "base model", **read_or_make(
        os.path.join(workdir, "units", f"{name}--base.json"),
        functools.partial(measure, base_state, None, probe, repairer.replay))}]
    kept = [entry for entry in collect(name, setup, config, workdir) if entry["kept"]]
    for index, entry in enumerate(kept):
        paths = {arm: os.path.join(workdir, "units", f"{entry['name']}--{arm.name}.json")
                 for arm in arms}
        labels = None
        if not all(os.path.exists(path) for path in paths.values()):
            # The same labelled pairs for every arm: one fixed key per failure.
            failure = failures.load_failure(os.path.join(workdir, "failures",
                                                         entry["failure_file"]))
            labels = labelled_pairs(repairer, config.generator, failure, setup.params,
                                    jax.random.PRNGKey(index))[0]
        for arm, path in paths.items():
            rows.append({"task": name, "failure": entry["name"], "arm": arm.name,
                         **read_or_make(path, functools.partial(
                             _finetuned, setup, arm, labels, probe, repairer.replay))})
            logging.info("%s %s: contents ratio (median) %s", entry["name"], arm.name,
                         rows[-1].get("contents_ratio_median"))
    return rows


def run(config, workdir: str) -> dict[str, Any]:
    """Collects failures, runs every (failure, arm) unit, writes results.json and results.md."""
    names = parse_list(config.tasks, tasks.task_names(), "tasks")
    arms = parse_arms(config.arms)
    generation.check_generator(config.generator)
    for field in ("relation_features", "carry_gate", "carry_held_only"):
        if bool(config.get(field, False)):
            raise ValueError(f"config.{field}: leave it False; config.arms chooses it")
    os.makedirs(os.path.join(workdir, "units"), exist_ok=True)
    started = time.perf_counter()
    setup = make_setup(config, workdir, names)
    rows = [row for name in names for row in _task_rows(name, arms, setup, config, workdir)]
    results = {"config": config.to_dict(), "environment": reporting.environment(),
               "seconds": time.perf_counter() - started, "rows": rows}
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    formats = {column: ".3f" for column in COLUMNS[3:]}
    reporting.write_text(os.path.join(workdir, "results.md"),
                         "# What one repair teaches (held-out OOD transitions)\n\n"
                         + reporting.markdown_table(rows, COLUMNS, formats))
    return results
