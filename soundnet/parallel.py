"""Where per-file work runs: here, on this machine's cores, or on a Dask cluster.

A command describes one file's work as a task function (module level, so a worker
process imports it; pure inputs -> result) and hands it to :func:`soundnet.batch.run_batch`
with the ``mapper`` of a :class:`Workers`. Whatever runs the tasks, the results come
back in input order and are written by the calling process, in one place, so
``--jobs 1``, ``--jobs N`` and ``--scheduler`` give the same outputs.

At most ``2 x workers`` tasks are in flight (submitted, not yet consumed), so memory
stays bounded however many files there are. Log records a task emits in a worker
(a warning about a file) are sent back with its result and logged here, in order.
Values every task needs (the model) go to each worker once: :meth:`Workers.share`.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from soundnet.errors import SoundnetError, UsageError

log = logging.getLogger(__name__)

LOGGER = "soundnet"  # the records of this logger and its children travel back from workers


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it, else all)."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def check_jobs(jobs: int | None) -> int:
    """``jobs``, or the usable cores when None; refuses values below 1."""
    if jobs is None:
        return usable_cores()
    if not isinstance(jobs, int) or jobs < 1:
        raise SoundnetError(f"jobs must be an integer >= 1. Received: jobs={jobs!r}")
    return jobs


class _Collector(logging.Handler):
    """In a worker process, the only handler of soundnet's records: each goes to the list
    of the task running in its thread (a Dask worker runs several tasks at once)."""

    def __init__(self):
        super().__init__()
        self.tasks = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        records, level = getattr(self.tasks, "records", None), getattr(self.tasks, "level", logging.INFO)
        if records is not None and record.levelno >= level:
            record.msg, record.args = record.getMessage(), None  # arguments may not pickle
            record.exc_info = record.exc_text = record.stack_info = None
            records.append(record)


_COLLECTOR = _Collector()
_COLLECTOR_LOCK = threading.Lock()


def _logged(fn: Callable, level: int, item, shared: dict) -> tuple[list[logging.LogRecord], object]:
    """``fn(item, **shared)`` in a worker, with the soundnet log records it emitted at ``level`` or above."""
    logger = logging.getLogger(LOGGER)
    with _COLLECTOR_LOCK:
        if logger.handlers != [_COLLECTOR]:  # a forked worker inherits the caller's stderr handler
            logger.handlers[:] = [_COLLECTOR]
            logger.propagate = False
        if logger.getEffectiveLevel() > level:
            logger.setLevel(level)
    _COLLECTOR.tasks.records, _COLLECTOR.tasks.level = [], level
    try:
        return _COLLECTOR.tasks.records, fn(item, **shared)
    finally:
        _COLLECTOR.tasks.records = None


def _replay(records: list[logging.LogRecord]) -> None:
    for record in records:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def ordered(
    submit: Callable,
    fn: Callable,
    items: Iterable,
    *,
    ahead: Callable[[], int],
    cancel: Callable = lambda future: future.cancel(),
):
    """``fn(item)`` of every item through ``submit`` (which returns a future), yielded in
    input order, with at most ``ahead()`` futures outstanding (asked again as results
    arrive: a cluster grows and shrinks). Closing the generator cancels the tasks not
    yet started."""
    pending: collections.deque = collections.deque()  # (item, future)
    try:
        for item in items:
            pending.append((item, submit(fn, item)))
            if len(pending) >= ahead():
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())
    finally:
        for _, future in pending:
            cancel(future)


def item_name(item) -> str:
    """The file an item of work is about, for messages: a detect task's output ``name``,
    the first path of an extract task tuple, else the item itself."""
    if isinstance(item, tuple):
        item = next((part for part in item if isinstance(part, (str, Path))), item)
    elif isinstance(getattr(item, "name", None), str) and not isinstance(item, Path):
        item = item.name
    return str(item)


def _result(item, future):
    """``future.result()``; a worker process that died (killed, out of memory) breaks the
    pool: one line naming the file it was working through, not "handle is closed"."""
    try:
        return future.result()
    except BrokenExecutor:
        raise SoundnetError(
            f"{item_name(item)}: a worker process died while soundnet worked through this file or one beside it "
            "(killed, or out of memory?); what finished is kept: rerun to resume (detect: with --resume), "
            "or use --jobs 1"
        ) from None


def _fork_is_safe() -> bool:
    """A forked worker starts warm; it is safe on Linux when this process runs no other
    Python thread (a lock held there would stay locked in the child)."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


def _worker_start(initializer: Callable | None) -> None:
    from soundnet.features import one_blas_thread

    one_blas_thread()  # for good in this worker: the cores belong to the other workers
    if initializer is not None:
        initializer()


@dataclass(frozen=True)
class Shared:
    """A value sent to each worker once (:meth:`Workers.share`); tasks receive the value."""

    value: object


