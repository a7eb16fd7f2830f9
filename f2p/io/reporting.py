"""Atomic result files, Markdown tables and the environment record every experiment writes."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np


def atomic_write(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """Writes a file through `write(file)` into a temporary name beside it, then renames it.

    A reader never sees a half-written file: os.replace is atomic on POSIX within a folder.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "to_dict"):  # ml_collections.ConfigDict
        return value.to_dict()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


def to_json(payload: Any) -> str:
    """JSON text for results: NumPy scalars/arrays and ConfigDicts are converted; NaN -> null."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(key): clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        return value

    return json.dumps(clean(json.loads(json.dumps(payload, default=_json_default))), indent=2,
                      sort_keys=True)


def write_json(path: str, payload: Any) -> None:
    """Writes `payload` as JSON, atomically."""
    text = to_json(payload)
    atomic_write(path, lambda file: file.write(text.encode()))


def write_text(path: str, text: str) -> None:
    """Writes text, atomically."""
    atomic_write(path, lambda file: file.write(text.encode()))


def save_figure(path: str, figure) -> None:
    """Saves a matplotlib figure as PNG, atomically, and closes it."""
    import matplotlib.pyplot as plt  # lazy: only experiments draw

    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=120,
                                                   bbox_inches="tight"))
    plt.close(figure)


def environment() -> dict[str, Any]:
    """Versions, devices and XLA flags to store with every result (jax/jaxlib, CPU count)."""
    import jax
    import jaxlib

    versions = {"python": platform.python_version(), "jax": jax.__version__,
                "jaxlib": jaxlib.__version__, "numpy": np.__version__}
    for name in ("flax", "optax", "mujoco", "open3d", "blackjax"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            continue
    return {
        "versions": versions,
        "devices": [str(device) for device in jax.devices()],
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str],
                   formats: dict[str, str] | None = None) -> str:
    """A GitHub Markdown table of `rows` (dicts) restricted to `columns`, with optional formats."""
    formats = formats or {}

    def cell(row, column):
        value = row.get(column, "")
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        if column in formats and isinstance(value, (int, float, np.number)):
            return format(value, formats[column])
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row, column) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval for a binomial proportion (default z)."""
    if trials <= 0:
        return (float("nan"), float("nan"))
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # At p = 0 or 1 the bound equals p only up to rounding; clamp so that low <= p <= high
    # (error bars drawn from the interval must never be negative).
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def finetune_settings(config: dict[str, Any]) -> str:
    """One sentence on a repair run's fine-tune and model options, for its results.md.

    Args:
      config: the run's config as a dict, with a `finetune` section (steps, replay_fraction and
        optionally learning_rate) and optionally relation_features, carry_gate and
        carry_held_only; absent fields read as their defaults (learning rate 3e-4, options
        off).
    """
    finetune = config["finetune"]
    return (f"Fine-tune: {finetune['steps']} steps, learning rate "
            f"{finetune.get('learning_rate', 3e-4):g}, replay fraction "
            f"{finetune['replay_fraction']:g}; relation inputs of the dynamics "
            f"{'on' if config.get('relation_features') else 'off'}, carry gate "
            f"{_gate(config)}.")


def _gate(config: dict[str, Any]) -> str:
    """'off', 'on' or 'on, held objects only' (config.carry_gate, config.carry_held_only)."""
    if not config.get("carry_gate"):
        return "off"
    return "on, held objects only" if config.get("carry_held_only") else "on"
