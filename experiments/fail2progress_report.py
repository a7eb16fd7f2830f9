"""Tables and figures of experiments.fail2progress: results.json, results.md, PNGs."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from f2p.fail2progress import CLASSES
from f2p.io import reporting, scores
from f2p.io.failures import load_failure
from f2p.io.scores import RATES, STAGES, summarise


def confusion(collected: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """Per task: predicted class x true class counts over every detected failure."""
    rows = []
    for task, entries in collected.items():
        detected = [e for e in entries if e["detected"]]
        row = {"task": task, "episodes": len(entries), "detected": len(detected)}
        for predicted in CLASSES:
            for truth in CLASSES:
                row[f"{predicted}|{truth}"] = sum(e["predicted_class"] == predicted
                                                  and e["true_class"] == truth
                                                  for e in detected)
        correct = row[f"{CLASSES[0]}|{CLASSES[0]}"] + row[f"{CLASSES[1]}|{CLASSES[1]}"]
        row["accuracy"] = correct / len(detected) if detected else float("nan")
        rows.append(row)
    return rows


def base_rows(base: dict[str, dict[str, list]]) -> list[dict[str, Any]]:
    """The base agent on the future OOD and retention episodes (whole plans)."""
    return [{"task": task, **{role: scores.rate(sum(e["success"] for e in episodes), len(episodes))
                              for role, episodes in roles.items()}}
            for task, roles in base.items()]


def markdown(results: dict[str, Any]) -> str:
    """results.md: the main table, timings and data, classification, base agent, notes."""
    config = results["config"]
    lines = ["# Fail2Progress: recovery from detected OOD failures", "",
             f"{config['object_count']} objects; failures from OOD episodes of seed "
             f"{config['failure_seed']}, evaluation episodes of seed {config['eval_seed']}; "
             f"N = {config['generation']['num_states']} states x M = "
             f"{config['generation']['num_actions']} actions per repair; checkpoint "
             f"`{config['checkpoint']}`; jax {results['environment']['versions']['jax']}, "
             f"MuJoCo {results['environment']['versions'].get('mujoco', '?')}, "
             f"{results['environment']['cpu_count']} CPU cores "
             f"({', '.join(results['environment']['devices'])}); {results['seconds']:.0f} s "
             "(this invocation).", "",
             reporting.finetune_settings(config), "",
             *([f"**Partial:** {results['partial']}.", ""] if results.get("partial") else []),
             "| task | method | failures | recovery | retry | future OOD | retention |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in results["rows"]:
        lines.append(f"| {row['task']} | {row['method']} | {row['failures']} | "
                     + " | ".join(scores.cell(row[r]) for r in RATES) + " |")
    lines += ["", "## Time from a detected failure to the recovered plan, and the data", "",
              "| task | method | classify s | generate s | label s | fine-tune s | replan s | "
              "total s | compile s | fine-tune compile s | labels | dropped | reproduction | "
              "diversity m | attempts | retention detections |",
              "| --- " * 16 + "|"]
    for row in results["rows"]:
        values = [row[s] for s in STAGES] + [row["total_seconds"], row["compile_seconds"],
                                             row.get("finetune_compile_seconds", np.nan),
                                             row["labels"], row["dropped"], row["reproduction"],
                                             row["diversity"], row["attempts"]]
        lines.append(f"| {row['task']} | {row['method']} | "
                     + " | ".join("-" if not np.isfinite(v) else f"{v:.2f}" for v in values)
                     + f" | {row['retention_detections']} |")
    lines += ["", "## Classification of the detected failures (predicted | true)", "",
              "| task | episodes | detected | " + " | ".join(
                  f"{p} \\| {t}" for p in CLASSES for t in CLASSES) + " | accuracy |",
              "| --- " * 8 + "|"]
    for row in results["confusion"]:
        lines.append(f"| {row['task']} | {row['episodes']} | {row['detected']} | " + " | ".join(
            str(row[f"{p}|{t}"]) for p in CLASSES for t in CLASSES)
            + f" | {row['accuracy']:.2f} |")
    lines += ["", "## Base agent on the evaluation episodes (whole plans)", "",
              "| task | future OOD | in distribution |", "| --- | --- | --- |"]
    for row in results["base"]:
        lines.append(f"| {row['task']} | {scores.cell(row['future'])} | "
                     f"{scores.cell(row['retention'])} |")
    lines += story(results)
    lines += ["", *NOTES, "", *[f"![{name}]({name})" for name in results["figures"]]]
    return "\n".join(lines) + "\n"


def story(results: dict[str, Any]) -> list[str]:
    """Markdown: the first repaired failure of each task, from detection to the outcome."""
    lines = []
    for task, entries in results["collected"].items():
        kept = [e for e in entries if e["kept"]]
        units = [u for u in results["units"] if kept and u["failure"] == kept[0]["name"]
                 and u.get("repaired")]
        if not units:
            continue
        entry, unit = kept[0], next((u for u in units if u["method"] == "repair:svgd"),
                                    units[0])
        info = unit["repair"]
        replaced = [r for r in unit["recoveries"] if r["action"] == "replace"][0]
        skills = ", ".join(f"{s['skill']}({s['obj']}" + (f" on {s['support']}"
                                                         if s["support"] >= 0 else "") + ")"
                           for s in replaced["plan"]["skills"])
        lines += ["", f"## {task}: failure `{entry['name']}`, step by step ({unit['method']})",
                  "",
                  f"1. Detected after step {entry['step']} "
                  f"({entry.get('skill', {}).get('skill', '?')}): "
                  f"{'; '.join(entry.get('mismatch', [])) or 'see the failure file'}.",
                  f"2. Real2Sim replay in the nominal simulator: `{entry['predicted_class']}` "
                  f"(ground truth `{entry['true_class']}`), so the model is repaired.",
                  f"3. Generated {info['pairs']} (state, action) pairs in "
                  f"{info['generation_seconds']:.1f} s (+{info['compile_seconds']:.1f} s compile);"
                  f" {info['reproduction']:.0%} of the states reproduce the failure's relations "
                  f"in simulation; diversity {info['diversity']:.3f} m.",
                  f"4. Labelled in MuJoCo in {info['labelling_seconds']:.1f} s: {info['labels']} "
                  f"kept, {info['dropped']} dropped ({info['label_status']}).",
                  f"5. Fine-tuned ({results['config']['finetune']['steps']} steps, replay "
                  f"fraction {results['config']['finetune']['replay_fraction']}) in "
                  f"{info['finetune_seconds']:.1f} s"
                  + (f" (+{info['finetune_compile_seconds']:.1f} s compile)."
                     if "finetune_compile_seconds" in info else "."),
                  f"6. Replanned in {replaced['plan_seconds']:.1f} s: {skills} (goal "
                  f"probability {replaced['plan']['goal_probability']:.2f}).",
                  f"7. Outcome: recovery {'succeeded' if unit['recovery'] else 'failed'}"
                  + (f" (unmet: {', '.join(unit['unmet_goal'])})" if unit["unmet_goal"] else "")
                  + f"; retry {'succeeded' if unit['retry'] else 'failed'}; future OOD "
                  f"{sum(e['success'] for e in unit['future'])}/{len(unit['future'])}, "
                  f"retention {sum(e['success'] for e in unit['retention'])}/"
                  f"{len(unit['retention'])}."]
    return lines


NOTES = (
    "- recovery: the failed episode continues from the failure (the method's recovery policy "
    "at the first detection); retry: the same initial scene, restored from its seeds, planned "
    "afresh with the repaired model and executed whole; future OOD / retention: fresh OOD / "
    "in-distribution episodes of the evaluation seed, whole plans, no further repair. Rates "
    "with 95 % Wilson intervals and (trials); future and retention pool the episodes of "
    "every repaired model.",
    "- original and replan do not change the model: their future and retention columns are "
    "the base agent's. oracle replans once with the oracle planner, which simulates "
    "candidate plans from the true scene (an upper bound, no model).",
    "- seconds are medians over the failures, compile times apart (compile s: a generator's "
    "first use in the process; fine-tune compile s: the fine-tune's, once per process and "
    "step count, a mean; '-' for runs that counted it inside fine-tune s); "
    "total = classify + generate + label + fine-tune + replan. reproduction: share of "
    "generated states whose settled relations among the goal objects equal the settled "
    "failure scene's; diversity: mean pairwise distance of the states over the movable "
    "objects' (x, y, yaw_scale * yaw); attempts: rejection sampling's proposals.",
    "- retention detections: retention episodes in which a failure was detected (a repaired "
    "model may predict in-distribution outcomes less confidently).",
)


def draw_rates(path: str, rows: list[dict[str, Any]]) -> None:
    """Bar chart per task: each method's four rates with their Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task_names = list(dict.fromkeys(r["task"] for r in rows))
    figure, axes = plt.subplots(1, len(task_names), figsize=(5.5 * len(task_names), 3.8),
                                squeeze=False)
    for axis, task in zip(axes[0], task_names, strict=True):
        cells = [r for r in rows if r["task"] == task]
        width = 0.8 / len(cells)
        for offset, row in enumerate(cells):
            x = np.arange(len(RATES)) + (offset - 0.5 * (len(cells) - 1)) * width
            rate = np.array([row[r]["rate"] for r in RATES], float)
            low = np.array([row[r]["low"] for r in RATES], float)
            high = np.array([row[r]["high"] for r in RATES], float)
            axis.bar(x, np.nan_to_num(rate), width, label=row["method"],
                     yerr=np.nan_to_num([rate - low, high - rate]), capsize=2)
        axis.set_xticks(range(len(RATES)), ["recovery", "retry", "future OOD", "retention"])
        axis.set_ylim(0.0, 1.35)
        axis.set_title(task)
        axis.set_ylabel("success rate (95 % Wilson)")
        axis.legend(loc="upper center", ncol=3, fontsize=6)
    reporting.save_figure(path, figure)


