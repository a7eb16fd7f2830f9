# One-command set-up: `make test` and `make demo` create .venv and install everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKDIR ?= workdirs/demo

.PHONY: test demo svgd-demo report lint sysdeps clean

# Open3D's import needs libusb-1.0 (Debian package libusb-1.0-0). Install it when we are root;
# otherwise stop with a message that says what to do.
sysdeps:
	@if ! ldconfig -p | grep -q 'libusb-1.0.so.0'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing libusb-1.0-0 (needed by Open3D)"; \
	    (apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null && apt-get install -y -qq libusb-1.0-0 >/dev/null)) || \
	    { echo "ERROR: could not apt-get install libusb-1.0-0, which Open3D needs." >&2; exit 1; }; \
	  else \
	    echo "ERROR: Open3D needs libusb-1.0 (Debian: sudo apt-get install libusb-1.0-0)." >&2; exit 1; \
	  fi; \
	fi

$(STAMP): setup.cfg pyproject.toml | sysdeps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

test: sysdeps $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --durations=20 tests

# The main job: one OOD transport failure taken from detection to a recovered task (Fail2Progress
# with SVGD, the committed base model, MuJoCo); report in $(WORKDIR)/results.md.
demo: sysdeps $(STAMP)
	$(PY) -m experiments.fail2progress_main --config=experiments/configs/fail2progress.py:demo --workdir=$(WORKDIR)

# The SVGD toy benchmark (what `make demo` ran before Fail2Progress existed).
svgd-demo: sysdeps $(STAMP)
	$(PY) -m experiments.svgd_benchmark_main --config=experiments/configs/svgd_benchmark.py:demo --workdir=workdirs/svgd_demo

# One Markdown report of every experiment's latest results (reports/report.md and its figures);
# a section whose workdir has no results.json yet says so and names its command.
report: $(STAMP)
	$(PY) -m experiments.report_main --config=experiments/configs/report.py --output_dir=reports

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
