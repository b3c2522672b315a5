"""Reviewing detections: the reviewed table, the sample to review first, a review session.

A person looks at a detector's events one by one and accepts, rejects or skips each
(:mod:`soundnet.review_server` serves the page); the decisions go to a *reviewed
table*, a DCASE table with two more columns::

    filename  onset  offset  event_label  confidence  decision

``decision`` is ``accepted`` (the target sound), ``rejected`` (a false alarm: every
frame of the span is a negative) or ``skipped`` (unsure: ignored by training). The
table is rewritten whole, atomically, after each decision, so a killed review loses at
most the decision being made, and a restart resumes from it. Training reads it
(:mod:`soundnet.review_training`): accepted spans become target events, rejected ones
hard negatives.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from soundnet.errors import SoundnetError, UsageError
from soundnet.events import Event
from soundnet.formats import _csv_text, read_events, read_table, read_text
from soundnet.storage import write_text

log = logging.getLogger(__name__)

ACCEPTED, REJECTED, SKIPPED = "accepted", "rejected", "skipped"
DECISIONS = (ACCEPTED, REJECTED, SKIPPED)
STRATEGIES = ("top", "stratified", "uncertain")
REVIEWED_HEADER = ("filename", "onset", "offset", "event_label", "confidence", "decision")


@dataclass(frozen=True)
class Review:
    """One reviewed detection: the event and the reviewer's decision (one of :data:`DECISIONS`)."""

    event: Event
    decision: str


def detection_key(event: Event) -> tuple[str, float, float]:
    """What identifies a detection across tables: its file and its times to the millisecond
    (the precision every table soundnet writes keeps)."""
    return (event.filename, round(event.onset, 3), round(event.offset, 3))


# ---------------------------------------------------------------------------------
# Tables


def table_format(path: Path) -> str:
    """The format of an event table written by ``soundnet detect``, from its name and text:
    json, raven (a ``Selection`` header), csv (commas, no tab) or tsv."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return "json"
    text = read_text(path)
    first = text.lstrip().split("\n", 1)[0]
    if first.split("\t", 1)[0].strip().lower() == "selection":
        return "raven"
    return "csv" if "," in first and "\t" not in first else "tsv"


def read_detections(path: Path) -> list[Event]:
    """The events of any table ``soundnet detect`` writes (tsv, csv, json, raven), in file order.

    Raises
    ------
    SoundnetError
        Unreadable or malformed table (naming the file and line), a table without
        events, or a confidence outside 0-1.
    """
    path = Path(path)
    events = read_events(path, table_format(path))
    if not events:
        raise SoundnetError(f"{path}: no detection to review")
    odd = next((e for e in events if e.confidence is not None and not 0.0 <= e.confidence <= 1.0), None)
    if odd is not None:
        raise SoundnetError(
            f"{path}: the detection of {odd.filename} at {odd.onset:.3f}-{odd.offset:.3f} s has confidence {odd.confidence:g},"
            " outside 0-1"
        )
    return events


def read_reviewed(path: Path) -> list[Review]:
    """The decisions of a reviewed table, in file order.

    Raises
    ------
    SoundnetError
        Naming the file and line: a malformed row, a row without an event or without a
        known decision, or the same detection twice.
    """
    path = Path(path)
    reviews, seen = [], {}
    for row in read_table(path):
        if row.event is None:
            raise SoundnetError(f"{row.where}: a reviewed row needs onset and offset")
        if row.decision not in DECISIONS:
            found = "none" if row.decision is None else repr(row.decision)
            raise SoundnetError(f"{row.where}: decision {found}: expected one of {', '.join(DECISIONS)}")
        key = detection_key(row.event)
        if key in seen:
            raise SoundnetError(f"{row.where}: the detection of line {seen[key]} again ({row.filename} {key[1]}-{key[2]} s)")
        seen[key] = row.line
        reviews.append(Review(row.event, row.decision))
    return reviews


def render_reviewed(reviews: Sequence[Review]) -> str:
    """A reviewed table's text (tab separated, header :data:`REVIEWED_HEADER`)."""
    rows: list[Sequence[str]] = [REVIEWED_HEADER]
    for review in reviews:
        e = review.event
        confidence = "" if e.confidence is None else f"{e.confidence:.4f}"
        rows.append([e.filename, f"{e.onset:.3f}", f"{e.offset:.3f}", e.label, confidence, review.decision])
    return _csv_text(rows, delimiter="\t")


