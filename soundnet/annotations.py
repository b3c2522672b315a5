"""Annotations: DCASE event tables, Audacity label files, and per-frame labels.

Reading gives :class:`Annotation` rows that remember their file and line, so every
later complaint (unknown audio file, event past the end) can point at the row.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.formats import Row, read_audacity, read_table

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


def match_files(annotations: Sequence[Annotation], audio: Sequence[Path], roots: Sequence[Path]) -> dict[Path, list[Annotation]]:
    """Assign annotation rows to the audio files they name, exactly.

    A row names a file by its path relative to one of ``roots`` (the folders or files
    the user gave), or by a trailing part of the file's path (``site_A/rec.wav`` names
    ``.../site_A/rec.wav`` and nothing else). A bare file name (``rec.wav``) matches
    by base name. A row that could name two recordings is an error naming both. Only
    the given audio files are ever matched, so a row naming ``../../elsewhere`` or an
    absolute path outside them is refused as unknown, never opened.

    Raises
    ------
    SoundnetError
        A row names a file that is not among the audio, or could name several.
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
    for row in annotations:
        name = PurePosixPath(row.filename.replace("\\", "/"))
        candidates = by_relative.get(str(name), set())
        if not candidates and ".." not in name.parts and not name.is_absolute():
            candidates = {path for path in audio if Path(path).parts[-len(name.parts) :] == name.parts}
        if len(candidates) > 1:
            both = " and ".join(sorted(map(str, candidates))[:2])
            raise SoundnetError(
                f"{row.where}: file name {row.filename!r} could name {both}; give its path relative to the folder given"
            )
        if not candidates:
            raise SoundnetError(f"{row.where}: unknown file {row.filename!r} (not among the audio given)")
        matched.setdefault(candidates.pop(), []).append(row)
    return matched


def sidecar_labels(audio: Path) -> Path | None:
    """The Audacity label file beside ``audio`` (``x.wav`` -> ``x.txt``), if there is one."""
    candidate = audio.with_suffix(".txt")
    return candidate if candidate.is_file() else None


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
