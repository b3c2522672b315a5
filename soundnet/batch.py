"""Running one piece of work per file over a batch: results in order, failures kept.

extract, detect and evaluate all go through :func:`run_batch`: a file that fails is
logged once as it happens and recorded, the others go on (or, with ``fail_fast``, the
batch stops there), and the caller gets both lists back.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from soundnet.errors import SoundnetError

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Failure(Generic[Item]):
    """A file (or task) that could not be done, and the one-line reason."""

    item: Item
    message: str


@dataclass
class BatchResult(Generic[Item, Result]):
    """What a batch did: ``done`` holds ``(item, result)`` in input order."""

    done: list[tuple[Item, Result]] = field(default_factory=list)
    failures: list[Failure[Item]] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return len(self.done) + len(self.failures)


def attempt(work: Callable[..., Result], item: Item, **shared) -> tuple[Item, Result | None, str | None]:
    """``(item, work(item, **shared), None)``, or ``(item, None, reason)`` when it raised a
    SoundnetError or an OSError. A module-level function, so a worker process can run it."""
    try:
        return item, work(item, **shared), None
    except SoundnetError as error:
        return item, None, str(error)
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        return item, None, f"{where}{error.strerror or error}"


def run_batch(
    work: Callable[[Item], Result],
    items: Iterable[Item],
    *,
    fail_fast: bool = False,
    on_result: Callable[[Item, Result], None] | None = None,
    on_each: Callable[[], None] | None = None,
    mapper: Callable[..., Iterator] = map,
    key: Callable[[Item], object] | None = None,
    on_failure: Callable[[Item], None] | None = None,
) -> BatchResult[Item, Result]:
    """Do ``work`` on each item; collect results and failures.

    Parameters
    ----------
    work : callable
        One item's work; a SoundnetError or OSError marks that item failed.
    items : iterable
        The items, in order.
    fail_fast : bool
        Stop at the first failure instead of going on.
    on_result : callable, optional
        Called with ``(item, result)`` as each result arrives (writing its outputs). A
        SoundnetError it raises (the joined pieces of a long file whose events need its
        audio again, say, when the file went away meanwhile) is that item's failure.
    on_each : callable, optional
        Called once per finished item, failed or not (a progress bar).
    mapper : callable
        How work is mapped over items, in order: ``map`` here, or the ``mapper`` of a
        :class:`soundnet.parallel.Workers` (worker processes, a Dask cluster).
    key : callable, optional
        Items with the same key are parts of one thing (the pieces of a long file):
        once one fails, that is its one failure; the others' failures are not reported
        again and their results not passed on.
    on_failure : callable, optional
        Called with the item that failed (once per key).
    """
    batch: BatchResult = BatchResult()
    failed: set = set()
    for item, result, error in mapper(functools.partial(attempt, work), items):
        if on_each is not None:
            on_each()
        if key is not None and key(item) in failed:
            continue
        if error is None and on_result is not None:
            try:
                on_result(item, result)
            except SoundnetError as late:
                error = str(late)
        if error is not None:
            batch.failures.append(Failure(item, error))
            log.error("%s", error)
            if key is not None:
                failed.add(key(item))
            if on_failure is not None:
                on_failure(item)
            if fail_fast:
                break
            continue
        batch.done.append((item, result))
    return batch
