"""MuJoCo benchmark: labelled pick-and-place executions per second and render time per scene.

Scenes: one table, one container (cup) and `num_items` items (5 movable objects by default),
some items starting in the cup. Skills: pick_place of an item into the cup (half), of an item
onto the table, or of the (possibly loaded) cup onto the table. A labelled execution is the full
Simulator.execute: build, settle, skill, settle, contacts, relations. The observer (by default
isaac_bridge.perception.render_observation on every post state) is timed separately, so the
results give executions/s, CPU per execution and render ms per scene side by side.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable

import ml_collections
import numpy as np
from absl import logging

from f2p.io import reporting
from f2p.scene import (
    CONTAINER,
    FIXTURE,
    ITEM,
    PICK_PLACE,
    REL,
    Scene,
    Skill,
    make_scene,
    stack_rows,
    take_row,
)
from f2p.world import STATUS_NAMES
from isaac_bridge.mjcf import wall_thickness
from isaac_bridge.mujoco_backend import MujocoSimulator

TABLE_HALF, TABLE_POS = (0.4, 0.6, 0.02), (0.0, 0.0, 0.38)
TABLE_TOP = 0.40
CUP_HALF = np.array([0.06, 0.06, 0.05])
REGION = np.array([0.3, 0.5])  # object centres stay within +-REGION of the table centre


def sample_case(rng: np.random.Generator, num_items: int, in_cup: int) -> tuple[Scene, Skill]:
    """Draw one benchmark scene (table, cup, items) and one pick_place skill."""
    halves = [CUP_HALF]
    centres = [rng.uniform(-REGION, REGION)]
    yaws = [rng.uniform(-np.pi, np.pi)]
    heights = [TABLE_TOP + CUP_HALF[2]]
    floor_top = TABLE_TOP + wall_thickness(CUP_HALF)
    for index in range(num_items):
        half = np.array([*rng.uniform(0.018, 0.028, 2), rng.uniform(0.02, 0.03)])
        halves.append(half)
        yaws.append(yaws[0] if index < in_cup else rng.uniform(-np.pi, np.pi))
        if index < in_cup:  # centred in the cup, resting on its floor
            centres.append(centres[0].copy())
            heights.append(floor_top + half[2])
            continue
        for _ in range(200):  # rejection: keep bounding circles apart
            centre = rng.uniform(-REGION, REGION)
            radii = [np.hypot(*h[:2]) for h in halves[:-1]]
            if all(np.linalg.norm(centre - c) > r + np.hypot(*half[:2]) + 0.01
                   for c, r in zip(centres, radii, strict=True)):
                break
        centres.append(centre)
        heights.append(TABLE_TOP + half[2])
    scene = make_scene(
        [FIXTURE, CONTAINER] + [ITEM] * num_items,
        [TABLE_HALF] + halves,
        [TABLE_POS] + [(*c, z) for c, z in zip(centres, heights, strict=True)],
        [0.0] + yaws,
    )
    free_items = list(range(2 + in_cup, 2 + num_items))
    choice = rng.uniform()
    if choice < 0.5 and free_items:  # an item into the cup
        obj, support, offset = int(rng.choice(free_items)), 1, rng.uniform(-0.01, 0.01, 2)
    elif choice < 0.75:  # an item onto the table
        obj, support, offset = int(rng.integers(2, 2 + num_items)), 0, rng.uniform(-REGION, REGION)
    else:  # the cup, with whatever it holds, onto the table
        obj, support, offset = 1, 0, rng.uniform(-REGION, REGION)
    skill = Skill(np.int32(PICK_PLACE), np.int32(obj), np.int32(support),
                  offset.astype(np.float32))
    return scene, skill


def render_scenes(scenes: Scene) -> list:
    """Render the noise-free Observation of every scene of a batch (the default observer)."""
    from isaac_bridge.perception import render_observation  # Open3D loads only when used

    batch = np.shape(scenes.mask)[0]
    return [render_observation(take_row(scenes, index)) for index in range(batch)]


def load_observer(spec: str) -> Callable[[Scene], object] | None:
    """Return the function named by "package.module:function", or None for ""."""
    if not spec:
        return None
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"config.observer: {spec!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module), name)


def _check_config(config: ml_collections.ConfigDict) -> None:
    if config.num_scenes < 1:
        raise ValueError(f"config.num_scenes: must be >= 1, got {config.num_scenes}")
    if config.batch_size < 1:
        raise ValueError(f"config.batch_size: must be >= 1, got {config.batch_size}")
    if not 0 <= config.items_in_container <= config.num_items:
        raise ValueError(f"config.items_in_container: must be in [0, num_items="
                         f"{config.num_items}], got {config.items_in_container}")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Run the benchmark, write results.json and results.md into workdir, return the results."""
    _check_config(config)
    os.makedirs(workdir, exist_ok=True)
    observer = load_observer(config.observer)
    rng = np.random.default_rng(config.seed)
    simulator = MujocoSimulator(num_workers=config.num_workers, settle_time=config.settle_time)

    def batch(size):
        cases = [sample_case(rng, config.num_items, config.items_in_container)
                 for _ in range(size)]
        return stack_rows([scene for scene, _ in cases]), stack_rows([skill for _, skill in cases])

    start = time.perf_counter()
    # Untimed warm-up: pool start, JAX compile of the labeller, Open3D initialisation.
    warm = simulator.execute(*batch(config.batch_size), seed=config.seed)
    if observer is not None:
        observer(warm.post)
    warmup = time.perf_counter() - start
    simulator.cpu_seconds = 0.0
    sim_time = sim_cpu = render_time = render_cpu = 0.0
    done = 0
    status_counts = np.zeros(len(STATUS_NAMES), np.int64)
    into_cup = into_cup_inside = 0
    while done < config.num_scenes:
        size = min(config.batch_size, config.num_scenes - done)
        scenes, skills = batch(size)
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = simulator.execute(scenes, skills, seed=config.seed + 1 + done)
        sim_time += time.perf_counter() - wall
        sim_cpu += time.process_time() - cpu
        if observer is not None:
            wall, cpu = time.perf_counter(), time.process_time()
            observer(outcome.post)
            render_time += time.perf_counter() - wall
            render_cpu += time.process_time() - cpu
        status_counts += np.bincount(outcome.status, minlength=len(STATUS_NAMES))
        to_cup = np.asarray(skills.support) == 1
        inside = outcome.relations_post[np.arange(size), skills.obj, 1, REL["inside"]]
        into_cup += int(to_cup.sum())
        into_cup_inside += int(inside[to_cup].sum())
        done += size
        rate = done / (sim_time + render_time)
        logging.info("%d/%d executions, %.1f/s (with rendering), ETA %.0f s", done,
                     config.num_scenes, rate, (config.num_scenes - done) / rate)
    worker_cpu = simulator.cpu_seconds
    simulator.close()
    pooled = config.num_workers > 1
    # Pooled: workers' simulation CPU plus this process's labelling; in-process the simulation
    # is already part of this process's CPU time. CPU time is robust to other processes sharing
    # the cores, and workers / it projects the rate on idle cores.
    cpu_per_execution = (sim_cpu + (worker_cpu if pooled else 0.0)) / done
    rendered = observer is not None
    results = {
        "config": config.to_dict(),
        "environment": reporting.environment(),
        "executions": done,
        "executions_per_second": done / sim_time,
        "seconds_per_execution_per_worker": sim_time * max(1, config.num_workers) / done,
        "simulate_and_label_seconds": sim_time,
        "cpu_seconds_per_execution": cpu_per_execution,
        "projected_per_second_on_idle_cores": max(1, config.num_workers) / cpu_per_execution,
        "observer": config.observer,
        "render_seconds": render_time if rendered else None,
        "render_ms_per_scene": 1e3 * render_time / done if rendered else None,
        "render_cpu_ms_per_scene": 1e3 * render_cpu / done if rendered else None,
        "end_to_end_per_second": done / (sim_time + render_time),
        "warmup_seconds": warmup,
        "status_counts": dict(zip(STATUS_NAMES, status_counts.tolist(), strict=True)),
        "into_cup_placements": into_cup,
        "into_cup_inside_rate": into_cup_inside / into_cup if into_cup else None,
    }
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    reporting.write_text(os.path.join(workdir, "results.md"), markdown(results))
    return results


