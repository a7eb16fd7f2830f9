"""Config of generalisation_main: models repaired on 3-object failures, played on 5 and 7 objects.

Select a variant with --config=experiments/configs/generalisation.py:VARIANT, VARIANT one of
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
    config.tasks = "tabletop,transport,packing"
    config.object_count = 3  # the failures are collected and repaired at this count
    config.eval_counts = "3,5,7"  # object counts of the future OOD and retention episodes
    # Seeds of their own, disjoint from every other study's and from the development seeds.
    config.failure_seed = 11
    config.eval_seed = 12
    config.num_failures = 5  # wrong_prediction failures per task
    config.max_collection_episodes = 30
    config.num_future = 10  # per repaired model and object count
    config.num_retention = 10
    config.methods = "original,replan,repair:svgd,repair:sampling,repair:gradient"
    config.max_rounds = 1
    config.repair_classes = "wrong_prediction"
    config.save_models = ""
    loop_sections(config)
    if variant == "tiny":
        config.checkpoint = ""
        config.tasks = "tabletop"  # a random model's tabletop plans are caught failing
        config.eval_counts = "3,5"
        config.num_failures = 1
        config.max_collection_episodes = 3
        config.num_future = 1
        config.num_retention = 1
        config.methods = "original,repair:svgd"
        config.repair_classes = "wrong_prediction,sim2real"
        tiny_sections(config)
    return config
