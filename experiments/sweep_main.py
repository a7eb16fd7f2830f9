"""Ablation sweeps of the repair loop from absl flags (results.json/md, a figure per sweep)."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import sweep
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/sweep.py", "Sweep config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/sweep", "Output folder.")
_SWEEP = flags.DEFINE_multi_string(
    "sweep", [], "field=v1,v2,... (';' zips fields); several flags form one grid sweep that "
    "replaces config.sweeps, e.g. --sweep=generation.num_states=5,10,20,40")


def main(argv):
    """Runs the sweeps of the config, or the one grid the --sweep flags give."""
    runtime.configure_process()
    del argv
    config = _CONFIG.value
    if _SWEEP.value:
        config.sweeps = (" & ".join(_SWEEP.value),)
    logging.info("config:\n%s", config)
    sweep.run(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
