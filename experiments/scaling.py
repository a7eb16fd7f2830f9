"""Scaling study: generation time against state particles N and devices, one file per row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from f2p import generation, runtime, sharding, synthetic_failure
from f2p.generation import GenerationConfig
from f2p.io import reporting
from f2p.io.config import as_named_tuple
from f2p.objectives import ObjectiveConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAN_FILE = "plan.json"
"""The resolved config and the rows to run, written by the parent and read by its workers."""
TABLE_COLUMNS = {"generator": "generator", "num_states": "N", "num_actions": "M",
                 "num_devices": "devices", "compile_seconds": "compile s", "run_seconds": "run s",
                 "per_particle_ms": "per-particle ms", "cpu_seconds": "cpu s",
                 "cpu_per_wall": "cpu/wall", "repeats": "repeats", "load_average": "load"}
"""Row fields of the results.md table and their headers."""
FORCE_FLAG = "--xla_force_host_platform_device_count"


def physical_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What a row's timing depends on besides (generator, N, devices).

    A stored row with other settings is measured again rather than reused; repeats and
    max_row_seconds only change how precisely a row is timed, so they are left out.
    """
    return {"checkpoint": os.path.abspath(config.checkpoint), "seed": config.seed,
            "failure_seed": config.failure_seed, "num_objects": config.num_objects,
            "num_actions": config.num_actions,
            "objective": config.objective.to_dict(), "generation": config.generation.to_dict()}


def device_counts(config: ml_collections.ConfigDict, platform: str, available: int) -> list[int]:
    """The rows' device counts: forced host devices on CPU; else those available, and all."""
    counts = sorted({int(count) for count in config.device_counts})
    if not counts or counts[0] < 1:
        raise ValueError(f"config.device_counts: positive integers needed, got "
                         f"{config.device_counts}")
    if platform == "cpu":
        return counts
    return sorted({count for count in counts if count <= available} | {available})


def plan_rows(config: ml_collections.ConfigDict, counts: list[int]) -> list[dict[str, Any]]:
    """Every (N, devices, generator) row in run order; N not divisible by devices skipped.

    N is the outer loop, so that a study stopped early (large N takes hours on a CPU) holds
    complete device and generator comparisons for the N it reached.
    """
    for name in config.generators:
        generation.check_generator(name)
    return [{"generator": name, "num_states": int(num), "num_devices": count}
            for num in sorted(config.num_states) for count in counts for name in config.generators
            if int(num) % count == 0]


def row_path(workdir: str, row: dict[str, Any]) -> str:
    """workdir/rows/GENERATOR-nN-dDEVICES.json."""
    return os.path.join(workdir, "rows", f"{row['generator']}-n{row['num_states']}-"
                                         f"d{row['num_devices']}.json")


def load_row(workdir: str, row: dict[str, Any], wanted: dict[str, Any]) -> dict | None:
    """The stored row, or None when missing, unreadable or measured with other settings."""
    try:
        with open(row_path(workdir, row)) as file:
            stored = json.load(file)
    except (OSError, ValueError):
        return None
    return stored if stored.get("settings") == json.loads(reporting.to_json(wanted)) else None


def _worker_env(platform: str, count: int) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
        ROOT, os.environ.get("PYTHONPATH")])))
    if platform == "cpu":  # JAX fixes the device count when it starts: one process per count
        flags = [flag for flag in env.get("XLA_FLAGS", "").split()
                 if not flag.startswith(FORCE_FLAG)]
        env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join([*flags, f"{FORCE_FLAG}={count}"]))
    return env


