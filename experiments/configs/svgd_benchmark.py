"""Config of the SVGD benchmark: f2p vs blackjax vs NumPy, and the bimodal demo.

Select a variant with --config=experiments/configs/svgd_benchmark.py:VARIANT, VARIANT one of
default (the full sweep), tiny (seconds, for tests), demo (the bimodal figure only).
"""

import ml_collections


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.mode = "benchmark"  # benchmark | demo
    config.seed = 0
    config.num_particles = (20, 128, 512, 2048)
    config.dims = (12, 96)
    # numpy computes in float32 like the others; numpy_f64 in float64, as Liu & Wang's code.
    config.implementations = ("f2p", "numpy", "numpy_f64", "blackjax")
    config.mode_separation = 3.0  # mixture modes at +-separation / sqrt(D) * ones
    config.learning_rate = 0.05  # plain SGD for the comparison: the update is phi* itself
    config.steps_per_call = 10  # a timed call runs this many steps; the particles must agree
    config.agreement_tolerance = 2e-3  # max |difference| / (1 + max |x|)
    config.min_timing_seconds = 1.5  # measured per implementation, split over the rounds
    config.max_timing_repeats = 50  # calls per implementation and round, at most
    config.timing_rounds = 3  # each implementation's best round is reported
    config.matmul_size = 2048  # float32 square matmul measured for this machine's peak
    # Independent problems in one vmapped svgd.run (each its own shifted mixture).
    config.batch = ml_collections.ConfigDict()
    config.batch.num_problems = 256
    config.batch.num_particles = 20
    config.batch.dim = 12
    config.batch.num_steps = 100
    # Demo: a 2-D bimodal target, SVGD vs gradient from one initial set.
    config.demo = ml_collections.ConfigDict()
    config.demo.num_particles = 100
    config.demo.num_steps = 500
    config.demo.learning_rate = 0.05
    config.demo.separation = 3.0
    if variant == "tiny":
        config.num_particles = (20, 70)
        config.dims = (4,)
        config.min_timing_seconds = 0.01
        config.max_timing_repeats = 3
        config.steps_per_call = 2
        config.batch.num_problems = 4
        config.batch.num_steps = 3
        config.timing_rounds = 2
        config.matmul_size = 256
        config.demo.num_particles = 40
        config.demo.num_steps = 60
    elif variant == "demo":
        config.mode = "demo"
    elif variant != "default":
        raise ValueError(f"config variant: unknown {variant!r}; allowed: default, tiny, demo")
    return config
