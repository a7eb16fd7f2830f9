"""The base agent plays seeded episodes in the real world: results.json, results.md, PNG."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import evaluate
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/evaluate.py", "Evaluation config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/evaluate", "Output folder.")


def main(argv):
    """Runs experiments.evaluate.run with the parsed config."""
    runtime.configure_process()
    del argv
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    evaluate.run(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