def markdown(results: dict) -> str:
    """Render the results as a Markdown table (quantity, value)."""
    config = results["config"]
    inside = results["into_cup_inside_rate"]
    render = results["render_ms_per_scene"]
    versions = results["environment"]["versions"]
    rows = [
        ("movable objects per scene", config["num_items"] + 1),
        ("workers", config["num_workers"]),
        ("timed executions", results["executions"]),
        ("labelled executions / s", f"{results['executions_per_second']:.1f}"),
        ("wall time per execution per worker",
         f"{results['seconds_per_execution_per_worker'] * 1e3:.1f} ms"),
        ("CPU per execution (all processes)",
         f"{results['cpu_seconds_per_execution'] * 1e3:.1f} ms"),
        ("projected executions / s on idle cores (workers / CPU per execution)",
         f"{results['projected_per_second_on_idle_cores']:.1f}"),
        ("observation render per scene (wall)", "not measured (config.observer empty)"
         if render is None else f"{render:.1f} ms ({results['observer']})"),
        ("observation render per scene (CPU)", "-" if render is None
         else f"{results['render_cpu_ms_per_scene']:.1f} ms"),
        ("end-to-end executions / s (simulate, label, render)",
         f"{results['end_to_end_per_second']:.1f}"),
        ("warm-up (pool start, JAX compile, Open3D)", f"{results['warmup_seconds']:.1f} s"),
        ("placements into the cup ending inside",
         "-" if inside is None else f"{inside:.1%} of {results['into_cup_placements']}"),
        ("statuses", ", ".join(f"{k}: {v}" for k, v in results["status_counts"].items() if v)),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("cpu count", results["environment"]["cpu_count"]),
    ]
    table = reporting.markdown_table([{"quantity": name, "value": value} for name, value in rows],
                                     ["quantity", "value"])
    return "# MuJoCo simulator benchmark\n\n" + table
