"""Sim2Real study from absl flags: success and classification against the reality gap."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import sim2real
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/sim2real.py", "Sim2Real config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/sim2real", "Output folder.")


def main(argv):
    """Runs every gap level of the config (resuming from its files)."""
    runtime.configure_process()
    del argv
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    sim2real.run(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