class Workers:
    """The processes that run a batch's tasks; a context manager.

    Parameters
    ----------
    jobs : int >= 1 or None
        Worker processes on this machine (None: the usable cores). One job, or fewer
        than two tasks, runs the tasks here in this process.
    scheduler : str or None
        The address of a Dask distributed scheduler (``tcp://host:8786``); the tasks run
        on its workers instead (``jobs`` is then ignored).
    tasks : int
        How many tasks the batch holds (no more workers are started).
    warm : callable, optional
        Run here before forking workers, so that they start with it done (librosa's
        first-call imports).
    initializer : callable, optional
        Run in each local worker process when it starts.
    fork : bool
        Whether local workers may be forked from this process (faster to start, warm).
        False when they will run TensorFlow, whose threads a fork leaves broken: they
        are spawned then, as they are whenever this process runs other threads.
    """

    def __init__(
        self,
        jobs: int | None = 1,
        *,
        scheduler: str | None = None,
        tasks: int,
        warm: Callable[[], None] | None = None,
        initializer: Callable[[], None] | None = None,
        fork: bool = True,
    ):
        self.jobs = check_jobs(jobs)
        self.scheduler = scheduler
        self.tasks = tasks
        self._warm, self._initializer, self._fork = warm, initializer, fork
        self._pool: ProcessPoolExecutor | None = None
        self._client = None

    @property
    def remote(self) -> bool:
        """Whether tasks run in other processes (their arguments and results are pickled)."""
        return self._pool is not None or self._client is not None

    @property
    def processes(self) -> int:
        """Worker processes on this machine (1: tasks run here)."""
        return self._pool._max_workers if self._pool is not None else 1

    def __enter__(self) -> Workers:
        if self.scheduler is not None:
            self._client = connect(self.scheduler)
        elif self.jobs > 1 and self.tasks >= 2:
            if self._fork and _fork_is_safe():
                if self._warm is not None:
                    self._warm()
                context = multiprocessing.get_context("fork")
            else:
                context = multiprocessing.get_context("spawn")
            try:
                self._pool = ProcessPoolExecutor(
                    min(self.jobs, self.tasks),
                    mp_context=context,
                    initializer=_worker_start,
                    initargs=(self._initializer,),
                )
            except (NotImplementedError, OSError, ImportError) as error:  # no named semaphores (/dev/shm), no fork...
                log.warning("cannot start worker processes here (%s): one file at a time in this process", error)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def share(self, value) -> Shared:
        """``value`` as something every task receives: with Dask, sent to every worker
        once (scattered) instead of with each task."""
        if self._client is not None:
            return Shared(self._client.scatter(value, broadcast=True, hash=False))
        return Shared(value)

    def mapper(self, **shared: Shared) -> Callable[[Callable, Iterable], Iterator]:
        """A ``map(fn, items)`` for :func:`soundnet.batch.run_batch`: ``fn(item, **shared)``
        for each item, in order."""
        values = {name: s.value for name, s in shared.items()}
        if self._client is None and self._pool is None:
            return lambda fn, items: (fn(item, **values) for item in items)
        level = logging.getLogger(LOGGER).getEffectiveLevel()

        def run(fn: Callable, items: Iterable) -> Iterator:
            task = functools.partial(_logged, fn, level)
            if self._client is not None:
                ahead = _ClusterSize(self._client)
                submit = functools.partial(_dask_submit, self._client, values)
            else:
                ahead = functools.partial(int, 2 * self.processes)
                submit = functools.partial(_pool_submit, self._pool, values)
            results = ordered(submit, task, items, ahead=ahead)
            while True:
                try:
                    records, result = next(results)
                except StopIteration:
                    return
                except Exception as error:
                    if self._client is None or isinstance(error, (SoundnetError, OSError)):
                        raise
                    # the cluster's own failures: a worker lost with a task, a cancelled task
                    raise SoundnetError(
                        f"{self.scheduler}: the Dask cluster failed a task ({type(error).__name__}: {error}); "
                        "what finished is kept: rerun to resume (detect: with --resume)"
                    ) from None
                _replay(records)
                yield result

        return run


class _ClusterSize:
    """Twice the threads of the cluster's workers, asked again every few seconds (a
    cluster grows and shrinks: SLURM jobs start and end)."""

    def __init__(self, client, *, every: float = 5.0):
        self.client, self.every = client, every
        self.asked, self.value = -math.inf, 2

    def __call__(self) -> int:
        now = time.monotonic()
        if now - self.asked >= self.every:
            self.value = 2 * max(1, sum(self.client.nthreads().values()))
            self.asked = now
        return self.value


def _pool_submit(pool: ProcessPoolExecutor, shared: dict, fn: Callable, item):
    return pool.submit(fn, item, shared)


def _dask_submit(client, shared: dict, fn: Callable, item):
    return client.submit(_unpack_shared, fn, item, **shared, pure=False)


def _unpack_shared(fn: Callable, item, **shared):
    """Dask resolves scattered values given as keyword arguments, not inside a dict."""
    _large_arrays_on_the_heap()
    return fn(item, shared)


@functools.cache
def _large_arrays_on_the_heap() -> None:
    """Once per Dask worker process: let glibc keep arrays up to 32 MiB on the heap.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, and glibc, given
    any such setting, stops raising its mmap threshold as programs free large blocks:
    every array above 128 KiB (a 5-minute file's samples, features and probabilities
    are several MB each) is then a fresh ``mmap`` whose pages the kernel zeroes, and
    each file cost 1.4-1.5x the CPU it costs in a local worker (bench/jobs.py,
    BENCHMARKS.md). The threshold is raised to glibc's own dynamic maximum; the trim
    threshold Dask set, which returns the heap's free top to the system, is kept.
    """
    from soundnet.backend import set_malloc_thresholds

    set_malloc_thresholds(mmap=32 * 2**20)


def connect(scheduler: str):
    """A Dask distributed client of the scheduler at ``scheduler`` (``tcp://host:8786``)."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError('--scheduler needs Dask distributed: pip install "soundnet[cluster]"') from None
    try:
        return Client(scheduler, set_as_default=False)  # waits distributed.comm.timeouts.connect (30 s)
    except (OSError, TimeoutError, ValueError) as error:
        raise SoundnetError(f"{scheduler}: cannot reach the Dask scheduler ({error})") from None
