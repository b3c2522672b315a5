"""Annotations: DCASE event tables, Raven selection tables, Audacity label files, and
per-frame labels.

A table is told apart by its header: a Raven selection table's has ``Begin Time (s)``
and ``End Time (s)``. Reading gives :class:`Annotation` rows that remember their file and line, so every
later complaint (unknown audio file, event past the end) can point at the row.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.formats import Row, is_raven_table, read_audacity, read_raven, read_table

log = logging.getLogger(__name__)

#: One row of an annotation file: an event, or (``event is None``) a file without events.
#: The rows of every event table are :class:`soundnet.formats.Row`; an annotation is one.
Annotation = Row


def read_event_table(path: Path) -> list[Annotation]:
    """Read a DCASE annotation table (TSV or CSV), by :func:`soundnet.formats.read_table`.

    Rows are ``filename onset offset label`` (seconds); a row with only a filename
    (or empty time and label fields) marks a file with no event. A header row is
    optional; with one, columns are found by name (``filename``, ``onset`` or
    ``event_onset``, ``offset`` or ``event_offset``, ``event_label`` or ``label``, ...:
    :data:`soundnet.formats.TABLE_COLUMNS`), and other columns are ignored. The
    delimiter is a tab if any line holds one, else a comma if any holds one.
    Identical rows count once.

    Raises
    ------
    SoundnetError
        Naming the file and line: missing columns, non-numeric or negative times,
        offset before onset, an event without a label, bad CSV quoting.
    """
    return _unique(read_table(Path(path), reference=True))


def read_annotations(path: Path, *, label_column: str | None = None) -> list[Annotation]:
    """Read an annotation table of many recordings: a Raven selection table (told by its
    header, :func:`read_raven_table`) or else a DCASE table (:func:`read_event_table`).

    ``label_column`` chooses a Raven table's label column; a DCASE table has one.
    """
    path = Path(path)
    if is_raven_table(path):
        return read_raven_table(path, label_column=label_column)
    return read_event_table(path)


def read_raven_table(path: Path, *, filename: str = "", label_column: str | None = None) -> list[Annotation]:
    """Read a Raven Pro selection table of reference events, by :func:`soundnet.formats.read_raven`.

    The rows of the Spectrogram view, once per selection; each names its recording by
    ``Begin File`` or ``Begin Path`` (``filename`` for a table beside one recording),
    starts ``File Offset (s)`` into it where the table has that column, and keeps the
    selection's frequency band. The label comes from ``label_column`` (default: the
    first of ``Annotation``, ``Species``, ``Label``); an empty one is an error.
    """
    return _unique(read_raven(Path(path), filename=filename, reference=True, label_column=label_column))


def read_sidecar(path: Path, *, filename: str, label_column: str | None = None) -> list[Annotation]:
    """Read the label file beside audio ``filename``: a Raven selection table (told by its
    header) or an Audacity label track. One without events means the audio has none.

    Raises
    ------
    SoundnetError
        A malformed file, or a Raven table whose ``Begin File`` names another recording.
    """
    path = Path(path)
    if not is_raven_table(path):
        return read_audacity_labels(path, filename=filename)
    rows = read_raven_table(path, filename=filename, label_column=label_column)
    for row in rows:
        if row.filename != filename:
            raise SoundnetError(
                f"{row.where}: Begin File {row.filename!r} is not {filename!r}, the recording the table is beside"
            )
    return rows or [Annotation(path, 0, filename, None)]


def read_audacity_labels(path: Path, *, filename: str) -> list[Annotation]:
    """Read an Audacity label track (``onset<TAB>offset<TAB>label``) for audio ``filename``,
    by :func:`soundnet.formats.read_audacity`.

    Spectral-selection lines (starting with a backslash) are skipped; every event
    needs a label. An empty file means the audio has no events.
    """
    path = Path(path)
    annotations = _unique(read_audacity(path, filename=filename, reference=True))
    return annotations or [Annotation(path, 0, filename, None)]


def _unique(rows: Iterable[Annotation]) -> list[Annotation]:
    """``rows`` without repeats of a (filename, event) seen before."""
    annotations: list[Annotation] = []
    seen: set[tuple] = set()
    for row in rows:
        key = (row.filename, row.event)
        if key in seen:
            log.warning("%s: duplicate row ignored", row.where)
            continue
        seen.add(key)
        annotations.append(row)
    return annotations


def choose_target(annotations: Iterable[Annotation], target: str | None, *, where: str | None = None) -> str:
    """The target label: ``target`` if given and present, else the only label there is.

    ``where`` names the annotations in messages (the table's path, say).
    """
    prefix = f"{where}: " if where else ""
    labels = sorted({a.event.label for a in annotations if a.event is not None})
    if target is not None:
        if target not in labels:
            present = ", ".join(labels) if labels else "none"
            raise SoundnetError(f"{prefix}unknown target label {target!r} (labels in the annotations: {present})")
        return target
    if len(labels) == 1:
        return labels[0]
    if not labels:
        raise SoundnetError(f"{prefix}the annotations hold no event: give the target label with --target")
    raise SoundnetError(f"{prefix}the annotations hold several labels ({', '.join(labels)}): choose one with --target")


def match_files(
    annotations: Sequence[Annotation], audio: Sequence[Path], roots: Sequence[Path], *, skip_unknown: bool = False
) -> dict[Path, list[Annotation]]:
    """Assign annotation rows to the audio files they name, exactly.

    A row names a file by its path relative to one of ``roots`` (the folders or files
    the user gave), or by a trailing part of the file's path (``site_A/rec.wav`` names
    ``.../site_A/rec.wav`` and nothing else). A bare file name (``rec.wav``) matches
    by base name. A row that also carries the recording's full path (Raven's ``Begin
    Path``, :attr:`Annotation.path`, recorded on another machine maybe) names the file
    with the longest trailing part of that path in common, so recordings of one name
    in two folders are told apart. A row that could name two recordings is an error
    naming both. Only the given audio files are ever matched, so a row naming
    ``../../elsewhere`` or an absolute path outside them is refused as unknown, never
    opened.

    Parameters
    ----------
    skip_unknown : bool
        Leave out the rows of files not among the audio (scoring a subset of the files
        a table covers) with one warning saying how many files were left out, instead
        of refusing them. Still an error when no row names a file given.

    Raises
    ------
    SoundnetError
        A row names a file that is not among the audio (unless ``skip_unknown``), or
        could name several.
    """
    by_relative: dict[str, set[Path]] = {}
    for path in audio:
        for root in roots:
            base = root if root.is_dir() else root.parent
            try:
                by_relative.setdefault(path.relative_to(base).as_posix(), set()).add(path)
            except ValueError:
                pass
    matched: dict[Path, list[Annotation]] = {}
    unknown: dict[str, Annotation] = {}
    for row in annotations:
        candidates = _candidates(row, audio, by_relative)
        if len(candidates) > 1:
            both = " and ".join(sorted(map(str, candidates))[:2])
            raise SoundnetError(
                f"{row.where}: file name {row.filename!r} could name {both}; give its path relative to the folder given"
            )
        if not candidates:
            if not skip_unknown:
                raise SoundnetError(f"{row.where}: unknown file {row.filename!r} (not among the audio given)")
            unknown.setdefault(row.path or row.filename, row)
            continue
        matched.setdefault(candidates.pop(), []).append(row)
    if unknown:
        first = next(iter(unknown.values()))
        if not matched:
            raise SoundnetError(f"{first.where}: none of the files {first.source} names is among the audio given")
        log.warning(
            "%s: %d file(s) named there are not among the audio given and were left out (the first: %r)",
            first.source,
            len(unknown),
            first.filename,
        )
    return matched


def _candidates(row: Annotation, audio: Sequence[Path], by_relative: dict[str, set[Path]]) -> set[Path]:
    """The audio files ``row`` could name (see :func:`match_files`)."""
    name = PurePosixPath(row.filename.replace("\\", "/"))
    candidates = set(by_relative.get(str(name), set()))
    if not candidates and ".." not in name.parts and not name.is_absolute():
        candidates = {path for path in audio if Path(path).parts[-len(name.parts) :] == name.parts}
    if len(candidates) > 1 and row.path:
        parts = PurePosixPath(row.path.replace("\\", "/")).parts
        common = {path: _common_tail(Path(path).parts, parts) for path in candidates}
        longest = max(common.values())
        candidates = {path for path, n in common.items() if n == longest}
    return candidates


def _common_tail(a: Sequence[str], b: Sequence[str]) -> int:
    """How many trailing parts ``a`` and ``b`` share."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def sidecar_tables(audio: Path) -> list[Path]:
    """Every label file beside ``audio`` (``x.wav``) that exists: the Audacity labels
    ``x.txt``, the Raven selection tables ``x.Table.N.selections.txt`` (as Raven Pro
    names them, in order of N) and ``x.selections.txt`` (as ``soundnet detect
    --output-dir`` does)."""
    return all_sidecar_tables([audio])[Path(audio)]


