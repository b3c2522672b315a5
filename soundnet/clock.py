"""Time of day: recording start times read from file names, and per-site summaries.

Field recorders name their files by the time they started: AudioMoth
``20260501_053000.WAV``, Song Meter ``S4A01234_20260501_053000.wav`` (a prefix, then
the same stamp). An event ``t`` seconds into such a file happened at ``start + t``;
detect writes that absolute time beside the file's own seconds (an extra column or
field of every output format) and sums detections up per file and per site and clock
hour (:func:`summarize`). Times are as the name gives them, with no time zone (an
AudioMoth names files in UTC unless set otherwise).

Everything here is pure (names and events in, rows and text out) but
:func:`write_summary`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath

from soundnet.errors import SoundnetError, UsageError
from soundnet.events import Event

#: AudioMoth ``YYYYMMDD_HHMMSS`` and Song Meter ``PREFIX_YYYYMMDD_HHMMSS``, searched in
#: a file's base name: eight digits, an underscore, six digits, no digit either side.
DEFAULT_START_PATTERN = (
    r"(?<!\d)(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})_(?P<hour>\d{2})(?P<minute>\d{2})(?P<second>\d{2})(?!\d)"
)

_REQUIRED_GROUPS = ("year", "month", "day", "hour")
_OPTIONAL_GROUPS = ("minute", "second")


def start_pattern(pattern: str | None) -> re.Pattern:
    """The compiled start-time pattern: ``pattern`` (searched in a file's path relative
    to the folder given) or, for None, :data:`DEFAULT_START_PATTERN`.

    A pattern names its parts with the groups ``year``, ``month``, ``day``, ``hour``
    and optionally ``minute``, ``second`` (digits; a second may have a fraction).

    Raises
    ------
    UsageError
        Not a regular expression, or without the groups it needs.
    """
    text = DEFAULT_START_PATTERN if pattern is None else pattern
    try:
        compiled = re.compile(text)
    except re.error as error:
        raise UsageError(f"--start-time-pattern {pattern!r} is not a regular expression ({error})") from None
    missing = [group for group in _REQUIRED_GROUPS if group not in compiled.groupindex]
    if missing:
        raise UsageError(
            f"--start-time-pattern {pattern!r} has no named group {', '.join(missing)} "
            "(name the parts: (?P<year>...)(?P<month>...)(?P<day>...)(?P<hour>...), optionally minute, second)"
        )
    return compiled


def start_time(name: str, pattern: str | re.Pattern | None = None) -> datetime | None:
    """When the recording named ``name`` (its path relative to the folder given) started,
    as its name says; None when the name carries no time.

    The default pattern (AudioMoth, Song Meter) is searched in the base name; a
    pattern given is searched in the whole relative path, so a folder's name may hold
    the date.

    Raises
    ------
    SoundnetError
        A pattern given matches, but not a real date and time.
    """
    given = pattern is not None
    compiled = pattern if isinstance(pattern, re.Pattern) else start_pattern(pattern)
    text = name if given else PurePosixPath(name.replace("\\", "/")).name
    match = compiled.search(text)
    if match is None:
        return None
    parts = match.groupdict()
    try:
        second = float(parts.get("second") or 0)
        moment = datetime(
            *(int(parts[key]) for key in _REQUIRED_GROUPS), int(parts.get("minute") or 0), int(second), round(second % 1 * 1e6)
        )
    except (ValueError, TypeError) as error:
        if not given:
            return None  # eight and six digits that are no date: the name carries no time
        raise SoundnetError(f"{name}: the start time in its name is not a date and time ({error})") from None
    return moment


def clock_time(start: datetime, seconds: float) -> datetime:
    """The time ``seconds`` into a recording that started at ``start``, to the millisecond."""
    return start + timedelta(milliseconds=round(seconds * 1000))


def iso(moment: datetime) -> str:
    """``2026-05-01T05:30:12.345``: ISO 8601 to the millisecond, no time zone."""
    return moment.isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------
# Summaries


@dataclass(frozen=True)
class FileSummary:
    """Detections in one recording.

    ``first`` and ``last`` are the onsets (seconds into the file) of its first and last
    event; ``minutes_with_detections`` counts the minutes (clock minutes when the
    recording's start is known, else minutes from its start) in which any event sounds.
    """

    site: str
    filename: str
    start: datetime | None
    duration: float
    events: int
    first: float | None
    last: float | None
    minutes_with_detections: int


@dataclass(frozen=True)
class HourSummary:
    """Detections of one site in one clock hour: the minutes recorded then (effort), the
    events starting then, and the minutes of the hour in which any event sounds."""

    site: str
    hour: datetime  # the hour's start
    recorded_minutes: float
    events: int
    minutes_with_detections: int


def site_of(name: str, path: Path | None = None) -> str:
    """A recording's site: the folder holding it, relative to the folder given
    (``site_A/rec.wav`` -> ``site_A``), else the name of the folder it is in."""
    parent = PurePosixPath(name).parent.as_posix()
    if parent != ".":
        return parent
    return Path(path).resolve().parent.name if path is not None else ""


def _minutes(start: datetime | None, events: Iterable[Event]) -> set:
    """The minutes in which any event sounds: clock minutes (datetimes) or, without a
    start, minute numbers from the start of the file. A minute counts when an event
    overlaps it; an event of no length counts the minute it is in."""
    minutes: set = set()
    base = 0.0 if start is None else start.minute * 60 + start.second + start.microsecond / 1e6
    for event in events:
        first = math.floor((base + event.onset) / 60)
        last = max(first, math.ceil((base + event.offset) / 60) - 1)
        for minute in range(first, last + 1):
            if start is None:
                minutes.add(minute)
            else:
                minutes.add(start.replace(minute=0, second=0, microsecond=0) + timedelta(minutes=minute))
    return minutes


def summarize(
    recordings: Sequence[tuple[str, float, Sequence[Event]]],
    *,
    starts: Mapping[str, datetime] | None = None,
    sites: Mapping[str, str] | None = None,
) -> tuple[list[FileSummary], list[HourSummary]]:
    """Per-file and per-site, per-hour detection counts.

    Parameters
    ----------
    recordings : sequence of (name, duration, events)
        Each recording's name, length in seconds and detected events.
    starts : mapping of name to datetime, optional
        Start times of the recordings that have one (:func:`start_time`).
    sites : mapping of name to str, optional
        Each recording's site (default :func:`site_of` its name).

    Returns
    -------
    files : list of FileSummary
        In the order given.
    hours : list of HourSummary
        By site, then hour: every clock hour any time-stamped recording of the site
        covers, also those without detections (their ``recorded_minutes`` tell a quiet
        hour from one not recorded). Recordings without a start are not in them.
    """
    starts, sites = starts or {}, sites or {}
    files = []
    by_hour: dict[tuple[str, datetime], _Hour] = {}
    for name, duration, events in recordings:
        site, start = sites.get(name, site_of(name)), starts.get(name)
        minutes = _minutes(start, events)
        onsets = [e.onset for e in events]
        first, last = min(onsets, default=None), max(onsets, default=None)
        files.append(FileSummary(site, name, start, duration, len(events), first, last, len(minutes)))
        if start is None:
            continue
        end = start + timedelta(seconds=duration)
        hour = _hour_of(start)
        while hour < end or hour == _hour_of(start):  # a recording of no length still names its hour
            overlap = (min(end, hour + timedelta(hours=1)) - max(start, hour)).total_seconds()
            by_hour.setdefault((site, hour), _Hour()).recorded += max(overlap, 0.0) / 60
            hour += timedelta(hours=1)
        for event in events:
            by_hour.setdefault((site, _hour_of(clock_time(start, event.onset))), _Hour()).events += 1
        for minute in minutes:
            by_hour.setdefault((site, _hour_of(minute)), _Hour()).minutes.add(minute)
    hours = [HourSummary(site, hour, h.recorded, h.events, len(h.minutes)) for (site, hour), h in sorted(by_hour.items())]
    return files, hours


@dataclass
class _Hour:
    recorded: float = 0.0
    events: int = 0
    minutes: set = field(default_factory=set)


def _hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


FILE_SUMMARY_HEADER = (
    "site", "filename", "start_datetime", "duration_s", "events", "first_detection_s", "last_detection_s",
    "first_detection_datetime", "last_detection_datetime", "minutes_with_detections",
)  # fmt: skip
HOUR_SUMMARY_HEADER = ("site", "date", "hour", "recorded_minutes", "events", "minutes_with_detections")


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _at(start: datetime | None, seconds: float | None) -> str:
    return "" if start is None or seconds is None else iso(clock_time(start, seconds))


def render_file_summary(files: Sequence[FileSummary]) -> str:
    """The per-file summary as CSV text (:data:`FILE_SUMMARY_HEADER`)."""
    rows = [FILE_SUMMARY_HEADER]
    for f in files:
        rows.append(
            (
                f.site, f.filename, "" if f.start is None else iso(f.start), f"{f.duration:.3f}", str(f.events),
                _seconds(f.first), _seconds(f.last), _at(f.start, f.first), _at(f.start, f.last),
                str(f.minutes_with_detections),
            )
        )  # fmt: skip
    return _csv(rows)


def render_hour_summary(hours: Sequence[HourSummary]) -> str:
    """The per-site, per-hour summary as CSV text (:data:`HOUR_SUMMARY_HEADER`)."""
    rows = [HOUR_SUMMARY_HEADER]
    for h in hours:
        rows.append(
            (
                h.site, h.hour.date().isoformat(), str(h.hour.hour), f"{h.recorded_minutes:.2f}", str(h.events),
                str(h.minutes_with_detections),
            )
        )  # fmt: skip
    return _csv(rows)


def _csv(rows: Iterable[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def hourly_path(path: Path) -> Path:
    """Where the per-hour summary goes beside the per-file one: ``F.csv`` -> ``F.hourly.csv``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.hourly{path.suffix or '.csv'}")


def write_summary(path: Path, files: Sequence[FileSummary], hours: Sequence[HourSummary]) -> tuple[Path, Path]:
    """Write the per-file summary to ``path`` and the per-hour one to :func:`hourly_path`,
    each all or nothing; returns both paths."""
    from soundnet.storage import write_text

    hourly = hourly_path(path)
    write_text(hourly, render_hour_summary(hours))
    write_text(Path(path), render_file_summary(files))
    return Path(path), hourly
