"""Transition datasets as sharded .npz files with a JSON metadata file; atomic and resumable."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from f2p.io import reporting
from f2p.scene import Transition, take_row

DATASET_VERSION = 1
"""Bumped whenever the shard layout or the Transition fields change."""
METADATA_FILE = "metadata.json"
SHARD_PATTERN = "shard-{:05d}.npz"


def _synced(write: Callable[[IO[bytes]], Any]) -> Callable[[IO[bytes]], Any]:
    """Wrap write(file) to flush and fsync before reporting.atomic_write renames the file.

    The data is then on disk, not only in the page cache, when it takes its final name: a power
    cut cannot leave an empty shard or metadata file that looks complete.
    """

    def write_and_sync(file: IO[bytes]) -> None:
        write(file)
        file.flush()
        os.fsync(file.fileno())

    return write_and_sync


def _write_metadata(directory: str, metadata: dict) -> None:
    text = reporting.to_json(metadata)
    reporting.atomic_write(os.path.join(directory, METADATA_FILE),
                           _synced(lambda file: file.write(text.encode())))


def _json_compatible(payload: Any) -> Any:
    """Return `payload` as it reads back from JSON (NumPy values become Python ones)."""
    return json.loads(reporting.to_json(payload))


def _check_transition(transitions: Transition) -> int:
    """Return the batch size of a Transition batch, or raise naming the offending field."""
    sizes = {}
    for field in Transition._fields:
        value = np.asarray(getattr(transitions, field))
        if value.ndim == 0:
            raise ValueError(f"transitions.{field}: needs a leading batch axis, got a scalar")
        sizes[field] = value.shape[0]
    if len(set(sizes.values())) != 1:
        raise ValueError(f"transitions: fields have different batch sizes {sizes}")
    return next(iter(sizes.values()))


def read_metadata(directory: str) -> dict:
    """Read a dataset's metadata, checking that it exists and has this code's version.

    Raises:
      FileNotFoundError: the directory or its metadata file is missing.
      ValueError: the dataset was written with another DATASET_VERSION.

    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"dataset directory {directory!r} does not exist")
    path = os.path.join(directory, METADATA_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset directory {directory!r} has no {METADATA_FILE}")
    with open(path) as file:
        metadata = json.load(file)
    version = metadata.get("version")
    if version != DATASET_VERSION:
        raise ValueError(f"dataset {directory!r}: version {version!r}, this code reads version "
                         f"{DATASET_VERSION}; regenerate the dataset")
    return metadata


class DatasetWriter:
    """Writes Transition shards one at a time; a new writer on the same directory resumes.

    The metadata file lists the completed shards and is rewritten (atomically) after every
    shard, so a crash loses at most the shard being written, and a stale temporary file never
    counts. A writer refuses a directory written with another version, config or seed.
    """

    def __init__(self, directory: str, config: dict[str, Any], seed: int, num_shards: int):
        """Open or create the dataset.

        Args:
          directory: dataset directory (created when missing).
          config: JSON-compatible description of how the data is generated.
          seed: base seed of the generation.
          num_shards: total number of shards the finished dataset has.

        """
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        config = _json_compatible(config)
        if os.path.exists(os.path.join(directory, METADATA_FILE)):
            self.metadata = read_metadata(directory)
            for key, value in (("config", config), ("seed", seed), ("num_shards", num_shards)):
                if self.metadata[key] != value:
                    raise ValueError(f"dataset {directory!r}: {key} differs from the existing "
                                     f"dataset ({self.metadata[key]!r} != {value!r}); use "
                                     "another directory")
        else:
            self.metadata = {"version": DATASET_VERSION, "config": config, "seed": seed,
                             "num_shards": num_shards, "shards": {}, "complete": False}
            _write_metadata(directory, self.metadata)

    def is_done(self, index: int) -> bool:
        """Tell whether shard `index` was written completely (its file and metadata entry exist)."""
        entry = self.metadata["shards"].get(str(index))
        return entry is not None and os.path.exists(os.path.join(self.directory, entry["file"]))

    def pending(self) -> list[int]:
        """Return the indices of the shards still to write."""
        return [i for i in range(self.metadata["num_shards"]) if not self.is_done(i)]

    def write_shard(self, index: int, transitions: Transition, counts: dict[str, Any]) -> str:
        """Write shard `index` atomically, then record it (with its counts) in the metadata.

        Args:
          index: shard index in [0, num_shards).
          transitions: Transition batch (leading axis; may be empty).
          counts: JSON-compatible per-shard counts (e.g. attempted, dropped).

        Returns:
          The shard's path.

        """
        if not 0 <= index < self.metadata["num_shards"]:
            raise ValueError(f"index: {index} outside [0, {self.metadata['num_shards']})")
        size = _check_transition(transitions)
        name = SHARD_PATTERN.format(index)
        arrays = {field: np.asarray(getattr(transitions, field)) for field in Transition._fields}
        path = os.path.join(self.directory, name)
        reporting.atomic_write(path, _synced(lambda file: np.savez(file, **arrays)))
        self.metadata["shards"][str(index)] = {"file": name, "size": size, **counts}
        self.metadata["complete"] = not self.pending()
        _write_metadata(self.directory, self.metadata)
        return path

    def finish(self, summary: dict[str, Any]) -> dict:
        """Store summary counts in the metadata once every shard is written; return it."""
        missing = self.pending()
        if missing:
            raise ValueError(f"shards {missing} are not written yet")
        self.metadata["summary"] = _json_compatible(summary)
        self.metadata["complete"] = True
        _write_metadata(self.directory, self.metadata)
        return self.metadata


def save_dataset(directory: str, transitions: Transition, config: dict[str, Any], seed: int,
                 shard_size: int = 1024) -> dict:
    """Write a Transition batch as shards of at most `shard_size` rows; return the metadata."""
    size = _check_transition(transitions)
    if shard_size < 1:
        raise ValueError(f"shard_size: must be >= 1, got {shard_size}")
    num_shards = max(1, -(-size // shard_size))
    writer = DatasetWriter(directory, config, seed, num_shards)
    for index in writer.pending():
        rows = slice(index * shard_size, (index + 1) * shard_size)
        writer.write_shard(index, take_row(transitions, rows), {})
    return writer.finish({"transitions": size})


def load_dataset(directory: str, allow_incomplete: bool = False) -> Transition:
    """Load every shard of a dataset into one Transition of stacked NumPy arrays.

    Args:
      directory: dataset directory written by DatasetWriter / save_dataset.
      allow_incomplete: load the completed shards of an unfinished dataset instead of raising.

    Raises:
      FileNotFoundError: missing directory, metadata or shard file.
      ValueError: version mismatch, unfinished dataset, or a shard with missing fields.

    """
    metadata = read_metadata(directory)
    if not metadata["complete"] and not allow_incomplete:
        raise ValueError(f"dataset {directory!r} is incomplete ({len(metadata['shards'])} of "
                         f"{metadata['num_shards']} shards); finish generating it first")
    fields = {name: [] for name in Transition._fields}
    for index in sorted(metadata["shards"], key=int):
        path = os.path.join(directory, metadata["shards"][index]["file"])
        if not os.path.exists(path):
            raise FileNotFoundError(f"dataset {directory!r}: shard file {path!r} is missing")
        with np.load(path) as shard:
            missing = set(Transition._fields) - set(shard.files)
            if missing:
                raise ValueError(f"shard {path!r} lacks fields {sorted(missing)}")
            for name in Transition._fields:
                fields[name].append(shard[name])
    if not fields["mask"]:
        raise ValueError(f"dataset {directory!r} has no shards")
    return Transition(**{name: np.concatenate(parts) for name, parts in fields.items()})