_RAVEN_SIDECAR = re.compile(r"(?P<stem>.+)\.Table\.(?P<n>\d+)\.selections\.txt")


def all_sidecar_tables(audio: Iterable[Path]) -> dict[Path, list[Path]]:
    """:func:`sidecar_tables` of many audio files, each folder listed once."""
    folders: dict[Path, dict[str, list[tuple[int, str]]]] = {}
    found = {}
    for path in map(Path, audio):
        if path.parent not in folders:
            folders[path.parent] = _label_files(path.parent)
        found[path] = [path.parent / name for _, name in sorted(folders[path.parent].get(path.stem, []))]
    return found


def _label_files(folder: Path) -> dict[str, list[tuple[int, str]]]:
    """The label files in ``folder``, by the stem of the audio they would be beside, each
    with its rank (Audacity, Raven tables by number, soundnet's ``.selections.txt``)."""
    by_stem: dict[str, list[tuple[int, str]]] = {}
    try:
        entries = [entry.name for entry in os.scandir(folder) if entry.is_file()]
    except OSError:
        return by_stem
    for name in entries:
        raven = _RAVEN_SIDECAR.fullmatch(name)
        if raven:
            by_stem.setdefault(raven["stem"], []).append((1 + int(raven["n"]), name))
        elif name.endswith(".selections.txt"):
            by_stem.setdefault(name.removesuffix(".selections.txt"), []).append((2**63, name))
        if name.endswith(".txt"):
            by_stem.setdefault(name.removesuffix(".txt"), []).append((0, name))
    return by_stem


def check_within(rows: Sequence[Annotation], duration: float, *, tolerance: float = 0.05) -> None:
    """Refuse an event that starts after, or ends clearly past, the end of its file."""
    for row in rows:
        if row.event is not None and row.event.offset > duration + tolerance:
            raise SoundnetError(
                f"{row.where}: event {row.event.onset:g}-{row.event.offset:g} s ends past the end of "
                f"{row.filename!r} ({duration:.3f} s)"
            )


def frame_labels(events: Iterable[Event], n_frames: int, *, frame_seconds: float) -> np.ndarray:
    """Per-frame 0/1 labels: frame ``i`` is positive when its centre ``i * frame_seconds``
    lies inside an event, ``onset <= t < offset``.

    Returns
    -------
    labels : np.ndarray [shape=(n_frames,), dtype=uint8]
    """
    labels = np.zeros(n_frames, np.uint8)
    for event in events:
        first = math.ceil(event.onset / frame_seconds - 1e-9)
        last = math.ceil(event.offset / frame_seconds - 1e-9)  # first frame at or past the offset
        labels[max(first, 0) : max(min(last, n_frames), 0)] = 1
    return labels
