"""Config of report_main: which experiment workdirs go into the one report, in which order.

Select a variant with --config=experiments/configs/report.py:VARIANT, VARIANT one of default
(every experiment of DESIGN.md section 8, in reading order) or tiny (two sections, for tests,
which point the paths at their own folders). A new study is one line of SECTIONS.
"""

import ml_collections

VARIANTS = ("default", "tiny")

_RUN = "python -m experiments.{module}_main --config=experiments/configs/{config} --workdir={path}"

# (name, title, workdir, the command that writes the workdir's results.json), in report order.
# The long runs write under results/ (committed, see results/.gitignore) so that they resume in a
# fresh checkout; the demo, minutes long, stays in workdirs/ (scratch, not committed).
SECTIONS = (
    ("base_agent", "Base agent in the real world", "results/evaluate",
     _RUN.format(module="evaluate", config="evaluate.py", path="results/evaluate")),
    ("main_table", "Main table: recovery from detected OOD failures", "results/fail2progress",
     _RUN.format(module="fail2progress", config="fail2progress.py",
                 path="results/fail2progress")),
    ("main_table_replay", "Main table, transport and packing, replay 0.5",
     "results/fail2progress_replay",
     _RUN.format(module="fail2progress", config="fail2progress.py",
                 path="results/fail2progress_replay")
     + " --config.tasks=transport,packing --config.finetune.replay_fraction=0.5"
       " --config.methods=repair:svgd,repair:sampling --config.oracle=False"),
    ("demo", "The demo (`make demo`)", "workdirs/demo",
     _RUN.format(module="fail2progress", config="fail2progress.py:demo", path="workdirs/demo")),
    ("repair_timing", "Time from a detected failure to the recovered plan (idle machine)",
     "results/repair_timing",
     _RUN.format(module="fail2progress", config="fail2progress.py:demo",
                 path="results/repair_timing")
     + " --config.tasks=tabletop,transport,packing --config.num_failures=3"
       " --config.max_collection_episodes=20 --config.num_future=1 --config.num_retention=1"),
    ("generalisation", "Generalisation to 5 and 7 objects", "results/generalisation",
     _RUN.format(module="generalisation", config="generalisation.py",
                 path="results/generalisation")),
    ("generalisation_tabletop", "Generalisation to 5 and 7 objects: tabletop, clearing planner",
     "results/generalisation_tabletop",
     _RUN.format(module="generalisation", config="generalisation.py",
                 path="results/generalisation_tabletop")
     + " --config.tasks=tabletop --config.planner.clearance_weight=1000"
       " --config.planner.clearing_skeletons=True --config.real_failures_only=True"),
    ("generalisation_replay", "Generalisation to 5 and 7 objects: transport and packing, "
     "replay 0.5", "results/generalisation_replay",
     _RUN.format(module="generalisation", config="generalisation.py",
                 path="results/generalisation_replay")
     + " --config.tasks=transport,packing --config.finetune.replay_fraction=0.5"
       " --config.methods=repair:svgd,repair:sampling"),
    ("sim2real", "Sim2Real: perception noise and friction gap", "results/sim2real",
     _RUN.format(module="sim2real", config="sim2real.py", path="results/sim2real")),
    ("efficiency", "Efficiency: generation time vs object count", "results/efficiency",
     _RUN.format(module="efficiency", config="efficiency.py", path="results/efficiency")),
    ("sweep", "Ablations", "results/sweep",
     _RUN.format(module="sweep", config="sweep.py", path="results/sweep")),
    ("scaling", "Scaling: particles x devices", "results/scaling",
     _RUN.format(module="scaling", config="scaling.py", path="results/scaling")),
    ("lifelong", "Lifelong: every classified failure repaired in turn", "results/lifelong",
     _RUN.format(module="lifelong", config="lifelong.py", path="results/lifelong")),
)


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise ValueError(f"config variant: unknown {variant!r}; allowed: {', '.join(VARIANTS)}")
    sections = SECTIONS if variant == "default" else SECTIONS[:2]
    config = ml_collections.ConfigDict()
    config.title = "f2p: results of every experiment"
    # "name=workdir,name=workdir": the report's sections in order (names: lower_snake_case).
    # A ConfigDict sorts its keys, so the order lives in this one string.
    config.sections = ",".join(f"{name}={path}" for name, _, path, _ in sections)
    # Per section name: the command that makes its results.json (every section needs one) and
    # an optional heading (default: the name).
    config.commands = ml_collections.ConfigDict({name: run for name, _, _, run in sections})
    config.titles = ml_collections.ConfigDict({name: title for name, title, _, _ in sections})
    config.results_file = "results.json"  # read in each workdir
    config.markdown_file = "results.md"  # copied in, its headings demoted below the section's
    # A section without results here keeps the previous report's text and figures (labelled):
    # a checkout without that workdir would otherwise erase the only record of a long run.
    config.carry_over = True
    return config
