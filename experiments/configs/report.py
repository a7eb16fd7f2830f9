"""Config of report_main: which experiment workdirs go into the one report, in which order.

Select a variant with --config=experiments/configs/report.py:VARIANT, VARIANT one of default
(every experiment of DESIGN.md section 8, in reading order) or tiny (two sections, for tests,
which point the paths at their own folders). A new study is one line of SECTIONS.
"""

import ml_collections

VARIANTS = ("default", "tiny")

_RUN = "python -m experiments.{module}_main --config=experiments/configs/{config} --workdir={path}"


def _section(name: str, title: str, path: str, module: str, config: str = "", flags: str = ""):
    """(name, title, workdir, the command that writes the workdir's results.json).

    config defaults to module + ".py"; flags are appended to the command.
    """
    command = _RUN.format(module=module, config=config or f"{module}.py", path=path)
    return name, title, path, command + (f" {flags}" if flags else "")


# The sections in report order. The long runs write under results/ (committed, see
# results/.gitignore) so that they resume in a fresh checkout; the demo, minutes long, stays in
# workdirs/ (scratch, not committed).
SECTIONS = (
    _section("base_agent", "Base agent in the real world", "results/evaluate", "evaluate"),
    _section("main_table", "Main table: recovery from detected OOD failures",
             "results/fail2progress", "fail2progress"),
    _section("main_table_replay", "Main table with replay 0.5 of the base data",
             "results/fail2progress_replay", "fail2progress",
             flags="--config.tasks=tabletop,transport,packing"
                   " --config.finetune.replay_fraction=0.5 --config.methods=repair:svgd,"
                   "repair:sampling,repair:gradient,repair:svgd_no_entropy --config.oracle=False"),
    _section("main_table_relation",
             "Main table with replay 0.5 and relation inputs of the dynamics",
             "results/fail2progress_relation", "fail2progress",
             flags="--config.tasks=tabletop,transport,packing"
                   " --config.finetune.replay_fraction=0.5 --config.relation_features=True"
                   " --config.finetune.learning_rate=0.001 --config.methods=repair:svgd,"
                   "repair:sampling,repair:gradient,repair:svgd_no_entropy --config.oracle=False"
                   " --config.only_existing=True"),
    _section("main_table_carry",
             "Main table with replay 0.5, relation inputs and the carry gate",
             "results/fail2progress_carry", "fail2progress",
             flags="--config.tasks=tabletop,transport,packing"
                   " --config.finetune.replay_fraction=0.5 --config.relation_features=True"
                   " --config.carry_gate=True --config.finetune.learning_rate=0.001"
                   " --config.methods=repair:svgd,repair:sampling,repair:gradient,"
                   "repair:svgd_no_entropy --config.oracle=False --config.only_existing=True"),
    _section("repair_probe", "What the tabletop repair teaches (development seeds)",
             "results/repair_probe", "repair_probe"),
    _section("demo", "The demo (`make demo`)", "workdirs/demo", "fail2progress",
             "fail2progress.py:demo"),
    _section("repair_timing", "Time from a detected failure to the recovered plan (idle machine)",
             "results/repair_timing", "fail2progress", "fail2progress.py:demo",
             flags="--config.tasks=tabletop,transport,packing --config.num_failures=3"
                   " --config.max_collection_episodes=20 --config.num_future=1"
                   " --config.num_retention=1"),
    _section("generalisation", "Generalisation to 5 and 7 objects", "results/generalisation",
             "generalisation"),
    _section("generalisation_tabletop",
             "Generalisation to 5 and 7 objects: tabletop, clearing planner",
             "results/generalisation_tabletop", "generalisation",
             flags="--config.tasks=tabletop --config.planner.clearance_weight=1000"
                   " --config.planner.clearing_skeletons=True --config.real_failures_only=True"),
    _section("generalisation_replay",
             "Generalisation to 5 and 7 objects: transport and packing, replay 0.5",
             "results/generalisation_replay", "generalisation",
             flags="--config.tasks=transport,packing --config.finetune.replay_fraction=0.5"
                   " --config.methods=repair:svgd,repair:sampling"),
    _section("sim2real", "Sim2Real: perception noise and friction gap", "results/sim2real",
             "sim2real"),
    _section("efficiency", "Efficiency: generation time vs object count", "results/efficiency",
             "efficiency"),
    _section("sweep", "Ablations", "results/sweep", "sweep"),
    _section("scaling", "Scaling: particles x devices", "results/scaling", "scaling"),
    _section("lifelong", "Lifelong: every classified failure repaired in turn",
             "results/lifelong", "lifelong"),
    _section("lifelong_carry", "Lifelong with relation inputs and the carry gate",
             "results/lifelong_carry", "lifelong",
             flags="--config.modes=one_shot,lifelong,lifelong_explore"
                   " --config.relation_features=True --config.carry_gate=True"
                   " --config.finetune.learning_rate=0.001 --config.finetune.replay_fraction=0.5"),
    _section("lifelong_held", "Lifelong on tabletop with the carry gate for held objects only",
             "results/lifelong_held", "lifelong",
             flags="--config.tasks=tabletop --config.modes=one_shot,lifelong,lifelong_explore"
                   " --config.relation_features=True --config.carry_gate=True"
                   " --config.carry_held_only=True --config.finetune.learning_rate=0.001"
                   " --config.finetune.replay_fraction=0.5"),
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
