"""The default Simulator: MuJoCo on a pool of worker processes, batched, flagged, deterministic."""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import weakref

import numpy as np

from f2p.scene import Scene, Skill, validate_scene, validate_skill
from f2p.world import DIVERGED, INVALID_INPUT, OK, SIM_ERROR, USABLE_STATUSES, Outcome
from isaac_bridge import protocol
from isaac_bridge.mujoco_item import ItemResult, simulate_chunk
from isaac_bridge.mujoco_skills import ExecutionSettings

_LOG = logging.getLogger(__name__)
START_METHODS = ("forkserver", "spawn")
"""Pool start methods: never fork, the parent may have JAX (threads) initialised."""


def item_seed(seed: int, index: int) -> int:
    """Seed of batch item `index`: independent of the worker count and of chunking."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(1)[0])


def _as_numpy(tree):
    return type(tree)(*(np.asarray(field) for field in tree))


def _item(tree, index: int):
    return type(tree)(*(field[index] for field in tree))


def _check_batch(scenes: Scene, skills: Skill | None) -> int:
    """Return the batch size B, or raise ValueError when the batch itself is malformed."""
    kind = scenes.kind
    if kind.ndim != 2:
        raise ValueError(f"scenes.kind: expected a batch [B, K], got shape {kind.shape}")
    batch, k = kind.shape
    for field, tail in (("half_extents", (k, 3)), ("pos", (k, 3)), ("yaw", (k,)),
                        ("mask", (k,))):
        shape = getattr(scenes, field).shape
        if shape != (batch, *tail):
            raise ValueError(f"scenes.{field}: shape {shape}, expected {(batch, *tail)}")
    if skills is None:
        return batch
    for field, tail in (("skill", ()), ("obj", ()), ("support", ()), ("params", (2,))):
        shape = getattr(skills, field).shape
        if shape != (batch, *tail):
            raise ValueError(f"skills.{field}: shape {shape}, expected {(batch, *tail)}")
    return batch


def _validate_item(scene: Scene, skill: Skill | None) -> str | None:
    """Return the validation error of one item, or None when it can be simulated."""
    try:
        validate_scene(scene)
        if skill is not None:
            validate_skill(skill, scene)
    except ValueError as error:
        return str(error)
    return None


class MujocoSimulator:
    """Executes (or only settles) batches of scenes in MuJoCo (implements Simulator).

    Each item builds its own model, settles it, runs the skill with a kinematic gripper or
    paddle, settles again and reads poses and contacts back. Relations are labelled in this
    (parent) process with f2p.relations.hard_relations, so workers never import JAX.

    A worker process that dies (a crash in MuJoCo, the OOM killer) breaks the pool: every item
    whose chunk had not come back gets SIM_ERROR, and the next batch starts a fresh pool.
    """

    chunk_runner = staticmethod(simulate_chunk)
    """What a worker runs on each chunk: (items, physics, settings) -> [ItemResult | None].

    Always simulate_chunk in use; it is an attribute only so that a test can put in a
    module-level function that kills its worker process, to check the recovery above.
    """

    def __init__(self, num_workers: int | None = None,
                 physics: protocol.PhysicsParams = protocol.PhysicsParams(),
                 settle_time: float | None = None,
                 settings: ExecutionSettings = ExecutionSettings(),
                 start_method: str = "forkserver", chunks_per_worker: int = 4):
        """Configure the simulator; the worker pool starts on the first batch.

        Args:
          num_workers: worker processes (None: os.cpu_count(); 0 or 1: run in this process).
          physics: physical parameters (the defaults are the nominal simulator).
          settle_time: longest settling phase in seconds (overrides settings.settle_time).
          settings: skill execution and outcome-judging settings.
          start_method: "forkserver" or "spawn" (fork is unsafe once JAX is initialised).
          chunks_per_worker: a batch is split into about this many chunks per worker, which
            balances load; results do not depend on it.

        """
        if start_method not in START_METHODS:
            raise ValueError(f"start_method: {start_method!r}; allowed: {', '.join(START_METHODS)}")
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers: must be >= 0 or None, got {num_workers}")
        if chunks_per_worker < 1:
            raise ValueError(f"chunks_per_worker: must be >= 1, got {chunks_per_worker}")
        self.num_workers = (os.cpu_count() or 1) if num_workers is None else int(num_workers)
        self.physics = protocol.PhysicsParams(*physics)
        if settle_time is not None:
            if settle_time <= 0:
                raise ValueError(f"settle_time: must be > 0 seconds, got {settle_time}")
            settings = settings._replace(settle_time=float(settle_time))
        self.settings = settings
        self.start_method = start_method
        self.chunks_per_worker = chunks_per_worker
        self.cpu_seconds = 0.0
        """Total CPU time spent simulating items so far, over all workers (for benchmarks)."""
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._finalizer = None

    # Pool management -------------------------------------------------------------------------

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context(self.start_method)
            self._pool = concurrent.futures.ProcessPoolExecutor(self.num_workers,
                                                                mp_context=context)
            self._finalizer = weakref.finalize(self, self._pool.shutdown, cancel_futures=True)
        return self._pool

    def close(self) -> None:
        """Stop the worker pool (it restarts on the next batch)."""
        if self._finalizer is not None:
            self._finalizer()
        self._pool, self._finalizer = None, None

    def __enter__(self) -> MujocoSimulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Execution -------------------------------------------------------------------------------

    def _run(self, items: list) -> list[ItemResult | None]:
        """Simulate (scene, skill, seed) items in order; None marks an item that failed."""
        if self.num_workers <= 1 or len(items) <= 1:
            return self.chunk_runner(items, self.physics, self.settings)
        chunk = max(1, -(-len(items) // (self.num_workers * self.chunks_per_worker)))
        pool = self._executor()
        futures = [pool.submit(self.chunk_runner, items[start:start + chunk], self.physics,
                               self.settings)
                   for start in range(0, len(items), chunk)]
        results: list[ItemResult | None] = []
        broken = False
        for future, start in zip(futures, range(0, len(items), chunk), strict=True):
            size = len(items[start:start + chunk])
            try:
                results.extend(future.result())
            except Exception as error:  # noqa: BLE001 - e.g. a worker died: flag its items
                _LOG.error("simulation chunk of %d items failed: %r", size, error)
                results.extend([None] * size)
                broken = True
        if broken:
            self.close()  # a broken pool cannot be reused; the next batch starts a fresh one
        return results

    def execute(self, scenes: Scene, skills: Skill, seed: int = 0) -> Outcome:
        """Execute skills[b] in scenes[b] for every b (see Simulator.execute).

        Items that fail validation get INVALID_INPUT and items whose simulation raises get
        SIM_ERROR; for those (and DIVERGED ones) pre and post are the input scene and the
        contacts and relations are all False. The rest of the batch is unaffected.

        Raises:
          ValueError: when the batch itself is malformed (shapes do not form a [B] batch).

        """
        scenes, skills = _as_numpy(Scene(*scenes)), _as_numpy(Skill(*skills))
        _check_batch(scenes, skills)
        return self._simulate(scenes, skills, seed)

    def settle(self, scenes: Scene, seed: int = 0) -> Outcome:
        """Let every scene come to rest, executing no skill (see Simulator.settle).

        pre is each scene as simulated (after PhysicsParams noise, before any step) with its
        contacts, post the settled state; statuses and flags are as in `execute`.

        Raises:
          ValueError: when the batch itself is malformed (shapes do not form a [B] batch).

        """
        scenes = _as_numpy(Scene(*scenes))
        _check_batch(scenes, None)
        return self._simulate(scenes, None, seed)

    def _simulate(self, scenes: Scene, skills: Skill | None, seed: int) -> Outcome:
        """Simulate a checked batch; skills None only settles every scene."""
        batch, k = scenes.kind.shape
        status = np.full(batch, OK, np.int32)
        items, indices = [], []
        for index in range(batch):
            scene = _item(scenes, index)
            skill = None if skills is None else _item(skills, index)
            error = _validate_item(scene, skill)
            if error is not None:
                _LOG.info("item %d: invalid input: %s", index, error)
                status[index] = INVALID_INPUT
                continue
            items.append((scene, skill, item_seed(seed, index)))
            indices.append(index)
        half_extents = np.array(scenes.half_extents, np.float32)
        pre_pos = np.array(scenes.pos, np.float32)
        pre_yaw = np.array(scenes.yaw, np.float32)
        post_pos, post_yaw = pre_pos.copy(), pre_yaw.copy()
        contact_pre = np.zeros((batch, k, k), bool)
        contact_post = np.zeros((batch, k, k), bool)
        fell = np.zeros((batch, k), bool)
        for index, result in zip(indices, self._run(items), strict=True):
            if result is None:
                status[index] = SIM_ERROR
                continue
            status[index] = result.status
            self.cpu_seconds += result.cpu_seconds
            if result.status == DIVERGED:
                continue
            half_extents[index] = result.half_extents
            pre_pos[index], pre_yaw[index] = result.pre_pos, result.pre_yaw
            post_pos[index], post_yaw[index] = result.post_pos, result.post_yaw
            contact_pre[index], contact_post[index] = result.contact_pre, result.contact_post
            fell[index] = result.fell
        pre = scenes._replace(half_extents=half_extents, pos=pre_pos, yaw=pre_yaw)
        post = scenes._replace(half_extents=half_extents.copy(), pos=post_pos, yaw=post_yaw)
        labelled = ~np.isin(status, (INVALID_INPUT, SIM_ERROR,
                                     DIVERGED))
        return Outcome(
            pre=pre,
            post=post,
            contact_pre=contact_pre,
            contact_post=contact_post,
            relations_pre=_relations(pre, contact_pre, labelled),
            relations_post=_relations(post, contact_post, labelled),
            fell=fell,
            ok=np.isin(status, USABLE_STATUSES),
            status=status,
        )


def _relations(scenes: Scene, contact: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """[B, K, K, 9] hard relations, labelled in this process; all False for unlabelled items."""
    from f2p.relations import hard_relations  # JAX stays out of the worker processes

    mask = np.asarray(scenes.mask, bool) & labelled[:, None]
    # Non-finite inputs of flagged items must not reach the jitted labeller.
    finite = Scene(*(np.where(np.isfinite(field), field, 0) if field.dtype.kind == "f"
                     else field for field in scenes))
    relations = np.array(hard_relations(finite._replace(mask=mask), contact & labelled[:, None,
                                                                                         None]))
    relations &= (mask[:, :, None] & mask[:, None, :])[..., None]
    return relations
