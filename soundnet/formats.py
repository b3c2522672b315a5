"""Event tables in five formats, and per-frame probabilities: writing and reading.

Rendering is pure (events in, text out); the writers put the text in a temporary file
beside the target and ``os.replace`` it, so a reader never sees half a file. Each
format has one reader, which reads reference annotations (:mod:`soundnet.annotations`)
and detection outputs (:func:`read_events`) by the same rules; a rendered table read
back gives the same events.

Formats
-------
tsv
    DCASE event list as read by sed_eval / dcase_util: header
    ``filename onset offset event_label`` (tab separated), times with 3 decimals. A
    processed file without events gets a row holding only its filename.
csv
    ``filename,onset,offset,label,confidence`` with the csv module's quoting, times
    with 3 decimals, confidence with 4 (empty when unknown). A processed file without
    events gets a row holding only its filename, as in tsv.
json
    An array with one object per file:
    ``{"filename", "events": [{"onset", "offset", "label", "confidence"}], "frames"}``,
    ``"frames": {"time": [...], "probability": [...]}`` only when frames were given.
audacity
    Audacity label track of one audio file: ``onset<TAB>offset<TAB>label``, 6 decimals,
    no header.
raven
    Raven Pro selection table (tab separated, one row per event, ``Begin File`` holds
    the file name).

Recordings whose start time is known (``starts``: from their names,
:mod:`soundnet.clock`) also get each event's clock time, ISO 8601 to the millisecond:
tsv and csv the columns ``onset_datetime`` and ``offset_datetime``, json the fields
``start_datetime`` (per file), ``onset_datetime`` and ``offset_datetime``, audacity a
fourth field (Audacity reads three and ignores the rest), raven Raven's own ``Begin
Date``, ``Begin Clock Time``, ``End Date`` and ``End Clock Time``. Without any start
time the outputs hold no such column; cells of files without one are empty.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from soundnet.clock import clock_time, iso
from soundnet.errors import SoundnetError, check_label
from soundnet.events import Event
from soundnet.storage import MAX_TEXT_BYTES, read_bounded, save_npy, write_text

FORMATS = ("tsv", "csv", "json", "audacity", "raven")

#: File name extension each format is usually saved with.
EXTENSIONS = {"tsv": ".tsv", "csv": ".csv", "json": ".json", "audacity": ".txt", "raven": ".selections.txt"}

TSV_HEADER = ("filename", "onset", "offset", "event_label")
CSV_HEADER = ("filename", "onset", "offset", "label", "confidence")
RAVEN_HEADER = (
    "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
    "Low Freq (Hz)", "High Freq (Hz)", "Begin File", "Label", "Confidence",
)  # fmt: skip
FRAMES_HEADER = "time,probability"


# ---------------------------------------------------------------------------------
# Rendering


def render_events(
    events: Sequence[Event],
    fmt: str,
    *,
    files: Sequence[str] | None = None,
    frames: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    high_freq: float = 8000.0,
    starts: Mapping[str, datetime] | None = None,
) -> str:
    """Render detected events as the text of one output file.

    Parameters
    ----------
    events : sequence of Event
        The events; they are grouped by file and sorted by onset within a file.
    fmt : {"tsv", "csv", "json", "audacity", "raven"}
        Output format (see the module docstring).
    files : sequence of str, optional
        All processed files, in output order. Files without events still appear in
        tsv, csv and json output; files only named by events follow, in order of
        first appearance. Ignored by audacity and raven.
    frames : mapping of str to (times, probabilities), optional
        Per-frame probabilities of some files, written into json output only.
    high_freq : float
        ``High Freq (Hz)`` of raven selections (usually the Nyquist frequency).
    starts : mapping of str to datetime, optional
        When each file (by name) started: its events also get their clock times (see
        the module docstring). Files not in it get none.

    Returns
    -------
    str
        The file's text, ``\\n`` line ends, ending with a newline unless empty.

    Raises
    ------
    SoundnetError
        Unknown format; audacity output asked for events of several files; a name or
        label with a tab or line break in a format that cannot quote it (audacity,
        raven); non-finite frame values in json output.
    """
    named = {e.filename for e in events} | set(files or ()) | set(frames or ())
    starts = {name: start for name, start in (starts or {}).items() if name in named}
    if fmt == "tsv":
        return _render_tsv(events, files, starts)
    if fmt == "csv":
        return _render_csv(events, files, starts)
    if fmt == "json":
        return _render_json(events, files, frames or {}, starts)
    if fmt == "audacity":
        return _render_audacity(events, starts)
    if fmt == "raven":
        return _render_raven(events, high_freq, starts)
    raise SoundnetError(_unknown_format(fmt))


def _clock(event: Event, starts: Mapping[str, datetime]) -> tuple[datetime, datetime] | None:
    """The clock times of an event's onset and offset, if its file's start is known."""
    start = starts.get(event.filename)
    if start is None:
        return None
    return clock_time(start, event.onset), clock_time(start, event.offset)


def _clock_cells(event: Event, starts: Mapping[str, datetime]) -> list[str]:
    """``onset_datetime``, ``offset_datetime`` cells of tsv and csv (none without any start)."""
    if not starts:
        return []
    times = _clock(event, starts)
    return ["", ""] if times is None else [iso(times[0]), iso(times[1])]


CLOCK_COLUMNS = ("onset_datetime", "offset_datetime")
RAVEN_CLOCK_COLUMNS = ("Begin Date", "Begin Clock Time", "End Date", "End Clock Time")


def _unknown_format(fmt: str) -> str:
    return f"unknown output format {fmt!r} (choose one of {', '.join(FORMATS)})"


def _by_file(events: Iterable[Event], files: Iterable[str] | None) -> dict[str, list[Event]]:
    """Events grouped by file: ``files`` first, in order, then any other file; sorted by onset."""
    groups: dict[str, list[Event]] = {name: [] for name in files or ()}
    for event in events:
        groups.setdefault(event.filename, []).append(event)
    for group in groups.values():
        group.sort(key=lambda e: (e.onset, e.offset, e.label))
    return groups


def _csv_text(rows: Iterable[Sequence[str]], *, delimiter: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue()


def _render_tsv(events: Sequence[Event], files: Sequence[str] | None, starts: Mapping[str, datetime]) -> str:
    rows: list[Sequence[str]] = [TSV_HEADER + (CLOCK_COLUMNS if starts else ())]
    for name, group in _by_file(events, files).items():
        if not group:
            rows.append([name])
        rows += [[e.filename, f"{e.onset:.3f}", f"{e.offset:.3f}", e.label, *_clock_cells(e, starts)] for e in group]
    return _csv_text(rows, delimiter="\t")


def _render_csv(events: Sequence[Event], files: Sequence[str] | None, starts: Mapping[str, datetime]) -> str:
    rows: list[Sequence[str]] = [CSV_HEADER + (CLOCK_COLUMNS if starts else ())]
    for name, group in _by_file(events, files).items():
        if not group:
            rows.append([name, "", "", "", "", *(("", "") if starts else ())])
        rows += [
            [e.filename, f"{e.onset:.3f}", f"{e.offset:.3f}", e.label, _confidence(e), *_clock_cells(e, starts)] for e in group
        ]
    return _csv_text(rows, delimiter=",")


def _confidence(event: Event) -> str:
    return "" if event.confidence is None else f"{event.confidence:.4f}"


def _render_json(
    events: Sequence[Event],
    files: Sequence[str] | None,
    frames: Mapping[str, tuple[np.ndarray, np.ndarray]],
    starts: Mapping[str, datetime],
) -> str:
    groups = _by_file(events, files)
    for name in frames:
        groups.setdefault(name, [])
    objects = []
    for name, group in groups.items():
        listed = []
        for e in group:
            item = {
                "onset": round(float(e.onset), 3),
                "offset": round(float(e.offset), 3),
                "label": e.label,
                "confidence": None if e.confidence is None else round(float(e.confidence), 4),
            }
            times = _clock(e, starts)
            if times is not None:
                item |= {"onset_datetime": iso(times[0]), "offset_datetime": iso(times[1])}
            listed.append(item)
        start = [f'  "start_datetime": {_dumps(iso(starts[name]))},'] if name in starts else []
        lines = [
            "{",
            f'  "filename": {_dumps(name)},',
            *start,
            '  "events": ' + _dumps(listed, indent=2).replace("\n", "\n  ") + ("," if name in frames else ""),
        ]
        if name in frames:
            # Number arrays stay on one line each: a 10-hour file has millions of frames.
            times, probabilities = _frame_arrays(*frames[name], what=name)
            lines += [
                '  "frames": {',
                f'    "time": [{_numbers(times, 3)}],',
                f'    "probability": [{_numbers(probabilities, 4)}]',
                "  }",
            ]
        lines.append("}")
        objects.append("\n".join(lines))
    if not objects:
        return "[]\n"
    return "[\n" + ",\n".join("  " + o.replace("\n", "\n  ") for o in objects) + "\n]\n"


def _dumps(value: object, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False)


def _numbers(values: np.ndarray, decimals: int) -> str:
    return _printf(f"%.{decimals}f, ", values[:, None]).removesuffix(", ")


def _printf(row_format: str, table: np.ndarray, *, chunk: int = 65536) -> str:
    """``row_format % tuple(row)`` for each row of ``table``, joined; one C loop per chunk."""
    parts = []
    for start in range(0, len(table), chunk):
        block = table[start : start + chunk]
        parts.append((row_format * len(block)) % tuple(block.ravel().tolist()))
    return "".join(parts)


def _frame_arrays(times: np.ndarray, probabilities: np.ndarray, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(times, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if times.ndim != 1 or times.shape != probabilities.shape:
        raise ValueError(
            f"{what}: frame times {times.shape} and probabilities {probabilities.shape} must be 1-D and of equal length"
        )
    if not (np.isfinite(times).all() and np.isfinite(probabilities).all()):
        raise SoundnetError(f"{what}: frame times or probabilities are not all finite numbers")
    return times, probabilities


def _plain(text: str, what: str, fmt: str) -> str:
    """``text`` unchanged, if a tab separated format without quoting can hold it."""
    if any(c in text for c in "\t\r\n"):
        raise SoundnetError(f"{what}: {fmt} output cannot hold a tab or line break in {text!r}")
    return text


def _render_audacity(events: Sequence[Event], starts: Mapping[str, datetime]) -> str:
    names = list(dict.fromkeys(e.filename for e in events))
    if len(names) > 1:
        raise SoundnetError(
            f"an Audacity label track holds the events of one audio file, not of {len(names)}: " + ", ".join(map(repr, names))
        )
    lines = []
    for e in sorted(events, key=lambda e: (e.onset, e.offset, e.label)):
        times = _clock(e, starts)
        clock = "" if times is None else f"\t{iso(times[0])}"  # Audacity reads three fields and ignores the rest
        lines.append(f"{e.onset:.6f}\t{e.offset:.6f}\t{_plain(e.label, e.filename, 'audacity')}{clock}\n")
    return "".join(lines)


def _render_raven(events: Sequence[Event], high_freq: float, starts: Mapping[str, datetime]) -> str:
    lines = ["\t".join(RAVEN_HEADER + (RAVEN_CLOCK_COLUMNS if starts else ())) + "\n"]
    selection = 0
    for name, group in _by_file(events, None).items():
        _plain(name, name, "raven")
        for e in group:
            selection += 1
            row = [
                str(selection), "Spectrogram 1", "1", f"{e.onset:.6f}", f"{e.offset:.6f}",
                "0", _hz(high_freq), name, _plain(e.label, name, "raven"), _confidence(e),
            ]  # fmt: skip
            if starts:
                times = _clock(e, starts)
                row += ["", "", "", ""] if times is None else [*_date_and_time(times[0]), *_date_and_time(times[1])]
            lines.append("\t".join(row) + "\n")
    return "".join(lines)


def _date_and_time(moment: datetime) -> tuple[str, str]:
    date, time = iso(moment).split("T")
    return date, time


def _hz(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------------------------
# Writing


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, all or nothing (see :func:`soundnet.storage.write_text`)."""
    write_text(path, text)