def write_reviewed(path: Path, reviews: Sequence[Review]) -> None:
    """Write a reviewed table, all or nothing (:func:`soundnet.storage.write_text`)."""
    write_text(Path(path), render_reviewed(reviews))


def resolve_audio(names: Sequence[str], audio: Path, *, table: Path | None = None) -> dict[str, Path]:
    """The audio file under folder ``audio`` that each table file name names: its path
    relative to ``audio``, else a unique file whose path ends with the name (a bare
    name matches by base name). ``table``, the table the names come from, is named in errors.

    Raises
    ------
    SoundnetError
        A name that names no file under ``audio``, or several.
    """
    from soundnet.audio import find_audio

    audio = Path(audio)
    files = find_audio([audio])
    by_relative = {path.relative_to(audio).as_posix(): path for path in files}
    resolved = {}
    for name in dict.fromkeys(names):
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name in by_relative:
            resolved[name] = by_relative[name]
            continue
        candidates = [path for path in files if ".." not in parts and path.parts[-len(parts) :] == parts] if parts else []
        if len(candidates) != 1:
            problem = "no audio file" if not candidates else f"{len(candidates)} audio files ({candidates[0]}, {candidates[1]})"
            source = f"{Path(table).name}'s" if table is not None else "the table's"
            raise SoundnetError(f"{audio}: {problem} for {source} file name {name!r}; give the folder the names are relative to")
        resolved[name] = candidates[0]
    return resolved


END_TOLERANCE = 0.05  # seconds a span may run past its recording's end (the writer's rounding)


def check_within_recordings(table: Path, spans: Iterable[tuple[str, float, float]], paths: Mapping[str, Path]) -> None:
    """Refuse a table whose spans (file name, onset, offset) end past their recording's end.

    Raises
    ------
    SoundnetError
        Naming the table, the first such span and the recording's duration.
    """
    from soundnet.audio import audio_duration

    durations: dict[str, float] = {}
    for name, onset, offset in spans:
        if name not in durations:
            durations[name] = audio_duration(paths[name])
        if offset > durations[name] + END_TOLERANCE:
            raise SoundnetError(
                f"{table}: the span {onset:.3f}-{offset:.3f} s of {name} ends past the recording's end"
                f" ({durations[name]:.3f} s): not the table of {paths[name]}?"
            )


def decision_counts(reviews: Sequence[Review]) -> dict[str, int]:
    """How many reviews hold each decision."""
    return {decision: sum(r.decision == decision for r in reviews) for decision in DECISIONS}


# ---------------------------------------------------------------------------------
# What to review first


def sample_detections(
    events: Sequence[Event], n: int, *, strategy: str, seed: int = 0, threshold: float = 0.5, bins: int = 10
) -> list[Event]:
    """``n`` detections to review first, in the order to review them.

    Parameters
    ----------
    events : sequence of Event
        The detections; each needs a confidence.
    n : int > 0
        How many (all of them if fewer).
    strategy : {"top", "stratified", "uncertain"}
        top: the highest confidences. stratified: evenly over ``bins`` equal-width
        confidence bins between the lowest and highest confidence (one from each bin in
        turn, drawn at random within a bin, a bin that runs out leaving its turns to the
        others; each round visits the highest bin, the lowest, then the middle ones by
        halving, so that a sample smaller than the bins still spans the range).
        uncertain: the confidences closest to ``threshold``.
    seed : int
        Seeds the draw within bins and the order of equal confidences: the same seed
        gives the same sample.
    threshold : float in [0, 1]
        The detector's threshold (for ``uncertain``).
    bins : int > 0
        Confidence bins of ``stratified``.

    Raises
    ------
    UsageError
        Unknown strategy, ``n`` or ``bins`` not positive.
    SoundnetError
        A detection without confidence (a tsv table carries none).
    """
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r} (choose one of {', '.join(STRATEGIES)})")
    if n < 1 or bins < 1:
        raise UsageError(f"n and bins must be positive integers. Received: n={n}, bins={bins}")
    missing = next((e for e in events if e.confidence is None), None)
    if missing is not None:
        raise SoundnetError(
            f"{missing.filename} {missing.onset:.3f}-{missing.offset:.3f} s: a detection without confidence; "
            "sampling needs the confidences of csv, json or raven tables"
        )
    rng = np.random.default_rng(seed)
    confidence = np.array([e.confidence for e in events], np.float64)
    tiebreak = rng.permutation(len(events))  # equal confidences in a seeded order
    if strategy == "top":
        order = np.lexsort((tiebreak, -confidence))
    elif strategy == "uncertain":
        order = np.lexsort((tiebreak, np.abs(confidence - threshold)))
    else:
        order = _stratified(confidence, rng, bins)
    return [events[i] for i in order[:n]]


