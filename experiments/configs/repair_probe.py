"""Config of repair_probe_main: what one repair teaches, read off held-out transitions.

Select a variant with --config=experiments/configs/repair_probe.py:VARIANT, VARIANT one of
default or tiny (seconds; tests point `checkpoint` at a tiny exported model).
"""

import ml_collections

from experiments.configs.common import loop_sections, tiny_sections

VARIANTS = ("default", "tiny")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"config variant: unknown {variant!r}; allowed: {', '.join(VARIANTS)}")
    config = ml_collections.ConfigDict()
    config.checkpoint = "checkpoints/base"
    config.tasks = "tabletop"
    config.object_count = 3
    # Development seeds: the probe is for choosing settings, never for reporting them.
    config.failure_seed = 1000
    config.num_failures = 3
    config.max_collection_episodes = 20
    config.generator = "svgd"
    # Fine-tunes compared on the same labelled pairs, each "relation_features:replay:lr[:carry]"
    # (relation_features 0 or 1; replay fraction; fine-tune learning rate; carry gate 0, 1 or
    # 2 = on for held objects only).
    config.arms = ("0:0.0:0.0003,0:0.5:0.0003,1:0.5:0.0003,0:0.5:0.001,1:0.5:0.001,"
                   "1:0.5:0.001:1,1:0.5:0.001:2")
    # Held-out transitions of the task's OOD split: fresh scenes, never an episode's.
    config.probe = ml_collections.ConfigDict()
    config.probe.seed = 1000
    config.probe.num_transitions = 400
    config.probe.shard_size = 100
    config.probe.object_counts = "3"
    config.probe.noise_level = 0.0
    loop_sections(config)
    config.repair_classes = "wrong_prediction"
    if variant == "tiny":
        config.checkpoint = ""
        config.num_failures = 1
        config.max_collection_episodes = 3
        config.arms = "0:0.0:0.0003,1:0.5:0.001:1,1:0.5:0.001:2"
        config.probe.num_transitions = 6
        config.probe.shard_size = 6
        tiny_sections(config)
    return config
