"""Annotations: DCASE event tables, Audacity label files, and per-frame labels.

Reading gives :class:`Annotation` rows that remember their file and line, so every
later complaint (unknown audio file, event past the end) can point at the row.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from soundnet.errors import SoundnetError
from soundnet.events import Event

log = logging.getLogger(__name__)

_COLUMNS = {
    "filename": ("filename", "file", "audio_filename", "file_name", "audiofile"),
    "onset": ("onset", "event_onset", "start", "starttime", "start_time"),
    "offset": ("offset", "event_offset", "end", "endtime", "end_time"),
    "label": ("label", "event_label", "class", "event", "class_label"),
}


@dataclass(frozen=True)
class Annotation:
    """One row of an annotation file: an event, or (``event is None``) a file without events."""

    source: Path
    line: int
    filename: str
    event: Event | None

    @property
    def where(self) -> str:
        return f"{self.source} line {self.line}"


def _time(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SoundnetError(f"{where}: {what} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise SoundnetError(f"{where}: {what} is not a finite number: {text!r}")
    if value < 0:
        raise SoundnetError(f"{where}: negative {what} {value}")
    return value


def _event(filename: str, onset: str, offset: str, label: str, where: str) -> Event:
    start, end = _time(onset, "onset", where), _time(offset, "offset", where)
    if end < start:
        raise SoundnetError(f"{where}: offset {end} is before onset {start}")
    if not label.strip():
        raise SoundnetError(f"{where}: event without a label")
    return Event(filename, start, end, label.strip())


def _read_rows(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SoundnetError(f"{path}: not a UTF-8 text file") from None
    except OSError as error:
        raise SoundnetError(f"{path}: cannot read annotations ({error.strerror or error})") from None
    # tab-separated if any line has a tab (DCASE), else comma-separated if any has a comma
    delimiter = "\t" if "\t" in text or "," not in text else ","
    return list(csv.reader(text.splitlines(), delimiter=delimiter))


def read_event_table(path: Path) -> list[Annotation]:
    """Read a DCASE annotation table (TSV or CSV).

    Rows are ``filename onset offset label`` (seconds); a row with only a filename
    (or empty time and label fields) marks a file with no event. A header row is
    optional; with one, columns are found by name (``filename``, ``onset`` or
    ``event_onset``, ``offset`` or ``event_offset``, ``event_label`` or ``label``), and
    other columns are ignored. Identical rows count once.

    Raises
    ------
    SoundnetError
        Naming the file and line: missing columns, non-numeric or negative times,
        offset before onset, an event without a label.
    """
    path = Path(path)
    rows = _read_rows(path)
    order = [0, 1, 2, 3]
    start = 0
    for i, row in enumerate(rows):
        if any(cell.strip() for cell in row):
            names = [cell.strip().lower() for cell in row]
            if len(row) > 1 and _is_header(names):
                order = [_find_column(names, key, path, i + 1) for key in _COLUMNS]
                start = i + 1
            break
    annotations: list[Annotation] = []
    seen: set[tuple] = set()
    for number, row in enumerate(rows[start:], start=start + 1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        where = f"{path} line {number}"
        picked = [cells[i] if i < len(cells) else "" for i in order]
        filename = picked[0]
        if not filename:
            raise SoundnetError(f"{where}: no filename")
        if not any(picked[1:]):
            event = None
        elif not all(picked[1:]):
            missing = [key for key, cell in zip(("onset", "offset", "label"), picked[1:], strict=True) if not cell]
            raise SoundnetError(f"{where}: missing {', '.join(missing)} (expected filename, onset, offset, label)")
        else:
            event = _event(filename, *picked[1:], where)
        key = (filename, event)
        if key in seen:
            log.warning("%s: duplicate row ignored", where)
            continue
        seen.add(key)
        annotations.append(Annotation(path, number, filename, event))
    return annotations


def _is_header(names: list[str]) -> bool:
    return any(name in aliases for aliases in _COLUMNS.values() for name in names) and not _is_number(names[1])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _find_column(names: list[str], key: str, path: Path, line: int) -> int:
    for alias in _COLUMNS[key]:
        if alias in names:
            return names.index(alias)
    raise SoundnetError(f"{path} line {line}: header has no {key} column (expected one of {', '.join(_COLUMNS[key])})")


def read_audacity_labels(path: Path, *, filename: str) -> list[Annotation]:
    """Read an Audacity label track (``onset<TAB>offset<TAB>label``) for audio ``filename``.

    Spectral-selection lines (starting with a backslash) are skipped. An empty file
    means the audio has no events.
    """
    path = Path(path)
    annotations = []
    for number, row in enumerate(_read_rows(path), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("\\"):
            continue
        where = f"{path} line {number}"
        if len(cells) < 3:
            raise SoundnetError(f"{where}: expected onset, offset and label separated by tabs")
        annotations.append(Annotation(path, number, filename, _event(filename, cells[0], cells[1], cells[2], where)))
    if not annotations:
        annotations.append(Annotation(path, 0, filename, None))
    return annotations


def choose_target(annotations: Iterable[Annotation], target: str | None) -> str:
    """The target label: ``target`` if given and present, else the only label there is."""
    labels = sorted({a.event.label for a in annotations if a.event is not None})
    if target is not None:
        if target not in labels:
            present = ", ".join(labels) if labels else "none"
            raise SoundnetError(f"unknown target label {target!r} (labels in the annotations: {present})")
        return target
    if len(labels) == 1:
        return labels[0]
    if not labels:
        raise SoundnetError("the annotations hold no event: give the target label with --target")
    raise SoundnetError(f"the annotations hold several labels ({', '.join(labels)}): choose one with --target")


def match_files(annotations: Sequence[Annotation], audio: Sequence[Path], roots: Sequence[Path]) -> dict[Path, list[Annotation]]:
    """Assign annotation rows to the audio files they name.

    A row's filename matches an audio file by its path relative to one of ``roots``
    (the folders or files the user gave) or, when unique, by its base name. Only the
    given audio files are ever matched, so a row naming ``../../elsewhere`` or an
    absolute path outside them is refused as unknown, never opened.

    Raises
    ------
    SoundnetError
        A row names a file that is not among the audio, or a base name that is ambiguous.
    """
    by_relative: dict[str, Path] = {}
    by_name: dict[str, list[Path]] = {}
    for path in audio:
        by_name.setdefault(path.name, []).append(path)
        for root in roots:
            base = root if root.is_dir() else root.parent
            try:
                by_relative[path.relative_to(base).as_posix()] = path
            except ValueError:
                pass
    matched: dict[Path, list[Annotation]] = {}
    for row in annotations:
        name = PurePosixPath(row.filename.replace("\\", "/"))
        path = by_relative.get(str(name))
        if path is None and ".." not in name.parts and not name.is_absolute():
            candidates = by_name.get(name.name, [])
            if len(candidates) > 1:
                raise SoundnetError(f"{row.where}: file name {row.filename!r} matches several audio files; give its path")
            path = candidates[0] if candidates else None
        if path is None:
            raise SoundnetError(f"{row.where}: unknown file {row.filename!r} (not among the audio given)")
        matched.setdefault(path, []).append(row)
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
