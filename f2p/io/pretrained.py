"""Small exported checkpoints (parameters as .npz + config JSON) and load_base_model()."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import traverse_util

from f2p.io.reporting import atomic_write, to_json
from f2p.models import SkillEffectModel
from f2p.models import get_config as model_config
from f2p.scene import K_MAX

EXPORT_VERSION = 1
"""Bumped whenever the layout of an exported checkpoint changes."""
PARAMS_FILE = "params.npz"
CONFIG_FILE = "config.json"
BASE_PATH = os.path.join("checkpoints", "base")
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SEPARATOR = "/"
ADDED_MODEL_KEYS = {"relation_features": False, "carry_gate": False, "carry_held_only": False}
"""Model config keys added after checkpoints were exported, with the value those had."""


def export_params(directory: str, params: Any, config: ml_collections.ConfigDict,
                  metadata: dict[str, Any] | None = None) -> dict[str, int]:
    """Writes parameters only (float32 .npz) and the full config as JSON into `directory`.

    Args:
      directory: destination folder (created if needed); existing files are replaced.
      params: Flax parameters of a SkillEffectModel (a nested dict of arrays).
      config: the full config (needs a `model` section; every section is kept for the record).
      metadata: optional JSON-compatible extras stored beside the config (e.g. data counts).

    Returns:
      Sizes in bytes of the written files, by file name.
    """
    if "model" not in config:
        raise ValueError("config: needs a `model` section (pass the full config)")
    flat = traverse_util.flatten_dict(jax.device_get(params), sep=_SEPARATOR)
    arrays = {key: np.asarray(value, np.float32) for key, value in flat.items()}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    os.makedirs(directory, exist_ok=True)
    atomic_write(os.path.join(directory, PARAMS_FILE), lambda file: file.write(buffer.getvalue()))
    payload = {"version": EXPORT_VERSION, "num_points": _num_points(config),
               "config": json.loads(ml_collections.ConfigDict(config).to_json()),
               "metadata": metadata or {}}
    text = to_json(payload)
    atomic_write(os.path.join(directory, CONFIG_FILE), lambda file: file.write(text.encode()))
    return {name: os.path.getsize(os.path.join(directory, name))
            for name in (PARAMS_FILE, CONFIG_FILE)}


def _num_points(config) -> int:
    """Points per object the model was trained on (data.num_points, else the DESIGN default)."""
    if "data" in config and "num_points" in config.data:
        return int(config.data.num_points)
    return 128


def _resolve(path: str) -> str:
    """A relative path is tried from the working directory, then from the repository root."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    from_root = os.path.join(_REPO_ROOT, path)
    return from_root if os.path.exists(from_root) else path


