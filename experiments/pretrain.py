"""Pretraining of the base skill-effect model: data, fit, ID vs OOD relation F1, export.

run(config, workdir) generates (or reuses) each task's training data and held-out
in-distribution (ID) and out-of-distribution (OOD) transitions in MuJoCo, trains the base model
with f2p.train.fit (resumable from workdir/checkpoints), measures relation F1 per task and
relation at t and t+1, and writes results.json, results.md and f1_id_vs_ood.png. With
config.export_dir set it also exports the parameters (f2p.io.pretrained) with a README.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from f2p import tasks, train
from f2p.io import checkpoint, dataset, pretrained, reporting
from f2p.io.config import parse_list
from f2p.models import SkillEffectModel, pair_mask
from f2p.models.losses import f1_from_counts
from f2p.scene import CONTAINER, REL, RELATION_NAMES, Transition, take_row, transition_skill

ROLES = ("train", "id", "ood")
"""Datasets per task: training data, held-out in-distribution, held-out OOD."""
_ROLE_SPLIT = {"train": "train", "id": "train", "ood": "ood"}
_ROLE_SEED = {"train": "train_seed", "id": "eval_seed", "ood": "eval_seed"}
_ROLE_SIZE = {"train": "num_train", "id": "num_eval", "ood": "num_eval"}
FIGURE = "f1_id_vs_ood.png"
TIME_LEDGER = "training_time.json"
COLUMN_NOTES = (
    "`copy F1 t+1` predicts that nothing changes (the true relations at t); `changed acc` is "
    "the share of (pair, relation) entries that change from t to t+1 that the model predicts "
    "right; `situation F1 t+1` is on the rows where the task's OOD situation holds; "
    "`contents inside` is the share of a moved container's contents inside it after the "
    "skill, true vs predicted; `-` marks a relation never present nor predicted.")


def generation_config(config, role: str) -> ml_collections.ConfigDict:
    """The dataset generation settings (isaac_bridge.datagen) of one role, from `data`."""
    data = config.data
    if role not in ROLES:
        raise ValueError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    if data.train_seed == data.eval_seed:
        raise ValueError("config.data.eval_seed must differ from train_seed (else the held-out "
                         "ID data would repeat the training data)")
    return ml_collections.ConfigDict({
        "object_counts": data.object_counts, "num_transitions": data[_ROLE_SIZE[role]],
        "shard_size": data.shard_size, "num_points": data.num_points,
        "noise_level": data.noise_level, "seed": data[_ROLE_SEED[role]]})


def dataset_directory(workdir: str, task_name: str, role: str, settings) -> str:
    """workdir/data/<task>/<role>-<hash of the settings>: another config gets fresh data."""
    key = json.dumps({**settings.to_dict(), "split": _ROLE_SPLIT[role]}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return os.path.join(workdir, "data", task_name, f"{role}-{digest}")


def prepare_data(config, workdir: str) -> tuple[dict, dict]:
    """Generates (or reuses) every (task, role) dataset; returns (datasets, summaries)."""
    from isaac_bridge.datagen import generate  # MuJoCo and Open3D load only to make data
    from isaac_bridge.mujoco_backend import MujocoSimulator

    names = parse_list(config.data.tasks, tasks.task_names(), "data.tasks")
    datasets, summaries = {}, {}
    with MujocoSimulator(num_workers=config.data.num_workers) as simulator:
        for name in names:
            datasets[name], summaries[name] = {}, {}
            for role in ROLES:
                settings = generation_config(config, role)
                directory = dataset_directory(workdir, name, role, settings)
                start = time.perf_counter()
                summary = generate(tasks.get_task(name), _ROLE_SPLIT[role], settings,
                                   directory, simulator)
                datasets[name][role] = dataset.load_dataset(directory)
                summaries[name][role] = {**summary, "directory": os.path.relpath(directory,
                                                                                 workdir)}
                logging.info("data %s/%s: %d of %d transitions kept (%.1f s)", name, role,
                             summary["kept"], summary["attempted"], time.perf_counter() - start)
    return datasets, summaries


def concatenate(parts: list[Transition]) -> Transition:
    """Stacks Transition batches along their leading axis."""
    return Transition(*(np.concatenate(fields) for fields in zip(*parts, strict=True)))


def predict_logits(model: SkillEffectModel, params, data: Transition, batch_size: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Relation logits at t and t+1 ([N, K, K, R] each) of the model on every row of `data`."""
    rows = data.mask.shape[0]
    logits_t, logits_t1 = [], []
    for start in range(0, rows, batch_size):
        # The last batch repeats its final row up to batch_size: one compiled shape.
        index = np.minimum(np.arange(start, start + batch_size), rows - 1)
        batch = take_row(data, index)
        output = model.apply(params, batch.points_t, batch.mask, batch.kind,
                             transition_skill(batch),
                             batch.half_extents if model.config.use_half_extents else None)
        keep = min(batch_size, rows - start)
        logits_t.append(np.asarray(output.relation_logits)[:keep])
        logits_t1.append(np.asarray(output.next_relation_logits)[:keep])
    return np.concatenate(logits_t), np.concatenate(logits_t1)


