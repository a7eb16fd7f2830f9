"""Config of lifelong_main: a stream of OOD episodes repaired in turn, against one-shot repair.

Select a variant with --config=experiments/configs/lifelong.py:VARIANT, VARIANT one of default
or tiny (seconds; tests point `checkpoint` at a tiny exported model).
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
    config.object_count = 3
    # A seed of its own, disjoint from every other study's and from the development seeds.
    config.stream_seed = 10
    config.stream_length = 50  # OOD episodes per task, the same stream in every mode
    config.window = 10  # success is reported per window of this many episodes
    config.modes = "base,replan,one_shot,lifelong,lifelong_explore"
    config.generator = "svgd"
    config.repair_classes = "wrong_prediction"
    # Share of each lifelong fine-tune batch replayed from the base data and every earlier
    # repair's labels, fixed before any stream was played (the one-shot repair keeps the main
    # table's finetune.replay_fraction): without replay each repair may undo the last one.
    config.lifelong_replay_fraction = 0.5
    # lifelong_explore only: below this goal probability of its best plan the agent executes
    # another skeleton's plan (f2p.agent.choose_plan). Chosen on development seed 1000 (12
    # tabletop OOD episodes, with a model repaired along the stream), where the best plans
    # that failed undetected had goal probabilities <= 0.001 and those that succeeded >= 0.022.
    config.explore_below = 0.01
    # Tabulate the finished streams on disk without playing anything (the others are listed).
    config.only_existing = False
    loop_sections(config)
    if variant == "tiny":
        config.checkpoint = ""
        config.tasks = "tabletop"  # a random model's tabletop plans are caught failing
        config.stream_length = 3
        config.window = 2
        config.explore_below = 0.99  # the untrained model explores whenever it can
        config.repair_classes = "wrong_prediction,sim2real"
        tiny_sections(config)
    return config
