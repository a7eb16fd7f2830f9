"""The one report of every experiment's latest results: <output_dir>/report.md and figures."""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import report

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/report.py", "Report config (variant after ':').")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "reports",
                                  "Output folder (replaced whole: report.md and figures/).")


def main(argv):
    """Runs experiments.report.build with the parsed config."""
    del argv
    config = _CONFIG.value
    logging.info("config:\n%s", config)
    written = report.build(config, _OUTPUT_DIR.value)
    logging.info("sections: %s", ", ".join(f"{name} {status}"
                                           for name, status in written["sections"].items()))


if __name__ == "__main__":
    app.run(main)
