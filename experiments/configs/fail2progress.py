"""Config of fail2progress_main: detected OOD failures repaired by every method, then scored.

Select a variant with --config=experiments/configs/fail2progress.py:VARIANT, VARIANT one of
default (the main table: 10 wrong_prediction failures per task, every method), demo (one
transport failure repaired with svgd, the `make demo` job) or tiny (seconds; tests point
`checkpoint` at a tiny exported model).
"""

import ml_collections

VARIANTS = ("default", "demo", "tiny")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"config variant: unknown {variant!r}; allowed: {', '.join(VARIANTS)}")
    config = ml_collections.ConfigDict()
    config.checkpoint = "checkpoints/base"  # the base model (f2p.io.pretrained)
    config.tasks = "tabletop,transport,packing"
    config.object_count = 3  # movable objects per scene
    # Seeds: OOD episodes of failure_seed produce the failures to repair; the future OOD and
    # retention episodes come from eval_seed. Both differ from the seeds any setting was tuned
    # on (1000, 1001) and from experiments.evaluate's seed 0.
    config.failure_seed = 1
    config.eval_seed = 2
    config.num_failures = 10  # failures classified wrong_prediction kept per task
    config.max_collection_episodes = 60  # OOD episodes tried per task to find them
    config.num_future = 10  # fresh OOD episodes per repaired model (whole plan executed)
    config.num_retention = 10  # fresh in-distribution episodes per repaired model
    # Recovery methods (f2p.recovery, f2p.repair): original, replan, repair:<generator>.
    config.methods = ("original,replan,repair:svgd,repair:sampling,repair:gradient,"
                      "repair:svgd_no_entropy,repair:random")
    config.oracle = True  # also recover every failure with the oracle planner (upper bound)
    config.max_rounds = 1  # repairs per episode (the paper's one-shot repair)
    config.repair_classes = "wrong_prediction"  # failure classes kept and repaired
    config.max_replans = 1
    config.max_steps = 32
    config.save_models = "svgd"  # generators whose repaired models are exported ("" for none)
    config.figure_generators = "svgd,gradient,sampling"  # drawn side by side per task
    # The real world, as in experiments/configs/evaluate.py.
    config.noise_level = 0.1
    config.friction_scale = (0.7, 1.3)
    config.mass_scale = (0.6, 1.6)
    config.size_scale = (0.95, 1.05)
    config.belief = "real2sim"
    config.detection_threshold = 0.5
    config.num_workers = 2  # MuJoCo worker processes (labelling, classification, oracle)

    planner = config.planner = ml_collections.ConfigDict()
    planner.population = 64
    planner.iterations = 5
    planner.elites = 8
    planner.init_std = 0.5
    planner.seed = 0

    oracle = config.oracle_planner = ml_collections.ConfigDict()
    oracle.num_workers = 2
    oracle.population = 32
    oracle.iterations = 2
    oracle.elites = 4
    oracle.seed = 0

    # State and action densities (f2p.objectives.ObjectiveConfig).
    objective = config.objective = ml_collections.ConfigDict()
    objective.relation_term = "model"  # or "geometric"
    objective.relation_weight = 1.0
    objective.chamfer_sigma = 0.03
    objective.prior_weight = 1.0
    objective.prior_scale = 0.005
    objective.workspace_radius = 0.15
    objective.yaw_scale = 0.05
    objective.temperature = 0.01
    objective.entropy_weight = 1.0
    objective.action_sigma = 0.05
    objective.num_points = 128

    # Particles and steps (f2p.generation.GenerationConfig); the label budget is N x M.
    generation = config.generation = ml_collections.ConfigDict()
    generation.num_states = 20
    generation.num_actions = 20
    generation.state_steps = 60
    generation.action_steps = 40
    generation.state_learning_rate = 0.005
    generation.action_learning_rate = 0.005
    generation.init_std = 0.01
    generation.proposal_std = 0.04
    generation.sampling_batch = 64
    generation.sampling_max_draws = 64

    finetune = config.finetune = ml_collections.ConfigDict()
    finetune.steps = 200
    # Share of each fine-tune batch replayed from base data. Chosen on the development seeds
    # (failure seed 1000, evaluation seed 1001; tabletop): with 0.5 or 0.25 the repaired model
    # still planned the failing skeleton on every fresh OOD scene (future OOD 0/10), with 0 it
    # succeeded on 4/10 with in-distribution success kept at 10/10.
    finetune.replay_fraction = 0.0

    # Base training data replayed while fine-tuning: made once per task by the data generator
    # (isaac_bridge.datagen) from a fixed seed and cached under workdir/replay/.
    replay = config.replay = ml_collections.ConfigDict()
    replay.seed = 7
    replay.num_transitions = 400
    replay.shard_size = 200
    replay.object_counts = "3,5,7"
    replay.num_points = 128
    replay.noise_level = 0.0

    if variant == "demo":
        config.tasks = "transport"
        config.num_failures = 1
        config.max_collection_episodes = 10
        config.num_future = 2
        config.num_retention = 2
        config.methods = "repair:svgd"
        config.oracle = False
        config.figure_generators = "svgd"
        replay.num_transitions = 200  # the demo makes its own replay set: keep it quick
    elif variant == "tiny":
        config.checkpoint = ""  # tests set a tiny exported model
        config.tasks = "tabletop"  # a random model's tabletop plans are caught failing
        config.num_failures = 1
        config.max_collection_episodes = 3
        config.num_future = 1
        config.num_retention = 1
        config.methods = "original,repair:svgd"
        config.oracle = False
        config.repair_classes = "wrong_prediction,sim2real"  # a random model's detections
        config.num_workers = 1
        config.figure_generators = "svgd"
        planner.update(population=8, iterations=2, elites=2)
        objective.num_points = 32
        generation.update(num_states=2, num_actions=2, state_steps=2, action_steps=2,
                          sampling_batch=4, sampling_max_draws=2)
        finetune.steps = 2
        replay.update(num_transitions=4, shard_size=4, num_points=32)
    return config
