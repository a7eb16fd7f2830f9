"""Efficiency study: generation time of svgd, gradient and sampling vs object count.

run(config, workdir) collects the first detected OOD failure per task and object count (the
repair loop's collection, isaac_bridge.loop) and times every generator on it at the same label
budget N x M: compile time apart, then the median of `repeats` runs with fresh keys. Sampling
runs until its N states pass the rejection test or its draw bound; its attempts and acceptance
rate are recorded, and where the bound cut it short its time to fill the budget is projected from
the acceptance (fill_seconds). Every (task, count, generator) cell is its own JSON file under
rows/, so a stopped run resumes.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from f2p import generation, tasks
from f2p.io import failures, reporting
from f2p.io.config import as_named_tuple, parse_list
from f2p.objectives import ObjectiveConfig, check_objective_config
from f2p.repair import failure_data
from isaac_bridge import loop

COLUMNS = ("task", "objects", "generator", "compile_s", "seconds", "vs_svgd", "attempts",
           "accepted", "acceptance", "fill", "fill_s", "fill_range", "fill_vs_svgd", "diversity")


def fill_seconds(seconds: list[float], attempts: list[int], accepted: list[int],
                 num_states: int) -> dict[str, Any]:
    """Sampling's time to fill all num_states slots: measured, or projected from its rate.

    When every run filled its slots the fill time is the measured median. Otherwise the runs
    hit the draw bound, and the time to fill is projected as num_states / acceptance proposals
    at the measured seconds per proposal (sum of seconds / sum of attempts over the runs), with
    the range from the 95 % Wilson interval of the acceptance. With no accepted state only the
    lower end is known: fill_s and fill_high are None.

    Returns:
      {"fill_s", "fill_low", "fill_high", "fill": "measured" | "projected"}.
    """
    if min(accepted) >= num_states:
        median = float(np.median(seconds))
        return {"fill_s": median, "fill_low": median, "fill_high": median, "fill": "measured"}
    total_attempts, total_accepted = int(np.sum(attempts)), int(np.sum(accepted))
    if total_attempts <= 0:
        raise ValueError(f"attempts: sampling evaluated no proposal ({attempts})")
    per_proposal = float(np.sum(seconds)) / total_attempts
    low, high = reporting.wilson_interval(total_accepted, total_attempts)

    def projected(acceptance: float) -> float | None:
        return num_states / acceptance * per_proposal if acceptance > 0 else None

    return {"fill_s": projected(total_accepted / total_attempts), "fill_low": projected(high),
            "fill_high": projected(low), "fill": "projected"}


def settings(config) -> tuple[ObjectiveConfig, generation.GenerationConfig]:
    """The objective and generation configs of config, checked."""
    objective = check_objective_config(as_named_tuple(config.objective, ObjectiveConfig,
                                                      "objective"))
    return objective, generation.check_generation_config(as_named_tuple(
        config.generation, generation.GenerationConfig, "generation"))


def time_generator(name: str, model, params, data, objective, config, repeats: int
                   ) -> dict[str, Any]:
    """Compile time and the median wall time of `repeats` runs of one generator on one failure.

    The first call compiles (or reuses an executable of the same shapes: compile_s 0) and is
    not timed; the timed runs use keys 1..repeats.
    """
    _, first = generation.generate_particles(name, jax.random.PRNGKey(0), model, params, data,
                                             objective, config)
    seconds, runs = [], []
    for index in range(1, repeats + 1):
        particles, timing = generation.generate_particles(
            name, jax.random.PRNGKey(index), model, params, data, objective, config)
        seconds.append(timing["seconds"])
        runs.append(particles)
    attempts = [int(p.attempts) for p in runs]
    accepted = [int(np.sum(np.asarray(p.accepted))) for p in runs]
    poses = generation.state_poses(data, runs[-1].states, objective.yaw_scale)
    row = {"generator": name, "compile_s": first["compile_seconds"],
           "seconds": float(np.median(seconds)), "all_seconds": seconds,
           "budget": config.num_states * config.num_actions,
           "diversity": generation.diversity(poses, np.asarray(data.movable),
                                             objective.yaw_scale)}
    if name == "sampling":
        # accepted <= N slots filled; once full the sampler stops drawing, so filled/attempts
        # is the acceptance rate up to the last draw's surplus.
        row.update(attempts=float(np.median(attempts)), accepted=float(np.median(accepted)),
                   acceptance=float(np.sum(accepted) / max(np.sum(attempts), 1)),
                   filled=bool(min(accepted) == config.num_states),
                   **fill_seconds(seconds, attempts, accepted, config.num_states))
    else:  # every state is generated: the fill time is the generation time
        row.update(fill_s=row["seconds"], fill="measured")
    return row


def first_failure(name: str, count: int, setup: loop.Setup, config, workdir: str):
    """(entry, Failure) of the first detected failure at `count` objects, or (None, None)."""
    entries = loop.collect(name, setup, config, workdir, object_count=count)
    for entry in entries:
        if entry["kept"]:
            path = os.path.join(workdir, "failures", entry["failure_file"])
            return entry, failures.load_failure(path)
    return None, None


def run(config, workdir: str) -> dict[str, Any]:
    """Times every generator on one failure per task and object count; writes the results.

    Returns:
      The results dict written to results.json.
    """
    names = parse_list(config.tasks, tasks.task_names(), "tasks")
    counts = parse_list(config.object_counts, tasks.OBJECT_COUNTS, "object_counts", int)
    generators = parse_list(config.generators, generation.TARGETED, "generators")
    if int(config.repeats) < 1:
        raise ValueError(f"repeats: must be >= 1, got {config.repeats}")
    objective, gen_config = settings(config)
    os.makedirs(os.path.join(workdir, "rows"), exist_ok=True)
    setup = loop.make_setup(config, workdir, names, repairers=False)
    cells = [(name, count, generator) for name in names for count in counts
             for generator in generators]
    rows, started, done = [], time.perf_counter(), 0
    for index, (name, count, generator) in enumerate(cells):
        path = os.path.join(workdir, "rows", f"{name}-n{count}-{generator}.json")
        fresh = not os.path.exists(path)

        def make(name=name, count=count, generator=generator):
            entry, failure = first_failure(name, count, setup, config, workdir)
            if failure is None:
                return {"task": name, "objects": count, "generator": generator,
                        "failure": None, "note": "no detected failure in the OOD episodes"}
            data = failure_data(setup.model, setup.params, failure,
                                loop.camera_positions(failure.belief_before), objective)
            row = time_generator(generator, setup.model, setup.params, data, objective,
                                 gen_config, int(config.repeats))
            return {"task": name, "objects": count, "failure": entry["name"],
                    "failure_class": entry["predicted_class"], **row}

        rows.append(loop.read_or_make(path, make))
        if fresh:
            done += 1
            rate = done / (time.perf_counter() - started)
            logging.info("[%d/%d] %s n%d %s: %.3f s | %.3f cells/s, ETA %.0f s", index + 1,
                         len(cells), name, count, generator, rows[-1].get("seconds", np.nan),
                         rate, (len(cells) - index - 1) / rate)
    return write(workdir, config, rows)


def _fill_range(row: dict[str, Any]) -> str | None:
    """"low-high" seconds of a projected fill time ("> low" when nothing was accepted)."""
    if row.get("fill") != "projected":
        return None
    if row["fill_high"] is None:
        return f"> {row['fill_low']:.0f}"
    return f"{row['fill_low']:.0f}-{row['fill_high']:.0f}"


def _with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds vs_svgd (seconds / svgd's), fill_vs_svgd (fill time / svgd's) and fill_range."""
    svgd_seconds = {(r["task"], r["objects"]): r["seconds"] for r in rows
                    if r["generator"] == "svgd" and "seconds" in r}

    def ratio(value, reference):
        return value / reference if reference and value is not None else None

    out = []
    for row in rows:
        reference = svgd_seconds.get((row["task"], row["objects"]))
        fill = row.get("fill_s")
        if row.get("fill") == "projected" and fill is None:  # lower bound only
            fill = row["fill_low"]
        out.append({**row, "vs_svgd": ratio(row.get("seconds"), reference),
                    "fill_vs_svgd": ratio(fill, reference), "fill_range": _fill_range(row)})
    return out