def render_frames(times: np.ndarray, probabilities: np.ndarray) -> str:
    """Per-frame probabilities as CSV text: header ``time,probability``, 3 and 4 decimals."""
    times, probabilities = _frame_arrays(times, probabilities, what="frames")
    body = _printf("%.3f,%.4f\n", np.stack([times, probabilities], axis=1))
    return FRAMES_HEADER + "\n" + body


def write_frames(path: Path, times: np.ndarray, probabilities: np.ndarray) -> None:
    """Write per-frame probabilities, all or nothing.

    Parameters
    ----------
    path : Path
        ``.npy``: an array of shape (n, 2), float32, columns [time, probability].
        Anything else: CSV text from :func:`render_frames`.
    times, probabilities : np.ndarray [shape=(n,)]
        Frame times in seconds and the detector's probabilities.

    Raises
    ------
    SoundnetError
        The file cannot be written, or a value is not finite.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        times, probabilities = _frame_arrays(times, probabilities, what=str(path))
        table = np.stack([times, probabilities], axis=1).astype(np.float32)
        save_npy(path, table)
    else:
        write_text_atomic(path, render_frames(times, probabilities))


# ---------------------------------------------------------------------------------
# Reading
#
# One reader per format, for reference annotations (soundnet.annotations) and for
# detection outputs read back (read_events) alike. The only difference is
# ``reference=True``: a reference event needs a label, and a confidence column is
# not read.

#: Column names a DCASE table's header may use (compared without case or edge spaces).
TABLE_COLUMNS = {
    "filename": ("filename", "file", "audio_filename", "file_name", "audiofile"),
    "onset": ("onset", "event_onset", "start", "starttime", "start_time"),
    "offset": ("offset", "event_offset", "end", "endtime", "end_time"),
    "label": ("label", "event_label", "class", "event", "class_label"),
    "confidence": ("confidence",),
    "group": ("group", "fold", "source_group"),
    "decision": ("decision",),  # a reviewed table's (soundnet.review): accepted, rejected or skipped
}
_TABLE_REQUIRED = ("filename", "onset", "offset", "label")
_TABLE_POSITIONS = {"filename": 0, "onset": 1, "offset": 2, "label": 3}  # a table without a header

#: Column names of a Raven selection table (compared without case or edge spaces), as
#: Raven Pro writes them. ``label`` is read from the first of :data:`RAVEN_LABEL_COLUMNS`
#: present unless a column is chosen.
RAVEN_COLUMNS = {
    "selection": ("Selection",),
    "view": ("View",),
    "onset": ("Begin Time (s)",),
    "offset": ("End Time (s)",),
    "low_freq": ("Low Freq (Hz)",),
    "high_freq": ("High Freq (Hz)",),
    "filename": ("Begin File",),
    "file_offset": ("File Offset (s)",),
    "path": ("Begin Path",),
    "confidence": ("Confidence",),
}
_RAVEN_REQUIRED = ("onset", "offset")

#: Where a Raven table's label is, by default: the first of these columns its header has.
RAVEN_LABEL_COLUMNS = ("Annotation", "Species", "Label")


@dataclass(frozen=True)
class Row:
    """One row of an event table: an event, or (``event is None``) a file without events."""

    source: Path
    line: int
    filename: str
    event: Event | None
    group: str | None = None  # the recording's group (a ``group`` column): validation never splits one
    low_freq: float | None = None  # a Raven selection's frequency band (Hz), where the table has one
    high_freq: float | None = None
    path: str | None = None  # the recording's full path as the table gives it (Raven's Begin Path)
    decision: str | None = None  # a reviewer's decision (a ``decision`` column, soundnet.review)

    @property
    def where(self) -> str:
        return f"{self.source} line {self.line}"


def read_text(path: Path) -> str:
    """The text of ``path`` (UTF-8, a byte order mark dropped; at most
    :data:`~soundnet.storage.MAX_TEXT_BYTES`); SoundnetError naming it if unreadable."""
    try:
        return read_bounded(path, limit=MAX_TEXT_BYTES, what="table").decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SoundnetError(f"{path}: not a UTF-8 text file") from None


def _number(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SoundnetError(f"{where}: {what} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise SoundnetError(f"{where}: {what} is not a finite number: {text!r}")
    return value


def _time(text: str, what: str, where: str) -> float:
    value = _number(text, what, where)
    if value < 0:
        raise SoundnetError(f"{where}: negative {what} {value}")
    return value


def _event(filename: str, onset: str, offset: str, label: str, confidence: str, where: str) -> Event:
    start, end = _time(onset, "onset", where), _time(offset, "offset", where)
    if end < start:
        raise SoundnetError(f"{where}: offset {end} is before onset {start}")
    return _labelled(filename, start, end, label, confidence, where)


def _labelled(filename: str, start: float, end: float, label: str, confidence: str, where: str) -> Event:
    score = None if not confidence.strip() else _number(confidence, "confidence", where)
    if label:
        check_label(label, where)  # no label can forge a line or a field of any output
    return Event(filename, start, end, label, score)


def _rows(path: Path, text: str, delimiter: str, *, quoting: int = csv.QUOTE_MINIMAL) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields with edge spaces stripped) of the non-blank rows of ``text``."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise SoundnetError(f"{path} line {reader.line_num}: {error}") from None
        cells = [field.strip() for field in row]
        if any(cells):
            yield reader.line_num, cells


def _is_header(cells: list[str], aliases: Mapping[str, Sequence[str]]) -> bool:
    names = [cell.lower() for cell in cells]
    known = {alias.lower() for group in aliases.values() for alias in group}
    return len(names) > 1 and any(name in known for name in names) and not _is_number(names[1])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _columns(cells: list[str], aliases: Mapping[str, Sequence[str]], required: Sequence[str], where: str) -> dict[str, int]:
    """Column of each key a header names (the first alias present wins); an error if a required one lacks."""
    names = [cell.lower() for cell in cells]
    columns = {}
    for key, group in aliases.items():
        found = [names.index(alias.lower()) for alias in group if alias.lower() in names]
        if found:
            columns[key] = found[0]
        elif key in required:
            raise SoundnetError(f"{where}: header has no {key} column (expected one of {', '.join(group)})")
    return columns


def _cell(cells: list[str], columns: Mapping[str, int], key: str) -> str:
    i = columns.get(key)
    return cells[i] if i is not None and i < len(cells) else ""


def table_delimiter(text: str) -> str:
    """A tab if any line holds one (DCASE) or none holds a comma, else a comma."""
    return "\t" if "\t" in text or "," not in text else ","


def read_table(path: Path, *, delimiter: str | None = None, reference: bool = False) -> list[Row]:
    """Read a DCASE event table (TSV or CSV), in file order.

    Rows are ``filename onset offset label`` (seconds), fields quoted the csv module's
    way. A header row is optional; with one, columns are found by any of their names in
    :data:`TABLE_COLUMNS` (``onset`` or ``event_onset``, ``event_label`` or ``label``,
    ...), any case, and other columns are ignored. An optional ``group`` column names
    each recording's group (its source: validation holds out whole groups), an optional
    ``decision`` column a reviewer's decision (:mod:`soundnet.review`). A row with only a filename (or
    empty time and label fields) is a file without events. Edge spaces are dropped.

    Parameters
    ----------
    path : Path
    delimiter : str or None
        Field separator; None: see :func:`table_delimiter`.
    reference : bool
        Rows are reference annotations: an event without a label is an error, and a
        confidence column is not read. Otherwise an empty label is kept as ``""``.

    Raises
    ------
    SoundnetError
        Naming the file and line: unreadable file, bad quoting, a header without a
        required column, no filename, missing time fields, non-numeric, non-finite or
        negative times, offset before onset.
    """
    path = Path(path)
    text = read_text(path)
    rows = _rows(path, text, delimiter or table_delimiter(text))
    first = next(rows, None)
    if first is None:
        return []
    columns: Mapping[str, int] = _TABLE_POSITIONS
    if _is_header(first[1], TABLE_COLUMNS):
        columns = _columns(first[1], TABLE_COLUMNS, _TABLE_REQUIRED, f"{path} line {first[0]}")
        if reference:
            columns.pop("confidence", None)  # references carry no confidence (soundnet.events)
    else:
        rows = itertools.chain([first], rows)
    needed = ("onset", "offset", "label") if reference else ("onset", "offset")
    result = []
    for number, cells in rows:
        where = f"{path} line {number}"
        filename = _cell(cells, columns, "filename")
        if not filename:
            raise SoundnetError(f"{where}: no filename")
        fields = {key: _cell(cells, columns, key) for key in ("onset", "offset", "label", "confidence")}
        event = None
        if fields["onset"] or fields["offset"] or fields["label"]:
            missing = [key for key in needed if not fields[key]]
            if missing:
                raise SoundnetError(f"{where}: missing {', '.join(missing)} (expected filename, onset, offset, label)")
            event = _event(filename, *fields.values(), where)
        group, decision = _cell(cells, columns, "group") or None, _cell(cells, columns, "decision") or None
        result.append(Row(path, number, filename, event, group, decision=decision))
    return result


def read_audacity(path: Path, *, filename: str, reference: bool = False) -> list[Row]:
    """Read an Audacity label track, ``onset<TAB>offset[<TAB>label]`` a line, for audio ``filename``.

    No quoting (Audacity writes labels as they are); fields past the third are
    ignored, edge spaces dropped, and spectral-selection lines (starting with a
    backslash) and blank lines skipped. A line without a label has the label ``""``;
    with ``reference=True`` it is an error.

    Raises
    ------
    SoundnetError
        Naming the file and line: fewer than two fields, bad times, a missing label
        (``reference``).
    """
    path = Path(path)
    rows = []
    for number, raw in enumerate(read_text(path).split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not raw.strip() or raw.lstrip().startswith("\\"):
            continue  # blank, or the frequency range line of a spectral selection
        where = f"{path} line {number}"
        fields = [field.strip() for field in raw.split("\t")]
        if len(fields) < 2:
            raise SoundnetError(f"{where}: expected onset<TAB>offset<TAB>label, found {len(fields)} field")
        label = fields[2] if len(fields) > 2 else ""
        if reference and not label:
            raise SoundnetError(f"{where}: event without a label (expected onset<TAB>offset<TAB>label)")
        rows.append(Row(path, number, filename, _event(filename, fields[0], fields[1], label, "", where)))
    return rows


def read_events(path: Path, fmt: str, *, filename: str = "") -> list[Event]:
    """Read events from a file of any of the formats (as :func:`render_events` writes them).

    Parameters
    ----------
    path : Path
        The file.
    fmt : {"tsv", "csv", "json", "audacity", "raven"}
        Its format: tsv and csv are read by :func:`read_table` (tab or comma
        separated), audacity by :func:`read_audacity`.
    filename : str
        File name given to the events of an Audacity label track (which does not name
        its audio file), and of a Raven table without a ``Begin File`` column.

    Returns
    -------
    list of Event
        In file order. Rows of files without events give no event; an empty file
        gives none. tsv and audacity carry no confidence (None).

    Raises
    ------
    SoundnetError
        Unreadable file, missing header column, or a malformed row (the message names
        the file and line).
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise SoundnetError(f"{path}: " + _unknown_format(fmt))
    if fmt == "json":
        return _read_json(path, read_text(path))
    if fmt == "raven":
        return [row.event for row in read_raven(path, filename=filename) if row.event is not None]
    if fmt == "audacity":
        rows = read_audacity(path, filename=filename)
    else:
        rows = read_table(path, delimiter="\t" if fmt == "tsv" else ",")
    return [row.event for row in rows if row.event is not None]


