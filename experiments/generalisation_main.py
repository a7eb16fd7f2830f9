"""Generalisation study from absl flags: 3-object repairs played on more objects."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import generalisation
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/generalisation.py", "Generalisation config (variant after "
    "':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/generalisation", "Output folder.")


def main(argv):
    """Collects, repairs and evaluates at every count of the config (resuming from its files)."""
    runtime.configure_process()
    del argv
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    generalisation.run(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