WORKER = """
import resource, sys
limit = int(float(sys.argv[4]) * 2**30)
if limit > 0:  # before JAX starts; RLIMIT_DATA covers malloc and anonymous mmap
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
from experiments import scaling
scaling.worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""
"""A worker process: its memory cap (a row past it fails alone rather than waking the OOM
killer of a shared machine), then worker(workdir, devices, N). The cap is set by the child
itself: a preexec_fn would fork the multithreaded parent."""


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Measures every missing row (a worker process per device count), then writes reports.

    Writes workdir/rows/*.json (one per row, as it finishes), results.json, results.md and
    scaling.png, each atomically. A rerun reuses rows stored with the same settings.

    Raises:
      ValueError: a bad config (variant fields, generator names, device counts).
      FileNotFoundError: no exported model at config.checkpoint.
      RuntimeError: a worker failed (after the reports of the rows that exist are written).
    """
    import jax

    if int(config.repeats) < 1:
        raise ValueError(f"config.repeats: must be >= 1, got {config.repeats}")
    if not config.checkpoint or not os.path.isdir(config.checkpoint):
        raise FileNotFoundError(f"config.checkpoint: no model folder at {config.checkpoint!r}")
    as_named_tuple(config.objective, ObjectiveConfig, "objective")  # typos fail here, not later
    as_named_tuple(config.generation, GenerationConfig, "generation")
    platform, available = jax.default_backend(), len(jax.devices())
    rows = plan_rows(config, device_counts(config, platform, available))
    wanted = settings(config)
    workdir = os.path.abspath(workdir)
    resolved = ml_collections.ConfigDict(config.to_dict())
    resolved.checkpoint = os.path.abspath(config.checkpoint)
    reporting.write_json(os.path.join(workdir, PLAN_FILE),
                         {"config": resolved, "settings": wanted, "rows": rows})
    pending = [row for row in rows if load_row(workdir, row, wanted) is None]
    logging.info("%d rows planned, %d stored, %d to measure", len(rows), len(rows) - len(pending),
                 len(pending))
    failed, started = [], time.perf_counter()
    groups = list(dict.fromkeys((row["num_states"], row["num_devices"]) for row in pending))
    # A worker process per (N, device count): its device count is fixed when JAX starts.
    for index, (num, count) in enumerate(groups):
        command = [sys.executable, "-c", WORKER, workdir, str(count), str(num),
                   str(config.worker_memory_gb)]
        logging.info("worker: N=%d on %d %s device(s)", num, count, platform)
        if subprocess.run(command, env=_worker_env(platform, count), cwd=ROOT).returncode:
            logging.error("the worker for N=%d, %d device(s) failed; rows it stored are kept",
                          num, count)
            failed.append((num, count))
        # Reports after every worker: a study stopped early has its table and figure.
        stored = write_reports(workdir, resolved, platform, rows, wanted)["rows"]
        if stored:
            compile_s = float(np.median([row["compile_seconds"] for row in stored]))
            particle_s = float(np.median([row["run_seconds"] / row["num_states"]
                                          for row in stored]))
            left = [row for row in pending if (row["num_states"], row["num_devices"])
                    in groups[index + 1:]]
            eta = sum(estimate_seconds(row["num_states"], compile_s, particle_s, config)
                      for row in left)
            logging.info("progress: %d of %d rows stored, %.1f min this session; %.1f ms per "
                         "particle and run, compile %.0f s (medians); ETA %.0f min",
                         len(stored), len(rows), (time.perf_counter() - started) / 60,
                         1e3 * particle_s, compile_s, eta / 60)
    results = write_reports(workdir, resolved, platform, rows, wanted)
    if failed:
        raise RuntimeError(f"scaling: the workers for (N, devices) {failed} failed; "
                           f"{len(results['missing'])} rows missing (rerun to resume)")
    return results


def write_reports(workdir: str, config: ml_collections.ConfigDict, platform: str,
                  rows: list[dict[str, Any]], wanted: dict[str, Any]) -> dict[str, Any]:
    """Writes results.json, results.md and scaling.png from the stored rows; returns results."""
    measured = [stored for row in rows if (stored := load_row(workdir, row, wanted))]
    done = [_key(stored) for stored in measured]
    results = {"config": config, "environment": reporting.environment(), "platform": platform,
               "physical_cores": physical_cores(), "rows": measured,
               "missing": [row for row in rows if row not in done], "figures": ["scaling.png"]}
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    reporting.write_text(os.path.join(workdir, "results.md"), markdown_report(results))
    if measured:
        draw_figure(os.path.join(workdir, "scaling.png"), measured)
    return results