def is_raven_header(line: str) -> bool:
    """Whether ``line`` (a table's first line) is a Raven selection table's header: tab
    separated, with ``Begin Time (s)`` and ``End Time (s)`` columns."""
    names = {cell.strip().lower() for cell in line.removeprefix("\ufeff").split("\t")}
    return {"begin time (s)", "end time (s)"} <= names


def is_raven_table(path: Path) -> bool:
    """Whether the file at ``path`` starts with a Raven selection table's header (:func:`is_raven_header`)."""
    first = next((line for line in read_text(Path(path)).splitlines() if line.strip()), "")
    return is_raven_header(first)


def read_raven(path: Path, *, filename: str = "", reference: bool = False, label_column: str | None = None) -> list[Row]:
    """Read a Raven Pro selection table (tab separated, a header row, no quoting), in file order.

    Raven lists each selection once per view: only the rows of a Spectrogram view are
    read (all rows when there is no ``View`` column), once per selection number. A row
    names its recording by ``Begin File`` (else the last part of ``Begin Path``, else
    ``filename``: the recording a table beside it belongs to) and keeps ``Begin Path``
    (:attr:`Row.path`) to tell apart recordings of the same name. With a ``File Offset
    (s)`` column (a table of a sequence of files, whose ``Begin Time (s)`` counts from
    the start of the first), the event starts that far into its file and lasts ``End
    Time - Begin Time``. ``Low Freq (Hz)`` and ``High Freq (Hz)`` are kept in the row.

    Parameters
    ----------
    path : Path
    filename : str
        The recording of a table without ``Begin File`` and ``Begin Path`` columns.
    reference : bool
        Rows are reference annotations: each needs a recording and a label, and a
        confidence column is not read. Otherwise an empty label is kept as ``""``.
    label_column : str or None
        The column holding the label (any case); None: the first of
        :data:`RAVEN_LABEL_COLUMNS` in the header.

    Raises
    ------
    SoundnetError
        Naming the file and line: a header without the time columns or the chosen label
        column, rows without a Spectrogram view, bad or missing times, end
        before begin, an empty label (``reference``), no recording named (``reference``).
    """
    path = Path(path)
    rows = _rows(path, read_text(path), "\t", quoting=csv.QUOTE_NONE)
    first = next(rows, None)
    if first is None:
        return []
    header_at = f"{path} line {first[0]}"
    columns = _columns(first[1], RAVEN_COLUMNS, _RAVEN_REQUIRED, header_at)
    names = [cell.lower() for cell in first[1]]
    label_names = (label_column,) if label_column is not None else RAVEN_LABEL_COLUMNS
    found = [names.index(name.lower()) for name in label_names if name.lower() in names]
    if found:
        columns["label"] = found[0]
    elif label_column is not None:
        raise SoundnetError(f"{header_at}: header has no {label_column!r} column (the label column chosen)")
    elif reference:
        raise SoundnetError(
            f"{header_at}: header has no label column (expected one of {', '.join(RAVEN_LABEL_COLUMNS)}; "
            "or choose one with --label-column)"
        )
    if reference:
        columns.pop("confidence", None)  # references carry no confidence (soundnet.events)
    result: list[Row] = []
    seen: set[tuple] = set()
    other_views = 0
    for number, cells in rows:
        where = f"{path} line {number}"
        if "view" in columns:
            if not _cell(cells, columns, "view").lower().startswith("spectrogram"):
                other_views += 1
                continue  # Raven repeats each selection once per view; the spectrogram's row has its band
        begin, end = _cell(cells, columns, "onset"), _cell(cells, columns, "offset")
        if not (begin and end):
            missing = "Begin Time (s)" if not begin else "End Time (s)"
            raise SoundnetError(f"{where}: missing {missing}")
        start, stop = _time(begin, "Begin Time (s)", where), _time(end, "End Time (s)", where)
        if stop < start:
            raise SoundnetError(f"{where}: End Time (s) {stop} is before Begin Time (s) {start}")
        file_offset = _cell(cells, columns, "file_offset")
        if file_offset:  # Begin Time counts from the first file of a sequence; the offset is within this one
            offset = _time(file_offset, "File Offset (s)", where)
            start, stop = offset, offset + (stop - start)
        full_path = _cell(cells, columns, "path") or None
        name = _cell(cells, columns, "filename") or _base_name(full_path or "") or filename
        if not name and reference:
            raise SoundnetError(
                f"{where}: no Begin File or Begin Path naming the recording "
                "(a table of one recording goes beside it, as x.Table.1.selections.txt beside x.wav)"
            )
        selection = _cell(cells, columns, "selection")
        key = (selection, name, full_path, start, stop)
        if selection and key in seen:
            continue  # the same selection in a second spectrogram view
        seen.add(key)
        label = _cell(cells, columns, "label")
        if reference and not label:
            what = first[1][columns["label"]]
            raise SoundnetError(
                f"{where}: selection {selection or '?'} has an empty {what!r} cell "
                "(label it in Raven, or choose another column with --label-column)"
            )
        event = _labelled(name, start, stop, label, _cell(cells, columns, "confidence"), where)
        band = {key: _optional_number(_cell(cells, columns, key), key, where) for key in ("low_freq", "high_freq")}
        result.append(Row(path, number, name, event, low_freq=band["low_freq"], high_freq=band["high_freq"], path=full_path))
    if other_views and not result:
        raise SoundnetError(f"{path}: no row of a Spectrogram view (Raven lists each selection once per view)")
    return result