def counts(predicted: np.ndarray, labels: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """[3, R] true positives, false positives, false negatives over the selected entries.

    Args:
      predicted, labels: [N, K, K, R] bool.
      pairs: [N, K, K] or [N, K, K, R] bool entries to count (valid pairs, maybe a subset).
    """
    pairs = np.broadcast_to(pairs if pairs.ndim == 4 else pairs[..., None], labels.shape)
    predicted, labels = predicted & pairs, labels & pairs
    return np.stack([(predicted & labels).sum((0, 1, 2)), (predicted & ~labels).sum((0, 1, 2)),
                     (~predicted & labels).sum((0, 1, 2))]).astype(np.float64)


def measure_dataset(task: tasks.Task, data: Transition, logits_t, logits_t1,
                    key_relations: list[str]) -> dict:
    """Relation F1 at t and t+1, a copy baseline, and the OOD-situation probes of one dataset.

    Returns a dict with: rows; f1_t / f1_t1 (per relation and macro, from f1_from_counts);
    copy_f1_t1 (predicting t+1 = the true relations at t); changed_accuracy (share of the
    (pair, relation) entries that change from t to t+1 that the model gets right at t+1);
    ood_situation_rows and situation_f1_t1 (F1 at t+1 on rows where task.ood_situation holds);
    contents_inside_true / _predicted (moved container: share of its contents inside it at t+1).
    """
    pairs = np.asarray(pair_mask(jnp.asarray(data.mask)))
    labels_t, labels_t1 = data.relations_t.astype(bool), data.relations_t1.astype(bool)
    pred_t, pred_t1 = logits_t > 0, logits_t1 > 0
    changed = (labels_t != labels_t1) & pairs[..., None]
    rows = [take_row(data, index) for index in range(data.mask.shape[0])]
    situation = np.array([task.measure(row)["ood_situation"] for row in rows])
    counts_t, counts_t1 = counts(pred_t, labels_t, pairs), counts(pred_t1, labels_t1, pairs)
    result = {
        "rows": len(rows),
        "f1_t": f1_from_counts(counts_t),
        "f1_t1": f1_from_counts(counts_t1),
        # f1_from_counts scores a relation never present nor predicted as 1: tables show "-".
        "seen_t": [n for n, c in zip(RELATION_NAMES, counts_t.sum(0), strict=True) if c > 0],
        "seen_t1": [n for n, c in zip(RELATION_NAMES, counts_t1.sum(0), strict=True) if c > 0],
        "positives_t1": {n: int(labels_t1[..., i][pairs].sum())
                         for i, n in enumerate(RELATION_NAMES)},
        "copy_f1_t1": f1_from_counts(counts(labels_t, labels_t1, pairs)),
        "changed_entries": int(changed.sum()),
        "changed_accuracy": (float((pred_t1 == labels_t1)[changed].mean())
                             if changed.any() else None),
        "ood_situation_rows": int(situation.sum()),
        "situation_f1_t1": (f1_from_counts(counts(pred_t1, labels_t1,
                                                  pairs & situation[:, None, None]))
                            if situation.any() else None),
    }
    # Contents of a moved container: (content, container) entries of "inside".
    inside = REL["inside"]
    moved = np.zeros_like(pairs)
    for index, row in enumerate(rows):
        obj = int(row.obj)
        if row.kind[obj] == CONTAINER:
            moved[index, :, obj] = labels_t[index, :, obj, inside]
    result["contents_pairs"] = int(moved.sum())
    if moved.any():
        result["contents_inside_true"] = float(labels_t1[..., inside][moved].mean())
        result["contents_inside_predicted"] = float(pred_t1[..., inside][moved].mean())
    result["key_f1_t1"] = {name: _f1(result, "t1", name) for name in key_relations}
    return result


def label_statistics(data: Transition) -> dict[str, dict[str, float]]:
    """Per relation: positive share of valid pair entries at t and t+1, and share that change."""
    pairs = np.asarray(pair_mask(jnp.asarray(data.mask)))
    total = max(int(pairs.sum()), 1)
    stats = {}
    for index, name in enumerate(RELATION_NAMES):
        at_t, at_t1 = data.relations_t[..., index] & pairs, data.relations_t1[..., index] & pairs
        stats[name] = {"positive_t": at_t.sum() / total, "positive_t1": at_t1.sum() / total,
                       "changed": (at_t != at_t1).sum() / total}
    return stats


def _f1(metrics: dict, time_key: str, relation: str, stat: str = "f1") -> float | None:
    """One relation's metric at "t" or "t1", None when it was never present nor predicted."""
    if relation not in metrics[f"seen_{time_key}"]:
        return None
    return metrics[f"f1_{time_key}"][f"{stat}/{relation}"]


def _rows(metrics: dict, key_relations: list[str]) -> tuple[list[dict], list[dict]]:
    """Summary rows (task x split) and per-relation rows for the Markdown tables."""
    summary, per_relation = [], []
    for name, by_split in metrics.items():
        for split, m in by_split.items():
            summary.append({
                "task": name, "split": split, "rows": m["rows"],
                "F1 t": m["f1_t"]["f1/macro"], "F1 t+1": m["f1_t1"]["f1/macro"],
                "copy F1 t+1": m["copy_f1_t1"]["f1/macro"],
                **{f"{r} t+1": m["key_f1_t1"][r] for r in key_relations},
                "changed acc": m["changed_accuracy"],
                "OOD-situation rows": m["ood_situation_rows"],
                "situation F1 t+1": (m["situation_f1_t1"] or {}).get("f1/macro"),
                "contents inside true": m.get("contents_inside_true"),
                "contents inside pred": m.get("contents_inside_predicted")})
            for relation in RELATION_NAMES:
                per_relation.append({
                    "task": name, "split": split, "relation": relation,
                    "positives t+1": m["positives_t1"][relation],
                    "F1 t": _f1(m, "t", relation), "F1 t+1": _f1(m, "t1", relation),
                    "P t+1": _f1(m, "t1", relation, "precision"),
                    "R t+1": _f1(m, "t1", relation, "recall"),
                    "copy F1 t+1": (m["copy_f1_t1"][f"f1/{relation}"]
                                    if m["positives_t1"][relation] else None)})
    return summary, per_relation


def draw_figure(path: str, metrics: dict, key_relations: list[str]) -> None:
    """Bar chart per task: F1 at t+1 of the key relations and the macro mean, ID vs OOD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(metrics)
    labels = key_relations + ["macro"]
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        for offset, split, colour in ((-0.2, "id", "tab:blue"), (0.2, "ood", "tab:red")):
            m = metrics[name][split]
            heights = [m["f1_t1"]["f1/macro"] if r == "macro" else _f1(m, "t1", r)
                       for r in labels]  # NaN (no bar) for a relation that never occurs
            axis.bar(np.arange(len(labels)) + offset,
                     [np.nan if h is None else h for h in heights], 0.4,
                     label=split.upper(), color=colour)
        axis.set(title=name, ylim=(0, 1.25), ylabel="relation F1 at t+1")
        axis.set_xticks(np.arange(len(labels)), labels)
        axis.set_yticks(np.linspace(0, 1, 6))
        axis.legend(loc="upper right", ncol=2)
    figure.suptitle("Base model: in-distribution vs out-of-distribution")
    reporting.save_figure(path, figure)


def _float_formats(columns: list[str]) -> dict[str, str]:
    """Three decimals for every metric column (not for counts)."""
    return {c: ".3f" for c in columns if c not in ("rows", "OOD-situation rows",
                                                   "positives t+1")}


def _seconds(value: float | None) -> str:
    return "(unknown time: resumed an unfinished run)" if value is None else f"{value:.0f} s"


def markdown_report(results: dict, key_relations: list[str]) -> str:
    """The results.md text: data counts, summary and per-relation F1 tables."""
    summary, per_relation = _rows(results["metrics"], key_relations)
    data_rows = [{"task": name, "role": role, "attempted": s["attempted"], "kept": s["kept"],
                  "dropped": s["dropped"]}
                 for name, by_role in results["data"].items() for role, s in by_role.items()]
    summary_columns = list(summary[0])
    relation_columns = list(per_relation[0])
    timing = results["training"]
    return "\n".join([
        "# Base model pretraining", "",
        f"Trained {timing['steps']} steps (batch {timing['batch_size']}) on "
        f"{timing['train_rows']} transitions in {_seconds(timing['seconds'])}; this run "
        f"trained {timing['steps_this_run']} steps in {timing['seconds_this_run']:.0f} s.", "",
        "## Datasets", "", reporting.markdown_table(data_rows, list(data_rows[0])),
        "## ID vs OOD (macro F1 over relations present; key relations at t+1)", "",
        COLUMN_NOTES, "",
        reporting.markdown_table(summary, summary_columns, _float_formats(summary_columns)),
        "## Per relation", "",
        reporting.markdown_table(per_relation, relation_columns,
                                 _float_formats(relation_columns)),
    ])


def _total_training_seconds(workdir: str, start_step: int, end_step: int,
                            seconds: float) -> float | None:
    """Training time over every run that reached `end_step` (None when a past run's is unknown).

    A ledger in workdir keeps (step, seconds) of the last finished run, so a resumed run can
    add its own time to that of the run it continues.
    """
    path = os.path.join(workdir, TIME_LEDGER)
    previous = 0.0
    if start_step > 0:
        ledger = json.load(open(path)) if os.path.exists(path) else {}
        if ledger.get("step") != start_step:
            return None  # resumed from a checkpoint of a run that did not finish
        previous = ledger["seconds"]
    reporting.write_json(path, {"step": end_step, "seconds": previous + seconds})
    return previous + seconds


def run(config, workdir: str, command: str | None = None) -> dict:
    """Generates data, trains (or resumes) the base model, evaluates and writes the reports.

    Args:
      config: a pretrain config (experiments/configs/pretrain.py).
      workdir: output folder: data/, checkpoints/, results.json, results.md, the figure.
      command: the command line that ran this, recorded with an export.

    Returns:
      The results written to results.json.
    """
    key_relations = parse_list(config.eval.key_relations, RELATION_NAMES, "eval.key_relations")
    os.makedirs(workdir, exist_ok=True)
    start = time.perf_counter()
    datasets, summaries = prepare_data(config, workdir)
    data_seconds = time.perf_counter() - start
    train_data = concatenate([by_role["train"] for by_role in datasets.values()])
    eval_data = concatenate([by_role["id"] for by_role in datasets.values()])
    logging.info("training on %d transitions, evaluating on %d held-out ID transitions",
                 train_data.mask.shape[0], eval_data.mask.shape[0])
    start = time.perf_counter()
    start_step = checkpoint.latest_step(os.path.join(workdir, "checkpoints")) or 0
    fit = train.fit(config, train_data, eval_data, workdir)
    train_seconds = time.perf_counter() - start
    model, params = fit.state.model, fit.state.params
    metrics = {}
    for name, by_role in datasets.items():
        metrics[name] = {}
        for split in ("id", "ood"):
            logits_t, logits_t1 = predict_logits(model, params, by_role[split],
                                                 config.eval.batch_size)
            metrics[name][split] = measure_dataset(tasks.get_task(name), by_role[split],
                                                   logits_t, logits_t1, key_relations)
            logging.info("eval %s/%s: F1 t %.3f, t+1 %.3f (%s)", name, split,
                         metrics[name][split]["f1_t"]["f1/macro"],
                         metrics[name][split]["f1_t1"]["f1/macro"],
                         ", ".join(f"{r} {'-' if v is None else format(v, '.2f')}"
                                   for r, v in metrics[name][split]["key_f1_t1"].items()))
    steps_run = config.train.num_steps - start_step
    # A run that only resumed a finished training restored and evaluated: no training time.
    seconds = _total_training_seconds(workdir, start_step, config.train.num_steps,
                                      train_seconds if steps_run else 0.0)
    results = {
        "config": config.to_dict(), "environment": reporting.environment(),
        "command": command,
        "seeds": {"train": config.train.seed, "data_train": config.data.train_seed,
                  "data_eval": config.data.eval_seed},
        "data": summaries, "data_seconds": data_seconds,
        "label_statistics": {name: label_statistics(by_role["train"])
                             for name, by_role in datasets.items()},
        "training": {"steps": config.train.num_steps, "steps_this_run": steps_run,
                     "resumed_from_step": start_step, "batch_size": config.train.batch_size,
                     "train_rows": int(train_data.mask.shape[0]), "seconds": seconds,
                     "seconds_this_run": train_seconds,
                     "steps_per_second": (steps_run / train_seconds if steps_run else None),
                     "final_train_metrics": fit.train_metrics,
                     "final_eval_metrics": fit.eval_metrics},
        "metrics": metrics,
        "figure": FIGURE,
    }
    draw_figure(os.path.join(workdir, FIGURE), metrics, key_relations)
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    reporting.write_text(os.path.join(workdir, "results.md"),
                         markdown_report(results, key_relations))
    if config.export_dir:
        export(config, params, results, key_relations)
    return results


def export(config, params, results: dict, key_relations: list[str]) -> dict[str, int]:
    """Writes params.npz, config.json and a README.md (command, config, F1) to export_dir."""
    directory = config.export_dir
    metadata = {"command": results["command"], "training": results["training"],
                "data": {name: {role: s["kept"] for role, s in by_role.items()}
                         for name, by_role in results["data"].items()}}
    sizes = pretrained.export_params(directory, params, config, metadata)
    summary, _ = _rows(results["metrics"], key_relations)
    columns = ["task", "split", "rows", "F1 t", "F1 t+1", "copy F1 t+1",
               *[f"{r} t+1" for r in key_relations], "changed acc", "OOD-situation rows",
               "situation F1 t+1", "contents inside true", "contents inside pred"]
    text = "\n".join([
        "# Base skill-effect model", "",
        "Parameters only (`params.npz`, float32) and the full config (`config.json`). Load with",
        "`from f2p.io.pretrained import load_base_model; model, params, config = "
        "load_base_model()`.", "",
        "Made by:", "", "```", results["command"] or "(experiments.pretrain.run)", "```", "",
        f"Training: {results['training']['steps']} steps, batch "
        f"{results['training']['batch_size']}, {results['training']['train_rows']} transitions "
        f"(tasks {config.data.tasks}; object counts {config.data.object_counts}), "
        f"{_seconds(results['training']['seconds'])} on {results['environment']['cpu_count']} "
        f"CPU cores shared with other jobs; files {sum(sizes.values()) / 1e6:.2f} MB.", "",
        "Relation F1 on held-out transitions (ID: training distribution, new seed; OOD: the "
        "task's out-of-distribution sampler):", "",
        reporting.markdown_table(summary, columns, _float_formats(columns)),
        COLUMN_NOTES, "", "Config:", "", "```json",
        json.dumps(config.to_dict(), indent=2, default=list), "```", "",
    ])
    reporting.write_text(os.path.join(directory, "README.md"), text)
    for name in (pretrained.PARAMS_FILE, pretrained.CONFIG_FILE, "README.md"):
        os.chmod(os.path.join(directory, name), 0o644)  # temp files are 0600; these are shared
    return sizes
