"""Config of experiments.generate_data: random task skills executed in MuJoCo, as datasets."""

import ml_collections


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
    """Return the default config, or the `tiny` variant (seconds, for tests)."""
    config = ml_collections.ConfigDict()
    config.tasks = "tabletop,transport,packing"  # comma-separated registered task names
    config.splits = "train,ood"  # comma-separated, from f2p.tasks.SPLITS
    config.object_counts = "3,5,7"  # movable objects per scene, drawn uniformly per scene
    config.num_transitions = 3000  # attempted per (task, split); failed executions are dropped
    config.shard_size = 250  # transitions attempted per shard (the unit of resumption)
    config.seed = 0
    config.num_points = 128  # points per object (DESIGN section 3)
    config.noise_level = 0.0  # perception noise of the recorded point clouds, in [0, 1]
    config.num_workers = 2  # simulator worker processes
    config.render_count = 3  # scenes drawn per (task, split) with --render
    if variant == "tiny":
        config.update(num_transitions=6, shard_size=3, num_points=32, num_workers=1,
                      render_count=1)
    elif variant not in (None, ""):
        raise ValueError(f"config variant: {variant!r} is not one of '', 'tiny'")
    return config
