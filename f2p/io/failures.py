"""Detected failures on disk (arrays as .npz, metadata as JSON): the input of Fail2Progress."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np

from f2p.io import reporting

FAILURE_VERSION = 1
"""Layout version stored in every failure's JSON; load_failure refuses any other."""


def save_failure(directory: str, name: str, arrays: dict[str, np.ndarray],
                 metadata: dict[str, Any]) -> str:
    """Writes one detected failure as <name>.npz (arrays) + <name>.json (metadata), atomically.

    Returns:
      The path without extension.
    """
    base = os.path.join(directory, name)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    reporting.atomic_write(base + ".npz", lambda file: file.write(buffer.getvalue()))
    reporting.write_json(base + ".json", {"version": FAILURE_VERSION, **metadata})
    return base


def load_failure(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reads a failure written by save_failure; `path` with or without .npz/.json.

    Raises:
      FileNotFoundError: a file is missing. ValueError: another layout version.
    """
    base = os.path.splitext(path)[0] if path.endswith((".npz", ".json")) else path
    with open(base + ".json") as file:
        metadata = json.load(file)
    if metadata.get("version") != FAILURE_VERSION:
        raise ValueError(f"{base}.json: failure version {metadata.get('version')!r}, this code "
                         f"reads {FAILURE_VERSION}")
    with np.load(base + ".npz") as stored:
        arrays = {key: stored[key] for key in stored.files}
    return arrays, metadata
