"""Lifelong repair from absl flags: success per window over a stream of OOD episodes."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import lifelong
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/lifelong.py", "Lifelong config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/lifelong", "Output folder.")


def main(argv):
    """Plays every task's stream in every mode of the config (resuming from its files)."""
    runtime.configure_process()
    del argv
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    lifelong.run(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