def _base_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _optional_number(text: str, key: str, where: str) -> float | None:
    what = {"low_freq": "Low Freq (Hz)", "high_freq": "High Freq (Hz)"}[key]
    return None if not text else _time(text, what, where)


def _read_json(path: Path, text: str) -> list[Event]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SoundnetError(f"{path} line {error.lineno}: not valid JSON ({error.msg})") from None
    except RecursionError:
        raise SoundnetError(f"{path}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, list):
        raise SoundnetError(f"{path}: expected a JSON array of file objects")
    events = []
    for i, entry in enumerate(data):
        where = f"{path} file entry {i + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise SoundnetError(f'{where}: expected an object with a string "filename"')
        listed = entry.get("events", [])
        if not isinstance(listed, list):
            raise SoundnetError(f'{where}: "events" is not an array')
        for j, item in enumerate(listed):
            at = f"{where} event {j + 1}"
            if not isinstance(item, dict) or not isinstance(item.get("label"), str):
                raise SoundnetError(f"{at}: expected an object with onset, offset and a string label")
            onset, offset, confidence = (item.get(k) for k in ("onset", "offset", "confidence"))
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (onset, offset)):
                raise SoundnetError(f"{at}: onset and offset must be numbers")
            if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, (int, float))):
                raise SoundnetError(f"{at}: confidence must be a number or null")
            text_conf = "" if confidence is None else repr(float(confidence))
            events.append(_event(entry["filename"], repr(float(onset)), repr(float(offset)), item["label"], text_conf, at))
    return events


