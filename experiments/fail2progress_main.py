"""Fail2Progress against its baselines on detected OOD failures: results.json, .md, PNGs."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import fail2progress
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/fail2progress.py", "Fail2Progress config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/fail2progress", "Output folder.")


def main(argv):
    """Runs experiments.fail2progress.run with the parsed config."""
    runtime.configure_process()
    del argv
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    fail2progress.run(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