def load_base_model(path: str = BASE_PATH
                    ) -> tuple[SkillEffectModel, Any, ml_collections.ConfigDict]:
    """Loads an exported checkpoint (by default the committed base model).

    Args:
      path: folder holding params.npz and config.json; a relative path is looked up from the
        working directory, then from the repository root.

    Returns:
      (model, params, config): the SkillEffectModel, its parameters (nested dict of jax
      arrays) and the full ConfigDict it was trained with.

    Raises:
      FileNotFoundError: the folder or one of its files is missing (says how to make it).
      ValueError: the export is of another version, or its config or parameters do not fit
        the current model code.
    """
    directory = _resolve(path)
    missing = [name for name in (CONFIG_FILE, PARAMS_FILE)
               if not os.path.exists(os.path.join(directory, name))]
    if missing:
        raise FileNotFoundError(
            f"no exported checkpoint at {path!r} (missing {', '.join(missing)}); make one with "
            "python -m experiments.pretrain_main --config=experiments/configs/pretrain.py "
            f"--workdir=workdirs/pretrain --config.export_dir={path}")
    with open(os.path.join(directory, CONFIG_FILE)) as file:
        payload = json.load(file)
    if payload.get("version") != EXPORT_VERSION:
        raise ValueError(f"checkpoint {path!r}: export version {payload.get('version')!r}, this "
                         f"code reads version {EXPORT_VERSION}; re-export it")
    config = ml_collections.ConfigDict(payload["config"])
    model = SkillEffectModel(_checked_model_config(config, path))
    with np.load(os.path.join(directory, PARAMS_FILE)) as stored:
        flat = {key: stored[key] for key in stored.files}
    expected = jax.eval_shape(lambda key: model.init(key, K_MAX, int(payload["num_points"])),
                              jax.random.PRNGKey(0))
    expected = traverse_util.flatten_dict(expected, sep=_SEPARATOR)
    problems = [f"{key}: missing" for key in sorted(set(expected) - set(flat))]
    problems += [f"{key}: unexpected" for key in sorted(set(flat) - set(expected))]
    problems += [f"{key}: shape {flat[key].shape}, model needs {expected[key].shape}"
                 for key in sorted(set(flat) & set(expected))
                 if flat[key].shape != expected[key].shape]
    if problems:
        raise ValueError(f"checkpoint {path!r} does not fit the current model "
                         f"({len(problems)} problems): {'; '.join(problems[:5])}")
    params = traverse_util.unflatten_dict(
        {key: jax.numpy.asarray(value) for key, value in flat.items()}, sep=_SEPARATOR)
    return model, params, config


def _checked_model_config(config: ml_collections.ConfigDict, path: str
                          ) -> ml_collections.FrozenConfigDict:
    """The saved `model` section, once its keys match those the current model code reads."""
    if "model" not in config:
        raise ValueError(f"checkpoint {path!r}: its config has no `model` section")
    for key, value in ADDED_MODEL_KEYS.items():
        if key not in config.model:
            config.model[key] = value
    saved = set(config.model.keys())
    current = set(model_config("default").model.keys())
    if saved != current:
        raise ValueError(f"checkpoint {path!r}: model config keys differ from the current code "
                         f"(missing {sorted(current - saved)}, unknown {sorted(saved - current)})")
    # JSON turns tuples into lists; restore them (the encoder wants hashable tuples of widths).
    config.model = ml_collections.ConfigDict(
        {key: tuple(value) if isinstance(value, list) else value
         for key, value in config.model.items()})
    return ml_collections.FrozenConfigDict(config.model)


def with_relation_features(model: SkillEffectModel, params: Any, num_points: int,
                           carry_gate: bool = False, carry_held_only: bool = False
                           ) -> tuple[SkillEffectModel, Any]:
    """The model with `relation_features` on, and params extended by zero-initialised weights.

    The extended model computes what `model` computes with `params` (up to float rounding:
    it compiles to another program) until it is trained further, since the new projections
    start at zero; fine-tuning then learns them. carry_gate also turns on the dynamics' carry
    gate (SkillDynamics.carry_gate), whose weights start at zero too; carry_held_only limits
    it to the objects the moved one holds, with one zero-initialised fraction per skill.

    Raises:
      ValueError: params do not fit `model`.
    """
    settings = ml_collections.ConfigDict(model.config.to_dict())
    settings.relation_features = True
    settings.carry_gate = bool(carry_gate) or bool(settings.get("carry_gate", False))
    settings.carry_held_only = (bool(carry_held_only)
                                or bool(settings.get("carry_held_only", False)))
    extended = SkillEffectModel(ml_collections.FrozenConfigDict(settings))
    fresh = traverse_util.flatten_dict(extended.init(jax.random.PRNGKey(0), K_MAX, num_points),
                                       sep=_SEPARATOR)
    given = traverse_util.flatten_dict(params, sep=_SEPARATOR)
    unknown = sorted(set(given) - set(fresh))
    if unknown or any(fresh[key].shape != given[key].shape for key in given):
        raise ValueError(f"params do not fit the model (unknown {unknown[:3]} or shapes differ)")
    return extended, traverse_util.unflatten_dict({**fresh, **given}, sep=_SEPARATOR)
