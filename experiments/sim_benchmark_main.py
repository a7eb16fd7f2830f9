"""MuJoCo benchmark: labelled executions/s and render ms per scene; results.json, results.md.

Usage:
  python -m experiments.sim_benchmark_main --config=experiments/configs/sim_benchmark.py \
      --workdir=workdirs/sim_benchmark
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import sim_benchmark
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/sim_benchmark.py", "Benchmark config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/sim_benchmark", "Output folder.")


def main(argv):
    """Run the benchmark and print its Markdown table."""
    runtime.configure_process()
    del argv
    logging.info("config:\n%s", _CONFIG.value)
    print(sim_benchmark.markdown(sim_benchmark.run(_CONFIG.value, _WORKDIR.value)))


if __name__ == "__main__":
    app.run(main)