def estimate_seconds(num_states: int, compile_seconds: float, particle_seconds: float,
                     study: ml_collections.ConfigDict) -> float:
    """A row's predicted wall time: its compile, then measure_row's runs of N particles each.

    Run time grows about linearly with N, while compile time hardly depends on it: an ETA
    proportional to N alone is ten times too long when small rows come first.
    """
    first = particle_seconds * num_states
    if first >= study.max_row_seconds:
        return compile_seconds + first
    timed = 1
    while timed < study.repeats and first * (timed + 1) < study.max_row_seconds:
        timed += 1
    return compile_seconds + first * (1 + timed)


def _key(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in ("generator", "num_states", "num_devices")}


def worker(workdir: str, count: int, num_states: int) -> None:
    """Measures the plan's missing rows of N = num_states on `count` devices (own process)."""
    runtime.configure_process()  # before the first JAX computation
    logging.set_verbosity(logging.INFO)  # no absl flags are parsed here
    import jax

    from isaac_bridge.episodes import load_model

    with open(os.path.join(workdir, PLAN_FILE)) as file:
        plan = json.load(file)
    config = ml_collections.ConfigDict(plan["config"])
    if len(jax.devices()) < count:
        raise RuntimeError(f"worker: {count} devices wanted, {len(jax.devices())} present")
    model, params, num_points, _ = load_model(config)
    objective = as_named_tuple(config.objective, ObjectiveConfig, "objective")._replace(
        num_points=num_points)
    base = as_named_tuple(config.generation, GenerationConfig, "generation")._replace(
        num_actions=int(config.num_actions))
    failure = synthetic_failure.make_failure(config.failure_seed, num_points,
                                             config.num_objects)
    data = synthetic_failure.failure_data(failure, objective)
    mesh = None if count == 1 else sharding.particle_mesh(jax.devices()[:count])
    key = jax.random.PRNGKey(config.seed)
    mine = [row for row in plan["rows"] if (row["num_devices"], row["num_states"]) == (
        count, num_states) and load_row(workdir, row, plan["settings"]) is None]
    for row in mine:
        gen_config = base._replace(num_states=row["num_states"])
        measured = measure_row(row["generator"], key, model, params, data, objective,
                               gen_config, mesh, config)
        measured.update(row, platform=jax.default_backend(),
                        device_kind=jax.devices()[0].device_kind,
                        forced_host_devices=jax.default_backend() == "cpu",
                        physical_cores=physical_cores(), cpu_count=os.cpu_count(),
                        load_average=os.getloadavg()[0], jax=jax.__version__,
                        settings=plan["settings"])
        reporting.write_json(row_path(workdir, row), measured)
        generation.clear_compiled()  # one compilation per row: none is used again
        logging.info("%s N=%d, %d device(s): compile %.1f s, run %.3f s (median of %d), "
                     "%.3f ms/particle, load average %.1f", row["generator"], num_states, count,
                     measured["compile_seconds"], measured["run_seconds"], measured["repeats"],
                     measured["per_particle_ms"], measured["load_average"])


def measure_row(name: str, key, model, params, data, objective: ObjectiveConfig,
                config: GenerationConfig, mesh, study: ml_collections.ConfigDict
                ) -> dict[str, Any]:
    """Compile time, then the median wall time of up to `repeats` runs after a warm-up run.

    A first run longer than max_row_seconds is the only timed run: at minutes per run, what
    a warm-up removes (first-touch allocation) is lost in the noise, and a repeat doubles
    the row's cost.
    """
    particles, first = generation.generate_particles(name, key, model, params, data, objective,
                                                     config, mesh)
    long = first["seconds"] >= study.max_row_seconds
    runs = [first] if long else []
    while not runs or (len(runs) < study.repeats and first["seconds"] + sum(
            run["seconds"] for run in runs) < study.max_row_seconds):
        runs.append(generation.generate_particles(name, key, model, params, data, objective,
                                                  config, mesh)[1])
    seconds = float(np.median([run["seconds"] for run in runs]))
    cpu_seconds = float(np.median([run["cpu_seconds"] for run in runs]))
    num, actions = config.num_states, config.num_actions
    return {"num_actions": actions, "state_steps": config.state_steps,
            "action_steps": config.action_steps, "compile_seconds": first["compile_seconds"],
            "first_run_seconds": first["seconds"], "run_seconds": seconds,
            "run_seconds_all": [run["seconds"] for run in runs], "cpu_seconds": cpu_seconds,
            "cpu_per_wall": cpu_seconds / seconds, "repeats": len(runs), "first_run_timed": long,
            "per_particle_ms": 1e3 * seconds / num, "per_pair_ms": 1e3 * seconds / (num * actions),
            "devices_spanned": sharding.num_devices_spanned(particles.states),
            "finite": bool(np.isfinite(np.asarray(particles.states)).all()
                           and np.isfinite(np.asarray(particles.actions)).all())}