def draw_generation(path: str, workdir: str, task: str, failure_name: str,
                    generators: list[str]) -> bool:
    """Top-down view of one failure: believed scene, each generator's states, the actions.

    Returns False when no generator's arrays are stored.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    stored = {}
    for generator in generators:
        name = os.path.join(workdir, "generated", f"{failure_name}--repair-{generator}.npz")
        if os.path.exists(name):
            with np.load(name) as arrays:
                stored[generator] = {key: arrays[key] for key in arrays.files}
    if not stored:
        return False
    failure = load_failure(os.path.join(workdir, "failures", failure_name))
    scene = failure.belief_before
    mask = np.asarray(scene.mask, bool)
    figure, axes = plt.subplots(1, len(stored) + 2, figsize=(3.6 * (len(stored) + 2), 3.6))

    def boxes(axis, poses, alpha, colour):
        for slot in np.flatnonzero(mask):
            hx, hy = scene.half_extents[slot, :2]
            x, y, yaw = poses[slot]
            corner = np.array([x, y]) - np.array([[np.cos(yaw), -np.sin(yaw)],
                                                  [np.sin(yaw), np.cos(yaw)]]) @ [hx, hy]
            axis.add_patch(Rectangle(corner, 2 * hx, 2 * hy, angle=np.degrees(yaw),
                                     fill=False, alpha=alpha, color=colour(slot)))

    colour = lambda slot: plt.cm.tab10(slot % 10)  # noqa: E731
    believed = np.concatenate([scene.pos[:, :2], scene.yaw[:, None]], axis=-1)
    points = np.asarray(failure.observation_before.points)[mask].reshape(-1, 3)
    axes[0].scatter(points[:, 0], points[:, 1], s=1, c="grey")
    boxes(axes[0], believed, 1.0, colour)
    axes[0].set_title(f"{task}: observed + believed")
    for axis, (generator, arrays) in zip(axes[1:-1], stored.items(), strict=True):
        boxes(axis, believed, 1.0, lambda slot: "black")
        for poses in arrays["poses"]:
            boxes(axis, poses, 0.25, colour)
        axis.set_title(f"{generator}: {len(arrays['poses'])} states")
    for generator, arrays in stored.items():
        if "actions" in arrays:
            actions = arrays["actions"].reshape(-1, 2)
            axes[-1].scatter(actions[:, 0], actions[:, 1], s=4, alpha=0.5, label=generator)
    anchor = np.asarray(failure.skill.params)
    axes[-1].scatter([anchor[0]], [anchor[1]], marker="x", c="black", label="failed a")
    axes[-1].set_title("action particles (dx, dy)")
    axes[-1].legend(fontsize=6)
    for axis in axes[:-1]:
        axis.set_aspect("equal")
        axis.autoscale_view()
    reporting.save_figure(path, figure)
    return True


def write(workdir: str, config, collected, base, units, seconds: float,
          partial: str | None = None) -> dict[str, Any]:
    """Writes results.json, results.md, rates.png and one generation figure per task.

    `partial`, when given, says which units are missing; it heads results.md.
    """
    rows = summarise(units)
    figures = []
    if rows:
        draw_rates(os.path.join(workdir, "rates.png"), rows)
        figures.append("rates.png")
    generators = [g.strip() for g in str(config.figure_generators).split(",") if g.strip()]
    for task, entries in collected.items():
        kept = [e for e in entries if e["kept"]]
        name = f"generation_{task}.png"
        if kept and draw_generation(os.path.join(workdir, name), workdir, task,
                                    kept[0]["name"], generators):
            figures.append(name)
    results = {"config": config.to_dict(), "environment": reporting.environment(),
               "seconds": seconds, "rows": rows, "confusion": confusion(collected),
               "base": base_rows(base), "collected": collected, "units": units,
               "figures": figures, **({"partial": partial} if partial else {})}
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    reporting.write_text(os.path.join(workdir, "results.md"), markdown(results))
    return results
