"""Config of evaluate_main: the base agent plays seeded episodes in the "real" world.

Select a variant with --config=experiments/configs/evaluate.py:VARIANT, VARIANT one of default
(50 episodes per task x object count x split) or tiny (2 episodes per cell, a small CEM; for
tests, which point `checkpoint` at a tiny exported model).
"""

import ml_collections

from experiments.configs.common import planner_section


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in ("default", "tiny"):
        raise ValueError(f"config variant: unknown {variant!r}; allowed: default, tiny")
    config = ml_collections.ConfigDict()
    config.checkpoint = "checkpoints/base"  # exported model (f2p.io.pretrained.load_base_model)
    config.tasks = "tabletop,transport,packing"  # comma-separated registered task names
    config.object_counts = "3"  # comma-separated, from f2p.tasks.OBJECT_COUNTS (3, 5, 7)
    config.splits = "train,ood"  # train = in distribution, ood = where the base model is wrong
    config.num_episodes = 50  # seeded episodes per task x object count x split
    config.seed = 0  # episode e of a cell uses scene and world seeds derived from (seed, e)
    # The real world: hidden physics drawn per episode, perception noise on every observation.
    config.noise_level = 0.1  # perception Sim2Real gap in [0, 1] (the model trained at 0)
    config.friction_scale = (0.7, 1.3)
    config.mass_scale = (0.6, 1.6)
    config.size_scale = (0.95, 1.05)
    # What the agent knows of object sizes and of the goal's and skeletons' slots:
    # "real2sim" = boxes fitted to the first observation (fixtures known, the nominal scene only
    # for objects too occluded to fit); "nominal" = the sampled task scene before the world's
    # hidden size perturbation (an oracle on poses; for ablation).
    config.belief = "real2sim"
    config.detection_threshold = 0.5  # a relation holds when its probability exceeds this
    # Recovery policies at the first detected failure, each branched from the same snapshot
    # (f2p.recovery): stop = end the episode, original = run the rest of the plan, replan =
    # replan with the same model from the current observation (at most max_replans times).
    config.policies = "stop,original"
    config.max_replans = 1
    config.max_steps = 32  # bound on the skills one episode branch executes
    # Splits in which the oracle planner (plans simulated from the true scene) also plays each
    # episode, whole plan executed; "" for none.
    config.oracle_splits = "ood"
    config.save_failures = True  # write every detected failure under workdir/failures/

    planner = config.planner = planner_section()

    oracle = config.oracle = ml_collections.ConfigDict()
    oracle.num_workers = 2  # MuJoCo worker processes that simulate the candidates
    # Every candidate is simulated step by step in MuJoCo (about 10-20 ms each on these 2
    # cores), so the search is kept small: 2 x 32 candidates per skeleton at most.
    oracle.population = 32
    oracle.iterations = 2
    oracle.elites = 4
    oracle.seed = 0

    if variant == "tiny":
        config.num_episodes = 2
        config.checkpoint = ""  # tests set a tiny exported model
        planner.population = 8
        planner.iterations = 2
        planner.elites = 2
        oracle.num_workers = 1
        oracle.population = 8
        oracle.iterations = 1
        oracle.elites = 2
    return config