def _stratified(confidence: np.ndarray, rng: np.random.Generator, bins: int) -> np.ndarray:
    """Indices of ``confidence``, one from each non-empty bin in turn, random within a bin."""
    if not len(confidence):
        return np.zeros(0, np.int64)
    lo, hi = float(confidence.min()), float(confidence.max())
    width = (hi - lo) / bins or 1.0
    which = np.minimum(((confidence - lo) / width).astype(np.int64), bins - 1)
    queues = [list(rng.permutation(np.flatnonzero(which == b))) for b in range(bins)]
    order = []
    while any(queues):
        present = [queue for queue in queues if queue]
        for k in _spread(len(present)):
            order.append(present[k].pop(0))
    return np.array(order, np.int64)


def _spread(k: int) -> list[int]:
    """``0 .. k-1`` with every prefix spread over the range: the last, the first, then
    midpoints by halving (10: 9, 0, 4, 2, 6, 1, 3, 5, 7, 8)."""
    order, intervals = ([k - 1, 0] if k > 1 else list(range(k))), [(0, k - 1)]
    while intervals:
        halves = []
        for a, b in intervals:
            if b - a > 1:
                order.append((a + b) // 2)
                halves += [(a, (a + b) // 2), ((a + b) // 2, b)]
        intervals = halves
    return order


# ---------------------------------------------------------------------------------
# A review session


class ReviewSession:
    """The detections under review and the decisions made, kept in the reviewed table.

    Decisions already in ``out`` are read back (a restart resumes); those of detections
    not under review now (another sample) are kept in the table as they were. Each
    :meth:`decide` rewrites the table atomically before it returns. Safe to call from
    several threads (the page's requests).
    """

    def __init__(self, detections: Sequence[Event], out: Path):
        self.detections = list(detections)
        self.out = Path(out)
        self._lock = threading.Lock()
        keys = [detection_key(e) for e in self.detections]
        if len(set(keys)) < len(keys):
            raise SoundnetError("the detections hold the same event twice (same file, onset and offset)")
        self._index = {key: i for i, key in enumerate(keys)}
        self.decisions: dict[int, str] = {}
        self._others: list[Review] = []
        if self.out.exists():
            for review in read_reviewed(self.out):
                i = self._index.get(detection_key(review.event))
                if i is None:
                    self._others.append(review)
                else:
                    self.decisions[i] = review.decision
            log.info("%s: %d decision(s) read back", self.out, len(self.decisions) + len(self._others))

    def decide(self, index: int, decision: str | None) -> None:
        """Record (``None``: withdraw) the decision on detection ``index`` and write the table."""
        if not 0 <= index < len(self.detections):
            raise SoundnetError(f"no detection {index} (there are {len(self.detections)})")
        if decision is not None and decision not in DECISIONS:
            raise SoundnetError(f"unknown decision {decision!r} (expected one of {', '.join(DECISIONS)})")
        with self._lock:
            previous = self.decisions.get(index)
            if decision is None:
                self.decisions.pop(index, None)
            else:
                self.decisions[index] = decision
            try:
                write_reviewed(self.out, self.reviews())
            except BaseException:
                if previous is None:
                    self.decisions.pop(index, None)
                else:
                    self.decisions[index] = previous
                raise

    def reviews(self) -> list[Review]:
        """Every decision of the table: this session's, in detection order, then the others kept."""
        mine = [Review(self.detections[i], self.decisions[i]) for i in sorted(self.decisions)]
        return mine + self._others

    def progress(self) -> dict[str, int]:
        """Detections under review, how many are decided, and the count of each decision."""
        counts = {decision: 0 for decision in DECISIONS}
        for decision in self.decisions.values():
            counts[decision] += 1
        return {"total": len(self.detections), "reviewed": len(self.decisions), **counts}
