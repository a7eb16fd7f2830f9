"""Pretrains the base skill-effect model; writes results and optionally exports a checkpoint.

Usage:
  python -m experiments.pretrain_main --config=experiments/configs/pretrain.py \
      --workdir=workdirs/pretrain --config.export_dir=checkpoints/base
"""

import shlex
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import pretrain
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/pretrain.py", "Pretrain config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/pretrain", "Output folder (resumable).")


def main(argv):
    """Runs pretrain.run with the parsed config and logs the ID vs OOD summary."""
    runtime.configure_process()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    command = "python -m experiments.pretrain_main " + shlex.join(sys.argv[1:])
    results = pretrain.run(config, _WORKDIR.value, command=command)
    for name, by_split in results["metrics"].items():
        logging.info("%s: F1 t+1 ID %.3f, OOD %.3f", name, by_split["id"]["f1_t1"]["f1/macro"],
                     by_split["ood"]["f1_t1"]["f1/macro"])


if __name__ == "__main__":
    app.run(main)
