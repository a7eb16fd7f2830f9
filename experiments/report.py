"""One Markdown report of every experiment's latest results: report.md and its figures."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import tempfile
import urllib.parse
from typing import Any, NamedTuple

from absl import logging

HEADING_SHIFT = 2
"""Levels an included results.md's headings move down: its H1 becomes H3 under the section."""

REPORT_ENTRIES = frozenset({"report.md", "figures"})
"""What an output folder may hold for build() to replace it (a folder of anything else is kept)."""

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_FINISHED_STATUSES = ("finished", "complete", "completed", "done", "ok", "success")
_TIME_KEYS = ("timestamp", "written_at", "finished_at", "created_at", "date")


class Section(NamedTuple):
    """One report section: a name (figures/<name>/), its heading, workdir and command."""

    name: str
    title: str
    path: str
    command: str


def parse_sections(config) -> list[Section]:
    """The checked sections of `config`, in the order of config.sections.

    Args:
      config: has `sections` ("name=workdir,name=workdir", names lower_snake_case), `commands`
        (a mapping with a non-empty command per section) and optionally `titles` (a mapping;
        a section without one is titled by its name). Commands and titles of names that are
        not in config.sections are ignored, so --config.sections may pick a subset.

    Raises:
      ValueError: naming the config field, for an empty list, an entry without "=" or without
        a path, a bad or repeated name, or a section without a command.
    """
    text = str(config.sections)
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        raise ValueError("config.sections: empty; expected name=workdir,name=workdir")
    commands = dict(config.commands.items()) if config.get("commands") else {}
    titles = dict(config.titles.items()) if config.get("titles") else {}
    sections = []
    for entry in entries:
        name, equals, path = (part.strip() for part in entry.partition("="))
        if not equals or not path:
            raise ValueError(f"config.sections: {entry!r} has no path (expected name=workdir)")
        if not _NAME.fullmatch(name):
            raise ValueError(f"config.sections: {name!r} is not a lower_snake_case name")
        if name in (section.name for section in sections):
            raise ValueError(f"config.sections: {name!r} is listed twice in {text!r}")
        command = str(commands.get(name) or "").strip()
        if not command:
            raise ValueError(f"config.commands.{name}: missing; the command that writes "
                             f"{path}/{config.results_file}")
        sections.append(Section(name, str(titles.get(name) or name), path, command))
    return sections


def demote(markdown: str, levels: int = HEADING_SHIFT) -> str:
    """`markdown` with every ATX heading `levels` deeper (at most H6); code fences untouched."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        match = None if fenced else re.match(r"(#{1,6})(\s.*|)$", line)
        if match:
            line = "#" * min(6, len(match.group(1)) + levels) + match.group(2)
        lines.append(line)
    return "\n".join(lines)


def _inside(workdir: str, name: str) -> str | None:
    """The path of `name` in workdir, or None when it is a URL or leaves workdir."""
    if "://" in name or name.startswith(("/", "#", "data:")):
        return None
    path = os.path.normpath(os.path.join(workdir, urllib.parse.unquote(name)))
    root = os.path.normpath(workdir)
    return path if os.path.commonpath([root, path]) == root and path != root else None


def figure_names(results: dict[str, Any], markdown: str | None, workdir: str) -> list[str]:
    """The figures of one section, named relative to workdir, each once, in this order.

    results.json's `figures` list and `figure`, then the images results.md shows; when none
    is named, every PNG at the top of workdir (sorted). Only names inside workdir are
    returned; they need not exist.
    """
    listed = results.get("figures")
    names = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
    if isinstance(results.get("figure"), str):
        names.append(results["figure"])
    names += [target for _, target in _IMAGE.findall(markdown or "")]
    if not names:
        names = sorted(name for name in os.listdir(workdir) if name.lower().endswith(".png"))
    return [name for name in dict.fromkeys(names) if _inside(workdir, name)]


def unfinished(results: dict[str, Any]) -> str | None:
    """Why results.json says its run is partial or unfinished, or None (a finished run).

    Reads the top-level fields `partial` (true), `finished` / `complete` / `completed`
    (false) and `status` (anything but finished, complete, done...). A results.json without
    any of them is finished: the experiments write it when their last unit is done.
    """
    if results.get("partial"):
        return f"results.json says partial: {json.dumps(results['partial'])}"
    for key in ("finished", "complete", "completed"):
        if key in results and results[key] is False:
            return f"results.json says {key}: false"
    status = results.get("status")
    if isinstance(status, str) and status.lower() not in _FINISHED_STATUSES:
        return f"results.json says status: {status}"
    return None


def _written(results: dict[str, Any], path: str) -> str:
    """When results.json was written: its own timestamp field if any, else the file's mtime."""
    for key in _TIME_KEYS:
        value = results.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            stamp = datetime.datetime.fromtimestamp(value, datetime.UTC)
            return f"{stamp:%Y-%m-%d %H:%M:%S} UTC (results.json `{key}`)"
        if isinstance(value, str) and value:
            return f"{value} (results.json `{key}`)"
    stamp = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.UTC)
    return f"{stamp:%Y-%m-%d %H:%M:%S} UTC (file time of {os.path.basename(path)})"


