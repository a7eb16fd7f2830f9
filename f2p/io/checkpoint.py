"""Orbax checkpoints with the config beside them as JSON; restore checks config compatibility."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from f2p.io import reporting

CONFIG_FILE = "config.json"
COMPATIBLE_SECTIONS = ("model",)
"""Config sections that must match for a checkpoint to restore (they fix parameter shapes)."""


def _config_dict(config) -> dict:
    """A JSON-compatible dict of a ConfigDict / FrozenConfigDict / dict (tuples become lists)."""
    if isinstance(config, ml_collections.FrozenConfigDict):
        config = ml_collections.ConfigDict(config)
    if isinstance(config, ml_collections.ConfigDict):
        return json.loads(config.to_json())
    return json.loads(json.dumps(config))


def config_differences(saved: dict, config, sections: Sequence[str] = COMPATIBLE_SECTIONS
                       ) -> list[str]:
    """Lists 'section.key: saved -> current' for every differing key of the given sections."""
    current = _config_dict(config)
    differences = []
    for section in sections:
        old, new = saved.get(section, {}), current.get(section, {})
        for key in sorted(set(old) | set(new)):
            if old.get(key, "<missing>") != new.get(key, "<missing>"):
                differences.append(f"{section}.{key}: {old.get(key, '<missing>')!r} -> "
                                   f"{new.get(key, '<missing>')!r}")
    return differences


def _arrays(tree: Any) -> Any:
    """NumPy scalars (np.int32(3)) become 0-d arrays, which orbax accepts."""
    return jax.tree.map(lambda x: np.asarray(x) if isinstance(x, np.generic) else x, tree)


def _manager(directory: str, create: bool, keep: int | None = None) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def load_config(directory: str) -> ml_collections.ConfigDict:
    """Returns the config saved beside the checkpoints in `directory`.

    Raises:
      FileNotFoundError: when there is no config file.
    """
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint config {path}: not a checkpoint directory")
    with open(path) as stream:
        return ml_collections.ConfigDict(json.load(stream))


def latest_step(directory: str) -> int | None:
    """Returns the newest complete checkpoint step in `directory`, or None when there is none."""
    if not os.path.isdir(directory):
        return None
    with _manager(directory, create=False) as manager:
        return manager.latest_step()


def save_checkpoint(directory: str, step: int, tree: Any, config, keep: int = 2) -> str:
    """Saves `tree` as checkpoint `step` (atomic: orbax renames a finished temporary folder).

    The config is written beside as JSON (atomically). Saving into a directory whose saved
    config is incompatible raises instead of mixing two models.

    Args:
      directory: checkpoint directory (created if needed).
      step: step number, the checkpoint's name.
      tree: a pytree of arrays (e.g. {"step", "params", "opt_state"}).
      config: the full ConfigDict (model section checked for compatibility).
      keep: number of newest checkpoints kept.

    Returns:
      The checkpoint directory.
    """
    os.makedirs(directory, exist_ok=True)
    config_path = os.path.join(directory, CONFIG_FILE)
    if os.path.exists(config_path):
        differences = config_differences(_config_dict(load_config(directory)), config)
        if differences:
            raise ValueError(f"checkpoint directory {directory} holds an incompatible model; "
                             f"differences: {'; '.join(differences)}")
    reporting.write_json(config_path, _config_dict(config))
    with _manager(directory, create=True, keep=keep) as manager:
        manager.save(int(step), args=ocp.args.StandardSave(_arrays(tree)), force=True)
        manager.wait_until_finished()
    return directory


def restore_checkpoint(directory: str, target: Any, config, step: int | None = None) -> Any:
    """Restores a checkpoint into the structure (and shapes) of `target`.

    Args:
      directory: checkpoint directory.
      target: a pytree like the saved one (e.g. a freshly initialised state), for structure.
      config: the current config; its compatible sections must equal the saved ones.
      step: the step to restore; the newest when None.

    Raises:
      FileNotFoundError: no checkpoint (or not that step) in `directory`.
      ValueError: the saved config is incompatible, or the arrays do not fit `target`.
    """
    saved_config = _config_dict(load_config(directory))
    differences = config_differences(saved_config, config)
    if differences:
        raise ValueError(f"checkpoint in {directory} is incompatible with the current config; "
                         f"differences: {'; '.join(differences)}")
    with _manager(directory, create=False) as manager:
        steps = manager.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint steps in {directory}")
        step = manager.latest_step() if step is None else int(step)
        if step not in steps:
            raise FileNotFoundError(f"no checkpoint step {step} in {directory}; "
                                    f"available: {sorted(steps)}")
        try:
            return manager.restore(step, args=ocp.args.StandardRestore(_arrays(target)))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"checkpoint {directory} step {step} does not fit the target "
                             f"structure: {error}") from error