def read_frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read per-frame probabilities written by :func:`write_frames`.

    Returns
    -------
    times, probabilities : np.ndarray [shape=(n,), dtype=float64]

    Raises
    ------
    SoundnetError
        Unreadable file, wrong header or shape, or a malformed line.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            table = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise SoundnetError(f"{path}: not a readable .npy file ({error})") from None
        if table.ndim != 2 or table.shape[1] != 2 or not np.issubdtype(table.dtype, np.floating):
            raise SoundnetError(f"{path}: expected a float array of shape (n, 2), found {table.dtype} {table.shape}")
        return table[:, 0].astype(np.float64), table[:, 1].astype(np.float64)
    lines = read_text(path).split("\n")
    if lines[0].strip() != FRAMES_HEADER:
        raise SoundnetError(f"{path} line 1: expected the header {FRAMES_HEADER!r}, found {lines[0].strip()!r}")
    if not any(line.strip() for line in lines[1:]):
        return np.zeros(0), np.zeros(0)
    try:  # fast path; the loop below finds the line to blame
        table = np.loadtxt(lines[1:], delimiter=",", comments=None, dtype=np.float64, ndmin=2)
        if table.shape[1] == 2 and np.isfinite(table).all():
            return table[:, 0].copy(), table[:, 1].copy()
    except ValueError:
        pass
    times = np.empty(len(lines), dtype=np.float64)
    probabilities = np.empty(len(lines), dtype=np.float64)
    n = 0
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != 2:
            raise SoundnetError(f"{path} line {number}: expected time,probability, found {len(fields)} fields")
        where = f"{path} line {number}"
        times[n] = _number(fields[0], "time", where)
        probabilities[n] = _number(fields[1], "probability", where)
        n += 1
    return times[:n].copy(), probabilities[:n].copy()
