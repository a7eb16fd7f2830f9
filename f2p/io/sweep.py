"""Sweep specifications ("generation.num_states=5,10,20") read into checked grids of config points.

One specification sweeps one field ("field=v1,v2,..."), or several fields together when they are
joined by ";" ("generation.num_states=5,10;generation.num_actions=4,10": zipped, equal lengths).
Several specifications form a grid (their Cartesian product). Values are cast to the type of
the field they override, so "20" for an int field is 20 and "0.5" for a float field is 0.5.
"""

from __future__ import annotations

import itertools
from typing import Any

Point = tuple[tuple[str, Any], ...]
"""One sweep point: ((dotted field, value), ...) in specification order (hashable)."""


def _lookup(config, field: str):
    node = config
    parts = field.split(".")
    for depth, part in enumerate(parts):
        if not hasattr(node, "keys") or part not in node.keys():
            known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none"
            where = ".".join(parts[:depth]) or "config"
            raise ValueError(f"sweep: unknown field {field!r} ({where} has {known})")
        node = node[part]
    if hasattr(node, "keys"):
        raise ValueError(f"sweep: {field!r} is a section, not a field; sweep one of its fields "
                         f"({', '.join(sorted(node.keys()))})")
    return node


def _cast(field: str, text: str, current: Any) -> Any:
    """Casts text to the type of the field's current value; ValueError names the field."""
    kind = type(current)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if value != value:  # NaN
                raise ValueError(text)
            return value
        if kind is str:
            return text
    except ValueError:
        raise ValueError(f"sweep: {field}={text!r} is not a valid {kind.__name__} (the field's "
                         f"current value is {current!r})") from None
    raise ValueError(f"sweep: {field!r} holds a {kind.__name__} ({current!r}); only int, float, "
                     "bool and str fields can be swept")


def parse_spec(spec: str, config) -> list[Point]:
    """The points of one specification: one field, or several zipped with ";".

    Raises:
      ValueError: naming the field, for a missing "=", an unknown field or section, an empty
        value list, a value of the wrong type, a repeated point or unequal zipped lengths.
    """
    columns = []
    for part in spec.split(";"):
        if "=" not in part:
            raise ValueError(f"sweep: {part.strip()!r} is not of the form field=v1,v2,...")
        field, values = (text.strip() for text in part.split("=", 1))
        current = _lookup(config, field)
        entries = [value.strip() for value in values.split(",") if value.strip()]
        if not entries:
            raise ValueError(f"sweep: {field}: empty value list")
        cast = [_cast(field, entry, current) for entry in entries]
        if any(field == name for name, _ in columns):
            raise ValueError(f"sweep: {field}: swept twice in {spec!r}")
        columns.append((field, cast))
    lengths = {len(values) for _, values in columns}
    if len(lengths) > 1:
        sizes = ", ".join(f"{field}: {len(values)}" for field, values in columns)
        raise ValueError(f"sweep: zipped fields need equal lengths ({sizes})")
    points = [tuple((field, values[i]) for field, values in columns)
              for i in range(lengths.pop())]
    # A zipped field may repeat a value (5,10,10 beside 4,5,10); a whole point may not.
    if len(set(map(repr, points))) != len(points):
        names = "; ".join(field for field, _ in columns)
        raise ValueError(f"sweep: {names}: a value is listed twice in {spec!r}")
    return points


def parse_sweep(specs, config) -> list[Point]:
    """The grid (Cartesian product) of several specifications; a field may appear in one only.

    Args:
      specs: a sequence of specifications (e.g. the values of a repeated --sweep flag).
      config: the ConfigDict whose fields they override (types are read from it).

    Raises:
      ValueError: no specification, a field in two of them, or any parse_spec error.
    """
    specs = [spec for spec in specs if str(spec).strip()]
    if not specs:
        raise ValueError("sweep: no specification; give field=v1,v2,... (e.g. "
                         "generation.num_states=5,10,20)")
    axes = [parse_spec(spec, config) for spec in specs]
    seen: set[str] = set()
    for axis in axes:
        fields = {field for field, _ in axis[0]}
        if fields & seen:
            raise ValueError(f"sweep: {sorted(fields & seen)[0]} appears in two specifications")
        seen |= fields
    return [tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*axes)]


def apply_point(config, point: Point):
    """A copy of config with the point's values set (the original is left unchanged)."""
    updated = config.copy_and_resolve_references()
    for field, value in point:
        *sections, name = field.split(".")
        node = updated
        for section in sections:
            node = node[section]
        node[name] = value
    return updated


def point_name(point: Point) -> str:
    """A file-safe name of a point, e.g. generation.num_states=5,finetune.steps=100."""
    return ",".join(f"{field}={value}" for field, value in point)


def point_fields(points: list[Point]) -> list[str]:
    """The dotted fields the points set, in specification order."""
    return [field for field, _ in points[0]] if points else []
