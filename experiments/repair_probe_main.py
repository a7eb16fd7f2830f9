"""What one repair teaches, per fine-tune setting, on held-out OOD transitions."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import repair_probe
from f2p import runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/repair_probe.py", "Probe config (variant after ':').")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/repair_probe", "Output folder.")


def main(argv):
    """Runs experiments.repair_probe.run with the parsed config."""
    runtime.configure_process()
    del argv
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    repair_probe.run(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
