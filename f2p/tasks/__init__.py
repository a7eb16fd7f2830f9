"""The three tasks of DESIGN section 7, registered by name.

Fixtures: K_MAX = 8 slots must hold 7 movable objects, so every task has exactly one fixture,
in slot 0: the destination (table B, or the shelf board). Table A, where objects start, is the
ground plane (z = 0) that every simulator backend has, beside table B with a bare-floor gap.
This keeps every goal expressible as relations to a slot ("above table B"); a single wide table
whose halves were A and B would leave "on B" unexpressible (the cone rule cannot tell halves of
one box apart). The packing shelf has no side walls (no slot left for them).
"""

from __future__ import annotations

from f2p.tasks.base import (
    FIXTURE_SLOT,
    OBJECT_COUNTS,
    SPLITS,
    Goal,
    Skeleton,
    SkeletonStep,
    Task,
)
from f2p.tasks.packing import PackingTask
from f2p.tasks.tabletop import TabletopTask
from f2p.tasks.transport import TransportTask

_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task under its name; raise ValueError when the name is empty or taken."""
    if not task.name or task.name in _REGISTRY:
        raise ValueError(f"task.name: {task.name!r} is empty or already registered")
    _REGISTRY[task.name] = task
    return task


def task_names() -> tuple[str, ...]:
    """Return the names of the registered tasks, in registration order."""
    return tuple(_REGISTRY)


def get_task(name: str) -> Task:
    """Return the registered task called `name`, or raise a ValueError listing the names."""
    if name not in _REGISTRY:
        raise ValueError(f"task: unknown name {name!r}; registered: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


for _task in (TabletopTask(), TransportTask(), PackingTask()):
    register(_task)

__all__ = [
    "FIXTURE_SLOT", "OBJECT_COUNTS", "SPLITS", "Goal", "PackingTask", "Skeleton", "SkeletonStep",
    "TabletopTask", "Task", "TransportTask", "get_task", "register", "task_names",
]
