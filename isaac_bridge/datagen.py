"""Task datasets: random task scenes and skills, labelled in simulation, written as shards.

The data of experiments.generate_data and experiments.pretrain: every (task, split) dataset is
a resumable sharded directory (f2p.io.dataset) whose rows come from labelling.label_batch.
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
from tqdm import tqdm

from f2p import tasks
from f2p.io import dataset
from f2p.io.config import parse_list
from f2p.scene import Transition, stack_rows, take_row
from f2p.world import Simulator
from isaac_bridge.labelling import RenderSettings, label_batch

_LOG = logging.getLogger(__name__)

CONTENT_KEYS = ("object_counts", "num_transitions", "shard_size", "num_points", "noise_level")
"""The generation settings that fix a dataset's content (the rest only say how fast it is made)."""


def shard_rng(seed: int, task: str, split: str, shard: int) -> np.random.Generator:
    """Return the generator of one shard.

    It is a fixed function of (seed, task, split, shard index), so a resumed run writes exactly
    the shards an uninterrupted run would have written.
    """
    return np.random.default_rng([seed, zlib.crc32(task.encode()), tasks.SPLITS.index(split),
                                  shard])


def generate_shard(task: tasks.Task, split: str, index: int, config,
                   simulator: Simulator) -> tuple[Transition, dict]:
    """Sample, label and measure one shard.

    The shard's generator draws, in this order, every scene and its skill, the simulator's
    seed, and the perception noise of each kept item (label_batch), so the shard is a fixed
    function of (config, task, split, index).

    Args:
      task: the task whose samplers draw the scenes and skills.
      split: "train" or "ood".
      index: shard index; the shard attempts config.shard_size items (fewer in the last one).
      config: generation settings: seed, object_counts, num_transitions, shard_size,
        num_points, noise_level.
      simulator: an f2p.world.Simulator.

    Returns:
      (Transition batch of the kept items, counts): label_batch's counts plus "flags", the
      number of kept rows for which each of task.measure's flags holds.
    """
    rng = shard_rng(config.seed, task.name, split, index)
    counts = parse_list(config.object_counts, tasks.OBJECT_COUNTS, "object_counts", int)
    attempted = min(config.shard_size, config.num_transitions - index * config.shard_size)
    scenes, skills = [], []
    for _ in range(attempted):
        scene = task.sample_scene(rng, int(rng.choice(counts)), split)
        scenes.append(scene)
        skills.append(task.sample_skill(rng, scene, split))
    render = RenderSettings(num_points=config.num_points, noise_level=config.noise_level)
    transitions, shard_counts, _ = label_batch(simulator, stack_rows(scenes), stack_rows(skills),
                                               seed=int(rng.integers(2**31)), render=render,
                                               rng=rng)
    flags = {}
    for row in range(shard_counts["kept"]):
        for name, value in task.measure(take_row(transitions, row)).items():
            flags[name] = flags.get(name, 0) + int(value)
    return transitions, {**shard_counts, "flags": flags}


def dataset_config(config, task: str, split: str) -> dict:
    """Return the config entries that fix a dataset's content (not how fast it is made)."""
    return {"task": task, "split": split, **{key: config[key] for key in CONTENT_KEYS}}


def generate(task: tasks.Task, split: str, config, directory: str, simulator: Simulator) -> dict:
    """Write (or resume) the dataset of one (task, split); return its summary counts.

    Args:
      task: the task.
      split: "train" or "ood".
      config: generation settings (see generate_shard); num_transitions and shard_size >= 1.
      directory: the dataset directory; a complete one is reused, a partial one resumed, one
        of another content config or seed refused (f2p.io.dataset.DatasetWriter).
      simulator: an f2p.world.Simulator.

    Returns:
      The summary stored in the metadata: attempted, kept and dropped items, and the status
      and flag counts, summed over the shards.
    """
    if config.num_transitions < 1 or config.shard_size < 1:
        raise ValueError("config.num_transitions and config.shard_size must be >= 1")
    num_shards = -(-config.num_transitions // config.shard_size)
    writer = dataset.DatasetWriter(directory, dataset_config(config, task.name, split),
                                   config.seed, num_shards)
    pending = writer.pending()
    if len(pending) < num_shards:
        _LOG.info("%s/%s: resuming, %d of %d shards already written", task.name, split,
                  num_shards - len(pending), num_shards)
    with tqdm(total=num_shards, initial=num_shards - len(pending), unit="shard",
              desc=f"{task.name}/{split}") as progress:
        for index in pending:
            batch, counts = generate_shard(task, split, index, config, simulator)
            writer.write_shard(index, batch, counts)
            progress.set_postfix(kept=counts["kept"], dropped=counts["dropped"])
            progress.update()
    summary = {"attempted": 0, "kept": 0, "dropped": 0, "status": {}, "flags": {}}
    for entry in writer.metadata["shards"].values():
        for key in ("attempted", "kept", "dropped"):
            summary[key] += entry[key]
        for group in ("status", "flags"):
            for name, value in entry[group].items():
                summary[group][name] = summary[group].get(name, 0) + value
    return writer.finish(summary)["summary"]
