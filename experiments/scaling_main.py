"""Scaling study: generation time against state particles and devices (results.json, .md, PNG)."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import scaling
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/scaling.py", "Study config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/scaling", "Output folder (rows resume).")


def main(argv):
    """Measures the missing rows of the configured study, then writes its reports."""
    runtime.configure_process()
    del argv
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    scaling.run(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
