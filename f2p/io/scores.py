"""Scores of (failure, method) units: rates with Wilson intervals, stage times, repair quality."""

from __future__ import annotations

from typing import Any

import numpy as np

from f2p.io import reporting

RATES = ("recovery", "retry", "future", "retention")
STAGES = ("classify_seconds", "generation_seconds", "labelling_seconds", "finetune_seconds",
          "plan_seconds")
"""Stages from a detected failure to the recovered plan (compile time is reported apart)."""


def rate(successes: int, trials: int) -> dict[str, float]:
    """Returns successes / trials with its 95 % Wilson interval (NaN for no trials)."""
    low, high = reporting.wilson_interval(successes, trials) if trials else (np.nan, np.nan)
    return {"successes": successes, "trials": trials,
            "rate": successes / trials if trials else float("nan"), "low": low, "high": high}


def cell(rate: dict[str, float]) -> str:
    """A rate() as a Markdown cell: '0.60 [0.31, 0.83] (10)', or '-' for no trials."""
    if not rate["trials"]:
        return "-"
    return f"{rate['rate']:.2f} [{rate['low']:.2f}, {rate['high']:.2f}] ({rate['trials']})"


def _finite(values) -> list[float]:
    # JSON stores an undefined figure (a random repair's state diversity) as null.
    return [v for v in values if v is not None and np.isfinite(v)]


def median(values) -> float:
    """Median of the finite values (None and NaN skipped), NaN when none is left."""
    values = _finite(values)
    return float(np.median(values)) if values else float("nan")


def mean(values) -> float:
    """Mean of the finite values (None and NaN skipped), NaN when none is left."""
    values = _finite(values)
    return float(np.mean(values)) if values else float("nan")


def summarise(units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task x method: the four rates (Wilson), stage seconds, labels, quality."""
    rows = []
    for task, method in dict.fromkeys((u["task"], u["method"]) for u in units):
        cell = [u for u in units if u["task"] == task and u["method"] == method]
        row = {"task": task, "method": method, "failures": len(cell)}
        for name in RATES:
            if name in ("recovery", "retry"):
                outcomes = [bool(u[name]) for u in cell if name in u]
            else:  # an unrepaired model's episodes are the base agent's, counted once
                outcomes = list({(u["failure"] if u.get("repaired") else "base", e["episode"]):
                                 bool(e["success"]) for u in cell for e in u.get(name, [])
                                 }.values())
            row[name] = rate(sum(outcomes), len(outcomes))
        row["retention_detections"] = sum({(u["failure"] if u.get("repaired") else "base",
                                            e["episode"]): bool(e["detected"]) for u in cell
                                           for e in u.get("retention", [])}.values())
        repairs = [u["repair"] for u in cell if "repair" in u]
        recovered = [r for u in cell for r in u["recoveries"] if r["action"] == "replace"]
        for stage in STAGES:
            source = recovered if stage in ("classify_seconds", "plan_seconds") else repairs
            row[stage] = median(r.get(stage) for r in source)
        row["total_seconds"] = (float(np.nansum([row[s] for s in STAGES]))
                                if repairs else row["plan_seconds"])
        for key in ("compile_seconds", "labels", "dropped", "reproduction", "diversity",
                    "attempts", "accepted"):
            row[key] = mean(r[key] for r in repairs)
        # Units written before the fine-tune's compile was timed apart lack the field (their
        # finetune_seconds include it).
        row["finetune_compile_seconds"] = mean(r.get("finetune_compile_seconds")
                                               for r in repairs)
        row["same_failure"] = all(u["same_failure"] for u in cell)
        rows.append(row)
    return rows
