"""Reading list-valued experiment config fields ("tabletop,transport", "3,5") into checked lists."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def parse_list(value, allowed: Iterable, field: str, cast: Callable[[str], Any] = str) -> list:
    """Split a comma-separated config value, cast its entries and check them against `allowed`.

    Flags and configs carry lists as strings ("3,5"), which keeps them overridable from the
    command line; a list or tuple of entries is read the same way. Blanks around entries and
    empty entries ("a,,b", a trailing comma) are ignored.

    Args:
      value: the config value: a comma-separated string, a scalar (one entry) or a sequence.
      allowed: the values an entry may take, compared after `cast` (e.g. task names, or the
        ints of tasks.OBJECT_COUNTS with cast=int).
      field: the config field's name, for messages (e.g. "data.tasks").
      cast: turns one stripped text entry into a value (str, int, float...).

    Returns:
      The cast entries in the order given.

    Raises:
      ValueError: naming config.<field> and the allowed values, when the value lists no entry,
        an entry does not cast, is not allowed, or is listed twice.
    """
    allowed = list(allowed)
    choices = ", ".join(map(str, allowed))
    parts = value.split(",") if isinstance(value, str) else (
        value if isinstance(value, (list, tuple)) else [value])
    entries = [str(part).strip() for part in parts if str(part).strip()]
    if not entries:
        raise ValueError(f"config.{field}: empty; allowed: {choices}")
    values = []
    for entry in entries:
        try:
            parsed = cast(entry)
        except (TypeError, ValueError):
            raise ValueError(f"config.{field}: {entry!r} is not one of {choices}") from None
        if parsed not in allowed:
            raise ValueError(f"config.{field}: {parsed!r} is not one of {choices}")
        if parsed in values:
            raise ValueError(f"config.{field}: {parsed!r} is listed twice in {value!r}")
        values.append(parsed)
    return values


def as_named_tuple(config, kind: type, what: str):
    """Build the NamedTuple `kind` from an instance of it, a ConfigDict or a mapping.

    Missing fields take the NamedTuple's defaults; unknown fields raise, since they are likely
    typos of real ones.

    Args:
      config: an instance of `kind`, or anything with keys() and item access.
      kind: the NamedTuple class (e.g. f2p.planner.PlannerConfig).
      what: the section's name in messages (e.g. "planner").

    Raises:
      ValueError: naming the unknown field and the allowed ones, or the unexpected type.
    """
    if isinstance(config, kind):
        return config
    if not hasattr(config, "keys"):
        raise ValueError(f"config: expected {kind.__name__}, ConfigDict or mapping, got "
                         f"{type(config).__name__}")
    unknown = sorted(set(config.keys()) - set(kind._fields))
    if unknown:
        raise ValueError(f"config.{unknown[0]}: unknown {what} field; allowed: "
                         f"{', '.join(kind._fields)}")
    return kind(**{name: config[name] for name in config.keys()})