def _environment(results: dict[str, Any]) -> list[str]:
    """`jax X, jaxlib Y` and `devices: ...` as recorded (experiments store `environment`)."""
    environment = results.get("environment")
    environment = environment if isinstance(environment, dict) else results
    versions = environment.get("versions") if isinstance(environment.get("versions"),
                                                        dict) else {}
    parts = [", ".join(f"{name} {versions[name]}" for name in ("jax", "jaxlib")
                       if name in versions)]
    devices = environment.get("devices")
    if isinstance(devices, list) and devices:
        parts.append("devices: " + ", ".join(map(str, devices)))
    if environment.get("cpu_count"):
        parts.append(f"{environment['cpu_count']} CPU cores")
    return [part for part in parts if part]


def gather(section: Section, config) -> dict[str, Any]:
    """What one section's workdir holds: status, timestamps, versions, Markdown, figures.

    Returns a dict with `status` ("finished", "partial", "unfinished" = a workdir without
    results.json, "missing" = no workdir, "unreadable"), `notes` (lines for the reader) and,
    when results.json was read, `written`, `environment`, `markdown` (or None) and `figures`
    (names inside the workdir that exist) and `absent_figures` (named but not found).
    """
    results_path = os.path.join(section.path, config.results_file)
    found: dict[str, Any] = {"section": section, "notes": [], "figures": [],
                             "absent_figures": [], "markdown": None}
    if not os.path.isfile(results_path):
        found["status"] = "unfinished" if os.path.isdir(section.path) else "missing"
        return found
    try:
        with open(results_path) as file:
            results = json.load(file)
        if not isinstance(results, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        found["status"] = "unreadable"
        found["notes"].append(f"`{results_path}` could not be read: {error}")
        return found
    reason = unfinished(results)
    found["status"] = "partial" if reason else "finished"
    found["written"] = _written(results, results_path)
    found["environment"] = _environment(results)
    if reason:
        found["notes"].append(f"**Partial run**: {reason}; the results below cover only what "
                              "it had finished.")
    if isinstance(results.get("command"), str):
        found["notes"].append(f"Recorded command: `{results['command']}`")
    markdown_path = os.path.join(section.path, config.markdown_file)
    if os.path.isfile(markdown_path):
        with open(markdown_path) as file:
            found["markdown"] = file.read()
        if os.path.getmtime(markdown_path) < os.path.getmtime(results_path) - 300:
            found["notes"].append(f"`{config.markdown_file}` is older than results.json by "
                                  "more than 5 minutes: it may be from an earlier run.")
    else:
        found["notes"].append(f"No `{config.markdown_file}` in `{section.path}`: only the "
                              "record above and the figures are reported.")
    for name in figure_names(results, found["markdown"], section.path):
        exists = os.path.isfile(_inside(section.path, name))
        found["figures" if exists else "absent_figures"].append(name)
    return found


def _link(section: Section, name: str) -> str:
    """The report-relative link of a copied figure: figures/<section>/<name>."""
    relative = os.path.normpath(urllib.parse.unquote(name)).replace(os.sep, "/")
    return urllib.parse.quote(f"figures/{section.name}/{relative}")


def previous_sections(output_dir: str) -> dict[str, dict[str, str]]:
    """The finished sections of the report already in output_dir, by title.

    Returns {title: {"body": the section's Markdown below its heading, "written": the overview
    table's written column, "generated": when that report was generated}}; {} when there is no
    earlier report. Sections the earlier report had not run (or could not read) are left out.
    """
    path = os.path.join(output_dir, "report.md")
    if not os.path.isfile(path):
        return {}
    with open(path) as file:
        text = file.read()
    generated = re.search(r"^Generated (.+?) by ", text, flags=re.M)
    rows = {match.group(1): (match.group(2), match.group(3))
            for match in re.finditer(r"^\| (.+?) \| `[^`]*` \| ([a-z ]+) \| (.+?) \|$", text,
                                     flags=re.M)}
    found = {}
    # Included results are demoted below H2, so "## " at a line start opens a section.
    for chunk in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = chunk.partition("\n")
        status, written = rows.get(title.strip(), ("", "-"))
        if status in ("finished", "partial", "carried over"):
            found[title.strip()] = {"body": body.strip(), "written": written,
                                    "generated": generated.group(1) if generated else "?"}
    return found


def carry_over(found: dict[str, Any], previous: dict[str, dict[str, str]]) -> dict[str, Any]:
    """`found` of a section with no results here, replaced by its earlier report's text.

    A checkout may lack a run's workdir (workdirs/ is not committed, and results/ holds only
    what was run since it existed); the last report is then the only record of that run, kept
    (and labelled as such) until the run is repeated.
    """
    old = previous.get(found["section"].title)
    if found["status"] not in ("missing", "unfinished") or old is None:
        return found
    return {**found, "status": "carried over", "written": old["written"],
            "carried": old}


def _status_line(found: dict[str, Any]) -> str:
    section, status = found["section"], found["status"]
    expected = os.path.join(section.path, "results.json")
    if status == "missing":
        return f"not run yet (expected at `{expected}`, command: `{section.command}`)"
    if status == "unfinished":
        return (f"not run yet (expected at `{expected}`, command: `{section.command}`); "
                f"`{section.path}` exists without results.json: a run is in progress or "
                "stopped before writing its results")
    if status == "unreadable":
        return f"results.json unreadable (command: `{section.command}`)"
    return status


def render_section(found: dict[str, Any]) -> str:
    """The Markdown of one section: heading, record, notes, results.md, remaining figures."""
    section = found["section"]
    lines = [f"## {section.title}", ""]
    if found["status"] == "carried over":
        old = found["carried"]
        if not old["body"].startswith("Carried over"):
            lines += [f"Carried over from the report generated {old['generated']}: this "
                      f"checkout has no results at `{section.path}`, so the text and figures "
                      f"below are that report's, unchanged (to redo: `{section.command}`).", ""]
        return "\n".join(lines + [old["body"]]).strip() + "\n"
    if found["status"] not in ("finished", "partial"):
        lines += [f"{_status_line(found)[0].upper()}{_status_line(found)[1:]}.", "",
                  *[f"- {note}" for note in found["notes"]]]
        return "\n".join(lines).rstrip() + "\n"
    record = [f"Workdir `{section.path}`", f"written {found['written']}",
              *found["environment"]]
    lines += ["; ".join(record) + "."]
    notes = found["notes"] + [f"Figure `{name}` is named by the results but is not in "
                              f"`{section.path}`." for name in found["absent_figures"]]
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    shown = set()
    if found["markdown"] is not None:

        def image(match):
            target = match.group(2)
            if target in found["figures"]:
                shown.add(target)
                return f"![{match.group(1)}]({_link(section, target)})"
            return match[0] if "://" in target else f"(figure `{target}` not in the workdir)"

        markdown = _IMAGE.sub(image, found["markdown"]).strip()
        first, _, after = markdown.partition("\n")
        if first.lstrip("# ").strip().lower() == section.title.lower():
            markdown = after.strip()  # the results' own title repeats the section's heading
        lines += ["", demote(markdown)]
    rest = [name for name in found["figures"] if name not in shown]
    if rest:
        lines += ["", "Figures:", ""] + [f"![{name}]({_link(section, name)})" for name in rest]
    return "\n".join(lines).strip() + "\n"


def render(config, gathered: list[dict[str, Any]], generated: str) -> str:
    """report.md: the title, an overview table of every section, then the sections."""
    lines = [f"# {config.title}", "",
             f"Generated {generated} by `make report` (`python -m experiments.report_main`). "
             "Every number below is copied from the experiments' own files "
             f"(`{config.results_file}`, `{config.markdown_file}`, figures); a section whose "
             "results do not exist yet says so and names the command that makes them; one "
             "marked carried over is the previous report's, kept because its results are not "
             "in this checkout.", "",
             "| section | workdir | status | written |", "| --- | --- | --- | --- |"]
    for found in gathered:
        section = found["section"]
        status = found["status"] if found["status"] in ("finished", "partial",
                                                         "carried over") else (
            "not run yet" if found["status"] != "unreadable" else "unreadable")
        lines.append(f"| {section.title} | `{section.path}` | {status} | "
                     f"{found.get('written', '-')} |")
    body = [render_section(found) for found in gathered]
    return "\n".join(lines) + "\n\n" + "\n".join(body)


def _replace_folder(staging: str, output_dir: str) -> None:
    """Puts the finished `staging` folder at output_dir (renames; the old report is removed)."""
    if not os.path.exists(output_dir):
        os.rename(staging, output_dir)
        return
    previous = staging + ".previous"
    os.rename(output_dir, previous)
    os.rename(staging, output_dir)
    shutil.rmtree(previous)


def build(config, output_dir: str, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Writes <output_dir>/report.md and figures/<section>/..., replacing an earlier report.

    The report is assembled in a temporary folder beside output_dir and renamed into place, so
    a reader sees the old report or the new one, never a half-written one (between the two
    renames that swap them there is, for an instant, no folder). With config.carry_over (the
    default), a section whose workdir holds no results keeps the earlier report's text and
    figures, labelled as carried over, rather than losing the only record of a long run.

    Args:
      config: see experiments/configs/report.py (sections, commands, titles, file names).
      output_dir: the report's folder; replaced whole, so it may hold only report.md and
        figures/ (a folder of other files is refused rather than deleted).
      now: the generation time written into the report (default: the current UTC time).

    Returns:
      {"report": path of report.md, "sections": {name: status}}.

    Raises:
      ValueError: for a bad config (naming the field) or an output_dir that holds other files.
    """
    sections = parse_sections(config)
    output_dir = os.path.normpath(output_dir)
    if os.path.exists(output_dir):
        extra = (sorted(set(os.listdir(output_dir)) - REPORT_ENTRIES)
                 if os.path.isdir(output_dir) else [output_dir])
        if extra:
            raise ValueError(f"output_dir {output_dir!r}: holds {', '.join(extra)}, not only "
                             "report.md and figures/; refusing to replace it")
    previous = previous_sections(output_dir) if config.get("carry_over", True) else {}
    gathered = [carry_over(gather(section, config), previous) for section in sections]
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(output_dir)}.tmp-")
    try:
        for found in gathered:
            section = found["section"]
            old_figures = os.path.join(output_dir, "figures", section.name)
            if found["status"] == "carried over" and os.path.isdir(old_figures):
                shutil.copytree(old_figures, os.path.join(staging, "figures", section.name))
            for name in found["figures"]:
                target = os.path.join(staging, urllib.parse.unquote(_link(section, name)))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copyfile(_inside(section.path, name), target)
            logging.info("%s: %s%s", section.name, _status_line(found),
                         f" ({found['written']}; figures: {len(found['figures'])})"
                         if "written" in found else "")
        now = now or datetime.datetime.now(datetime.UTC)
        text = render(config, gathered, f"{now:%Y-%m-%d %H:%M:%S} UTC")
        with open(os.path.join(staging, "report.md"), "w") as file:  # staged: no temp name
            file.write(text)
        os.chmod(staging, 0o755)
        _replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    path = os.path.join(output_dir, "report.md")
    logging.info("wrote %s", path)
    return {"report": path, "sections": {f["section"].name: f["status"] for f in gathered}}
