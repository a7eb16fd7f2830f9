"""Fail2Progress against its baselines: collect OOD failures, recover each with every method.

run(config, workdir) plays OOD episodes (failure_seed) until each task has num_failures
failures of the repaired classes, then runs every (failure, method) unit: recovery (the failed
episode continues), retry (the same scene afresh with the repaired model), future OOD and
retention (fresh episodes of eval_seed, whole plans). Every unit is its own JSON file, so a
stopped run resumes (with config.only_existing, the units on disk are tabulated and no new one
is played); results.md/json and figures come from experiments.fail2progress_report.
"""

from __future__ import annotations

import os
import time
from typing import Any

from absl import logging

from experiments import fail2progress_report as report
from f2p import planner, tasks
from f2p.io.config import parse_list
from isaac_bridge.loop import (
    ORACLE,
    base_evaluation,
    collect,
    make_setup,
    method_names,
    read_or_make,
    repair_config,
    run_unit,
    unit_name,
)


def run(config, workdir: str) -> dict[str, Any]:
    """Collects failures, runs every (failure, method) unit, writes the results and figures.

    Returns:
      The results dict written to results.json.
    """
    names = parse_list(config.tasks, tasks.task_names(), "tasks")
    methods = method_names(config) + ([ORACLE] if config.oracle else [])
    repair_config(config)
    planner.as_planner_config(config.planner)
    for folder in ("collect", "units", "base", "generated", "failures"):
        os.makedirs(os.path.join(workdir, folder), exist_ok=True)
    started = time.perf_counter()
    setup = make_setup(config, workdir, names)
    collected = {name: collect(name, setup, config, workdir) for name in names}
    base = {name: base_evaluation(name, setup, config, workdir) for name in names}
    # Methods in the outer loop: a stopped run has every task's svgd units before the rest.
    work = [(name, entry, method) for method in methods for name in names
            for entry in collected[name] if entry["kept"]]
    units, done, missing = [], 0, 0
    for index, (name, entry, method) in enumerate(work):
        path = os.path.join(workdir, "units", unit_name(entry["name"], method) + ".json")
        fresh = not os.path.exists(path)
        if fresh and config.only_existing:
            missing += 1
            continue
        units.append(read_or_make(path, lambda entry=entry, method=method, name=name:
                                   run_unit(entry, method, setup, config, workdir, base[name])))
        if fresh:
            done += 1
            rate = done / (time.perf_counter() - started)
            logging.info("[%d/%d] %s %s: recovery %s | %.4f units/s, ETA %.0f s", index + 1,
                         len(work), entry["name"], method, units[-1]["recovery"], rate,
                         (len(work) - index - 1) / rate)
    partial = (f"{len(units)} of {len(work)} units on disk (only_existing)" if missing
               else None)
    results = report.write(workdir, config, collected, base, units,
                           time.perf_counter() - started, partial)
    return results
