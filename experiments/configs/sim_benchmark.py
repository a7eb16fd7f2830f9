"""Config of the sim benchmark: labelled MuJoCo executions per second, render ms per scene.

Select a variant with --config=experiments/configs/sim_benchmark.py:VARIANT, VARIANT one of
default (about a minute on 2 cores) or tiny (seconds, for tests).
"""

import ml_collections


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.num_scenes = 1024  # timed executions (after one untimed warm-up batch)
    config.batch_size = 256  # items per Simulator.execute call
    config.num_items = 4  # free items per scene; with the container: 5 movable objects
    config.items_in_container = 1  # items that start inside the container
    config.num_workers = 2  # worker processes (0 or 1: in-process)
    config.settle_time = 1.0  # longest settling phase, seconds
    config.seed = 0
    # Observation hook "package.module:function", called as function(outcome.post) on every
    # timed batch and timed separately; the default renders every post state's segmented
    # point cloud (isaac_bridge.perception.render_observation). "" disables it.
    config.observer = "experiments.sim_benchmark:render_scenes"
    if variant == "tiny":
        config.num_scenes = 8
        config.batch_size = 4
        config.num_workers = 1
    elif variant not in (None, "", "default"):
        raise ValueError(f"config variant: {variant!r} is not one of 'default', 'tiny'")
    return config
