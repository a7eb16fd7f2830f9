"""Detected failures as typed records on disk (arrays as .npz, the rest as JSON)."""

from __future__ import annotations

import io
import json
import os
from typing import Any, NamedTuple

import numpy as np

from f2p.io import reporting
from f2p.scene import Scene, Skill
from f2p.tasks.base import Goal
from f2p.world import Observation, WorldSnapshot

FAILURE_VERSION = 2
"""Layout version stored in every failure's JSON; load_failure refuses any other.

Version 1 (before the typed record) stored the belief at the start of the episode, the plan
without the failed skill, and neither the goal nor the threshold nor a world snapshot.
"""


class FailureTruth(NamedTuple):
    """Scoring only: what really happened at the failed step. The agent never reads it.

    Attributes:
      scene_before: the world's true state just before the failed step.
      relations_before: [K, K, 9] bool true relations then.
      relations_after: [K, K, 9] bool true relations just after the step.
    """

    scene_before: Scene
    relations_before: np.ndarray
    relations_after: np.ndarray


class Failure(NamedTuple):
    """Everything a repair needs from one detected failure, and nothing it must not see.

    Attributes:
      task: the task's name (f2p.tasks.get_task).
      goal: the goal over the believed scene's slots.
      detection_threshold: probability above which a relation counts as holding.
      step: index of the failed step in `plan`.
      plan: Skill batch [T], the plan being executed.
      skill: the failed skill (unbatched), plan[step].
      predicted_relations: [K, K, 9] relation probabilities the plan predicted after the step.
      observed_relations: [K, K, 9] relation probabilities read from observation_after.
      observation_before: what the agent saw just before the step (half_extents filled in).
      observation_after: what it saw just after the step.
      belief_before: the scene believed just before the step (Real2Sim on observation_before).
      snapshot_before: the world just before the step: restore it and step `skill` to replay.
      seeds: the seeds that rebuild the episode (scene, world, planner).
      metadata: JSON-ready context (object count, split, checkpoint, noise level, scores, ...).
      truth: scoring-only FailureTruth, kept apart from the agent's view.
    """

    task: str
    goal: Goal
    detection_threshold: float
    step: int
    plan: Skill
    skill: Skill
    predicted_relations: np.ndarray
    observed_relations: np.ndarray
    observation_before: Observation
    observation_after: Observation
    belief_before: Scene
    snapshot_before: WorldSnapshot
    seeds: dict[str, int]
    metadata: dict[str, Any]
    truth: FailureTruth


_ARRAY_GROUPS = {"plan": Skill, "skill": Skill, "observation_before": Observation,
                 "observation_after": Observation, "belief_before": Scene}


def _flatten(prefix: str, record: NamedTuple, arrays: dict[str, np.ndarray]) -> None:
    for name, value in record._asdict().items():
        if value is not None:  # absent optional fields (an Observation's num_visible) load as None
            arrays[f"{prefix}.{name}"] = np.asarray(value)


def _unflatten(prefix: str, kind, arrays: dict[str, np.ndarray]):
    return kind(**{name: arrays.get(f"{prefix}.{name}") for name in kind._fields})


def save_failure(directory: str, name: str, failure: Failure) -> str:
    """Writes one Failure as <name>.npz (arrays) + <name>.json (the rest), each atomically.

    The JSON is written last, so a failure whose JSON exists is complete.

    Returns:
      The path without extension.
    """
    arrays: dict[str, np.ndarray] = {}
    for field in _ARRAY_GROUPS:
        _flatten(field, getattr(failure, field), arrays)
    arrays["predicted_relations"] = np.asarray(failure.predicted_relations)
    arrays["observed_relations"] = np.asarray(failure.observed_relations)
    for key, value in failure.snapshot_before.arrays.items():
        arrays[f"snapshot_before.{key}"] = np.asarray(value)
    _flatten("truth.scene_before", failure.truth.scene_before, arrays)
    arrays["truth.relations_before"] = np.asarray(failure.truth.relations_before)
    arrays["truth.relations_after"] = np.asarray(failure.truth.relations_after)
    metadata = {"version": FAILURE_VERSION, "task": failure.task,
                "goal": {"must_hold": [list(map(int, t)) for t in failure.goal.must_hold],
                         "must_not_hold": [list(map(int, t)) for t in failure.goal.must_not_hold]},
                "detection_threshold": float(failure.detection_threshold),
                "step": int(failure.step), "seeds": failure.seeds,
                "snapshot_before": failure.snapshot_before.metadata,
                "metadata": failure.metadata}
    base = os.path.join(directory, name)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    reporting.atomic_write(base + ".npz", lambda file: file.write(buffer.getvalue()))
    reporting.write_json(base + ".json", metadata)
    return base


def load_failure(path: str) -> Failure:
    """Reads a Failure written by save_failure; `path` with or without .npz/.json.

    Raises:
      FileNotFoundError: a file is missing.
      ValueError: the file has another layout version (for example 1, from before the typed
        record), naming both versions.
    """
    base = os.path.splitext(path)[0] if path.endswith((".npz", ".json")) else path
    with open(base + ".json") as file:
        stored = json.load(file)
    if stored.get("version") != FAILURE_VERSION:
        raise ValueError(f"{base}.json: failure layout version {stored.get('version')!r}; this "
                         f"code reads version {FAILURE_VERSION} only (re-run the evaluation "
                         f"that wrote it)")
    with np.load(base + ".npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    groups = {field: _unflatten(field, kind, arrays) for field, kind in _ARRAY_GROUPS.items()}
    snapshot_arrays = {key.split(".", 1)[1]: value for key, value in arrays.items()
                       if key.startswith("snapshot_before.")}
    truth = FailureTruth(_unflatten("truth.scene_before", Scene, arrays),
                         arrays["truth.relations_before"], arrays["truth.relations_after"])
    goal = Goal(tuple(tuple(t) for t in stored["goal"]["must_hold"]),
                tuple(tuple(t) for t in stored["goal"]["must_not_hold"]))
    return Failure(task=stored["task"], goal=goal,
                   detection_threshold=float(stored["detection_threshold"]),
                   step=int(stored["step"]), plan=groups["plan"], skill=groups["skill"],
                   predicted_relations=arrays["predicted_relations"],
                   observed_relations=arrays["observed_relations"],
                   observation_before=groups["observation_before"],
                   observation_after=groups["observation_after"],
                   belief_before=groups["belief_before"],
                   snapshot_before=WorldSnapshot(snapshot_arrays, stored["snapshot_before"]),
                   seeds=stored["seeds"], metadata=stored["metadata"], truth=truth)
