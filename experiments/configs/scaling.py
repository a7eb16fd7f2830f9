"""Config of the scaling study: generation time against state particles N and device count.

Select a variant with --config=experiments/configs/scaling.py:VARIANT, VARIANT one of
default (N from 20 to 4096, the committed base model) or tiny (seconds, for tests: set
config.checkpoint to a tiny exported model, e.g. tests/conftest.py's tiny_checkpoint).
"""

import ml_collections

VARIANTS = ("default", "tiny")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"config variant: unknown {variant!r}; allowed: {', '.join(VARIANTS)}")
    config = ml_collections.ConfigDict()
    config.seed = 0  # the generation key (the same for every row)
    config.checkpoint = "checkpoints/base"  # exported model folder (isaac_bridge.episodes)
    config.failure_seed = 0  # the synthetic transport failure (f2p.synthetic_failure)
    config.num_objects = 3
    config.generators = ("svgd", "gradient")  # gradient: the kernel-free reference
    config.num_states = (20, 64, 256, 1024, 4096)
    # M stays fixed so that stage 2 (N x M action chains) grows only with N.
    config.num_actions = 4
    # Device counts of the rows. On CPU, each count runs in its own process with that many
    # forced host devices (they share the machine's cores: a layout test, not a speed-up);
    # on an accelerator, counts above the available devices are dropped and the count of all
    # devices is added. Rows whose N the count does not divide are skipped.
    config.device_counts = (1, 2, 4)
    config.repeats = 3  # timed runs per row after the first (compile + warm-up) call; median
    config.max_row_seconds = 120.0  # fewer repeats (at least one) once a row's runs pass this
    # Cap (GiB) on a worker's data segment, 0 for none: a row past it fails alone instead of
    # waking the OOM killer on a shared machine (the base model at N = 256 peaks at 1.7 GB).
    config.worker_memory_gb = 16.0
    # Objective and generation settings (f2p.objectives.ObjectiveConfig,
    # f2p.generation.GenerationConfig); num_states and num_actions come from above.
    config.objective = ml_collections.ConfigDict({"relation_term": "model"})
    config.generation = ml_collections.ConfigDict({"state_steps": 60, "action_steps": 40})
    if variant == "tiny":
        config.checkpoint = ""  # the test points it at a freshly exported tiny model
        config.generators = ("svgd",)
        config.num_states = (8,)  # each row compiles anew (~15-40 s on 2 shared CPU cores)
        config.num_actions = 2
        config.device_counts = (2,)  # one worker process: the sharded row
        config.repeats = 1
        config.max_row_seconds = 10.0
        config.worker_memory_gb = 8.0
        config.objective.relation_term = "geometric"  # smaller programs: faster compiles
        config.generation.update(state_steps=2, action_steps=2)
    return config