def write(workdir: str, config, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """results.json, results.md (one row per task x count x generator) and times.png."""
    rows = _with_ratios(rows)
    _, gen_config = settings(config)
    results = {"config": config.to_dict(), "environment": reporting.environment(),
               "rows": rows, "figures": ["times.png"]}
    formats = {"compile_s": ".1f", "seconds": ".3f", "vs_svgd": ".2f", "attempts": ".0f",
               "accepted": ".0f", "acceptance": ".4f", "fill_s": ".1f", "fill_vs_svgd": ".2f",
               "diversity": ".4f"}
    lines = ["# Efficiency: generation time vs object count", "",
             f"Label budget N x M = {gen_config.num_states} x {gen_config.num_actions} per "
             f"generator; seconds = median of {config.repeats} runs after the compile "
             "(compile_s 0: an executable of the same shapes was reused); vs_svgd = seconds / "
             f"svgd's on the same failure. Sampling draws {gen_config.sampling_batch} proposals "
             f"at a time until N states pass its test or {gen_config.sampling_max_draws} draws; "
             "attempts = proposals evaluated, accepted = states filled (median), acceptance = "
             "filled / attempts over the runs. fill_s = seconds to fill all N states: measured "
             "where every run filled them (svgd and gradient always do), else projected as "
             "N / acceptance proposals at the measured seconds per proposal, fill_range from "
             "the acceptance's 95 % Wilson interval; with no accepted state only a lower bound "
             "is known (fill_range '> x', and fill_vs_svgd is that bound's ratio).", "",
             reporting.markdown_table(rows, COLUMNS, formats),
             "![times](times.png)", ""]
    environment = results["environment"]
    lines.append(f"jax {environment['versions']['jax']}, devices {environment['devices']}, "
                 f"{environment['cpu_count']} CPU cores.")
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    reporting.write_text(os.path.join(workdir, "results.md"), "\n".join(lines) + "\n")
    _figure(os.path.join(workdir, "times.png"), rows)
    return results


def _figure(path: str, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({row["task"] for row in rows})
    figure, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.4), squeeze=False)
    generators = sorted({row["generator"] for row in rows})
    colours = {generator: f"C{index}" for index, generator in enumerate(generators)}
    for axis, name in zip(axes[0], names, strict=True):
        for generator in generators:
            colour = colours[generator]
            mine = [r for r in rows if r["task"] == name and r["generator"] == generator]
            cells = sorted((r["objects"], r["seconds"]) for r in mine if "seconds" in r)
            if cells:
                bounded = " (bounded draws)" if generator == "sampling" else ""
                axis.plot(*zip(*cells, strict=True), marker="o", color=colour,
                          label=generator + bounded)
            # Where the draw bound was hit: the projected time to fill N states, its Wilson
            # range as the error bar; nothing accepted leaves only a lower bound (an up arrow).
            ranged = [r for r in mine if r.get("fill") == "projected" and r["fill_s"]]
            if ranged:
                axis.errorbar([r["objects"] for r in ranged], [r["fill_s"] for r in ranged],
                              yerr=[[r["fill_s"] - r["fill_low"] for r in ranged],
                                    [r["fill_high"] - r["fill_s"] for r in ranged]],
                              fmt="s", capsize=3, color=colour,
                              label=f"{generator}: to fill N (projected)")
            floors = [r for r in mine if r.get("fill") == "projected" and not r["fill_s"]]
            if floors:
                axis.plot([r["objects"] for r in floors], [r["fill_low"] for r in floors],
                          marker="^", markersize=9, linestyle="none", color=colour,
                          label=f"{generator}: to fill N (lower bound)")
        axis.set_yscale("log")
        axis.set_title(name)
        axis.set_xlabel("objects")
        axis.set_ylabel("generation seconds (log)")
        axis.legend(fontsize=7)
    figure.tight_layout()
    reporting.save_figure(path, figure)
