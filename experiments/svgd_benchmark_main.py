"""SVGD benchmark (f2p vs blackjax vs NumPy) and bimodal demo: results.json, results.md, PNGs."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import svgd_benchmark
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/svgd_benchmark.py", "Benchmark config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/svgd_benchmark", "Output folder.")


def main(argv):
    """Runs the benchmark or the demo selected by config.mode."""
    runtime.configure_process()
    del argv
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    if config.mode == "demo":
        svgd_benchmark.run_demo(config, _WORKDIR.value)
    elif config.mode == "benchmark":
        svgd_benchmark.run_benchmark(config, _WORKDIR.value)
    else:
        raise ValueError(f"config.mode: unknown {config.mode!r}; allowed: benchmark, demo")


if __name__ == "__main__":
    app.run(main)
