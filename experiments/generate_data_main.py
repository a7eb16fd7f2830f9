r"""Generates Transition datasets per task and split: the command line of experiments.generate_data.

Usage:
  python -m experiments.generate_data_main --config=experiments/configs/generate_data.py \
      --workdir=workdirs/data [--render]

Writes <workdir>/<task>/<split>/ (dataset shards + metadata.json, resumable), the measured
train/OOD comparison distribution_shift.md, results.json, and with --render figures/*.png.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import generate_data
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/generate_data.py", "generate_data config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/generate_data", "Output folder.")
_RENDER = flags.DEFINE_bool("render", False, "Also draw a few transitions as PNG figures.")


def main(argv):
    """Generates the datasets and logs the kept counts."""
    runtime.configure_process()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    results = generate_data.run(config, _WORKDIR.value, _RENDER.value)
    for task_name, by_split in results["summaries"].items():
        for split, summary in by_split.items():
            logging.info("%s/%s: kept %d of %d", task_name, split, summary["kept"],
                         summary["attempted"])


if __name__ == "__main__":
    app.run(main)