def markdown_report(results: dict[str, Any]) -> str:
    """The results.md text: what was measured and how, then the table."""
    config, rows = results["config"], sorted(
        results["rows"], key=lambda r: (r["generator"], r["num_states"], r["num_devices"]))
    steps = config["generation"]
    cpu = results["platform"] == "cpu"
    notes = [f"Platform `{results['platform']}`, {results['physical_cores']} physical cores "
             f"(os.cpu_count {results['environment']['cpu_count']}), jax "
             f"{results['environment']['versions']['jax']}.",
             f"M = {config['num_actions']} actions per state for every N, so stage 2 (N x M "
             "action chains) grows with N alone; steps: "
             f"{steps.get('state_steps', 60)} state, {steps.get('action_steps', 40)} action.",
             "compile s is timed apart; run s is the median of the timed runs (repeats) after "
             "a warm-up run (a first run past max_row_seconds is the one timed run); "
             "per-particle ms = run s / N; load: the machine's 1-minute load average when "
             "the row finished (other processes share the cores); cpu s: the run's process "
             "CPU time over all threads (median), which neither that load nor the process "
             "being stopped inflates (run s counts both); cpu/wall: cores kept busy.",
             "devices = 1 is the unsharded program; more split the N axis over a 1-D mesh."]
    if cpu:
        notes.append(f"`cpu` devices are forced host devices ({FORCE_FLAG}), all sharing the "
                     f"same {results['physical_cores']} cores. Each device's partition runs on "
                     "its own thread, so up to that many devices can keep more cores busy than "
                     "one device does (compare cpu/wall); past it they add no compute, and the "
                     "rows measure the sharded program's overhead.")
    if results["missing"]:
        notes.append(f"{len(results['missing'])} planned rows are not measured yet.")
    formats = {"compile s": ".1f", "run s": ".3f", "per-particle ms": ".3f", "cpu s": ".3f",
               "cpu/wall": ".2f", "load": ".1f"}
    table = [{header: row.get(field) for field, header in TABLE_COLUMNS.items()}
             for row in rows]
    return ("# Generation time against particles and devices\n\n"
            + "".join(f"- {note}\n" for note in notes) + "\n"
            + reporting.markdown_table(table, list(TABLE_COLUMNS.values()), formats))


def draw_figure(path: str, rows: list[dict[str, Any]]) -> None:
    """Log-log run time and per-particle time against N, a line per (generator, devices)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"svgd": "-", "gradient": "--"}
    for name, count in sorted({(r["generator"], r["num_devices"]) for r in rows}):
        points = sorted((r["num_states"], r["run_seconds"], r["per_particle_ms"]) for r in rows
                        if r["generator"] == name and r["num_devices"] == count)
        num, seconds, per = zip(*points, strict=True)
        label = f"{name}, {count} device{'s' if count > 1 else ''}"
        axes[0].plot(num, seconds, styles.get(name, ":") + "o", label=label)
        axes[1].plot(num, per, styles.get(name, ":") + "o", label=label)
    axes[0].set(ylabel="run s per generation", title="generation time (log-log)",
                yscale="log")
    # Linear y: a flat line is linear scaling, and the spread is a few tens of percent.
    axes[1].set(ylabel="ms per state particle", title="time per particle", ylim=(0, None))
    sizes = sorted({r["num_states"] for r in rows})
    for axis in axes:
        axis.set(xscale="log", xlabel="state particles N")
        axis.set_xticks(sizes, [str(size) for size in sizes])
        axis.xaxis.set_minor_locator(ticker.NullLocator())
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    reporting.save_figure(path, figure)
