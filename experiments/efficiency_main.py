"""Efficiency study: generation time per generator vs object count (results.json/md, PNG)."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import efficiency
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/efficiency.py", "Study config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/efficiency", "Output folder.")


def main(argv):
    """Collects one failure per task and object count, then times every generator on it."""
    runtime.configure_process()
    del argv
    logging.info("config:\n%s", _CONFIG.value)
    efficiency.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
