"""Where detect's results go: the combined event table, per-file label files,
per-frame probabilities and plots.

:class:`OutputPlan` is what the user asked for; it is checked against the files
before any work (options that cannot work together, two files that would write one
output), and :class:`OutputWriter` writes each file's outputs as its detection
arrives, then the combined table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from soundnet.audio import STDIN_NAME
from soundnet.clock import clock_time, hourly_path, iso, site_of, start_pattern, start_time, summarize, write_summary
from soundnet.config import PostConfig
from soundnet.errors import SoundnetError, UsageError
from soundnet.formats import EXTENSIONS, FORMATS, render_events, write_frames
from soundnet.guard import refuse_overwrites, with_sidecars
from soundnet.storage import read_json, write_json, write_text

log = logging.getLogger(__name__)

#: Formats of detect's event output: the readable text report, then the table formats.
OUTPUT_FORMATS = ("text", *FORMATS)

#: What produced the results in an --output-dir that a resumed detect adds to.
RESUME_FILE = ".soundnet-detect.json"


def per_file_path(folder: Path, name: str, extension: str) -> Path:
    """The output file in ``folder`` for the audio file shown as ``name``: its relative
    path without the audio extension, folders joined by ``__``, plus ``extension``
    (``sub/a.wav`` -> ``folder/sub__a.txt``)."""
    return Path(folder) / (Path(name).with_suffix("").as_posix().replace("/", "__") + extension)


def unique_paths(folder: Path, names: Sequence[str], extension: str, *, what: str) -> dict[str, Path]:
    """:func:`per_file_path` of every name; two names that would share a file are an error."""
    paths: dict[str, Path] = {}
    owners: dict[Path, str] = {}
    for name in names:
        path = per_file_path(folder, name, extension)
        if path in owners:
            raise UsageError(
                f"{path}: {what} of both {owners[path]!r} and {name!r} would be written here; detect them separately"
            )
        owners[path] = name
        paths[name] = path
    return paths


def render_text(detections: Sequence, starts: Mapping[str, datetime] | None = None) -> str:
    """The readable report: per file its event count and length (and start time, where
    known), then one line per event (with its clock time)."""
    starts = starts or {}
    lines = []
    for detection in detections:
        start = starts.get(detection.name)
        began = "" if start is None else f", started {iso(start)}"
        lines.append(f"{detection.name}: {len(detection.events)} event(s) in {detection.duration:.2f} s{began}")
        for e in detection.events:
            at = "" if start is None else f"  at {iso(clock_time(start, e.onset))}"
            lines.append(f"  {e.onset:9.3f} - {e.offset:9.3f} s  {e.label}  confidence {e.confidence:.2f}{at}")
    return "\n".join(lines) + ("\n" if lines else "")


def start_times(names: Sequence[str], pattern: str | None = None) -> dict[str, datetime]:
    """The start time of each recording whose name (relative path) carries one
    (:func:`soundnet.clock.start_time`); with a ``pattern`` given, one warning names
    how many names it did not match."""
    compiled = start_pattern(pattern)
    starts = {}
    for name in names:
        start = start_time(name, compiled if pattern is not None else None)
        if start is not None:
            starts[name] = start
    missed = [name for name in names if name not in starts]
    if pattern is not None and missed:
        log.warning(
            "--start-time-pattern found no time in %d of %d file name(s) (the first: %r)", len(missed), len(names), missed[0]
        )
    return starts


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def plot_file(path: Path, detection, *, sample_rate: int, threshold: float, reference=None) -> None:
    """Draw a detection (spectrogram, probability, threshold, events, and the reference
    events if given) to the PNG ``path``."""
    from soundnet.plot import plot_detection

    plot_detection(
        path,
        audio=detection.path,
        sample_rate=sample_rate,
        probabilities=detection.probabilities,
        frame_seconds=detection.frame_seconds,
        threshold=threshold,
        events=detection.events,
        reference=reference,
        title=detection.name,
    )


@dataclass(frozen=True)
class OutputPlan:
    """What detect writes besides returning its detections.

    Attributes
    ----------
    fmt : one of OUTPUT_FORMATS
        Format of the combined event output (and of per-file files in ``output_dir``;
        ``text`` gives tsv there).
    output : Path or None
        Write the combined events here (None: the caller prints :attr:`OutputWriter.text`).
    output_dir : Path or None
        One event file per audio file here (audacity ``x.txt``, raven ``x.selections.txt``...).
    frames : Path or None
        Per-frame probabilities: ``F.csv`` or ``F.npy`` for one file; with several
        files, a folder named after ``F`` without its suffix holding one file each.
    json_frames : bool
        With ``fmt="json"``, include each file's per-frame probabilities.
    plot : Path or None
        A PNG of the one file's spectrogram, probability, threshold and events.
    summary : Path or None
        Per-file detection counts (CSV) here and per-site, per-hour counts beside it
        (:func:`soundnet.clock.hourly_path`; :func:`soundnet.clock.summarize`).
    start_time_pattern : str or None
        A regular expression with named groups (year, month, day, hour, [minute,
        second]) finding each recording's start time in its relative path; None finds
        AudioMoth and Song Meter names (:data:`soundnet.clock.DEFAULT_START_PATTERN`).
        Recordings with a start time get clock times in every output format.
    """

    fmt: str = "text"
    output: Path | None = None
    output_dir: Path | None = None
    frames: Path | None = None
    json_frames: bool = False
    plot: Path | None = None
    summary: Path | None = None
    start_time_pattern: str | None = None

    def check(self, n_files: int) -> None:
        """Refuse combinations that cannot work for ``n_files`` files (UsageError)."""
        if self.fmt not in OUTPUT_FORMATS:
            raise UsageError(f"unknown output format {self.fmt!r} (choose one of {', '.join(OUTPUT_FORMATS)})")
        if self.plot is not None and n_files != 1:
            raise UsageError(f"--plot draws one file, but {n_files} were given")
        if self.fmt == "audacity" and n_files > 1 and self.output_dir is None:
            raise UsageError("--format audacity writes one label file per audio file: give --output-dir")
        start_pattern(self.start_time_pattern)
        if self.summary is not None:
            summaries = (self.summary, hourly_path(self.summary))
            for what, path in (("--output", self.output), ("--plot", self.plot), ("--frames", self.frames)):
                if path is not None and any(_same(path, summary) for summary in summaries):
                    raise UsageError(f"{path}: {what} and --summary would both write it")

    @property
    def per_file_format(self) -> str:
        return "tsv" if self.fmt == "text" else self.fmt


class OutputWriter:
    """Writes a plan's outputs for a batch of named files.

    Parameters
    ----------
    plan : OutputPlan
    names : sequence of str
        Every file's display name, in order (checked for output collisions now).
    sample_rate : int
        The model's sample rate: Raven's high frequency is its Nyquist frequency.
    post : PostConfig
        The post-processing in use (the plot draws its threshold).
    """

    def __init__(
        self, plan: OutputPlan, names: Sequence[str], *, sample_rate: int, post: PostConfig, inputs: Sequence[Path] = ()
    ):
        plan.check(len(names))
        self.plan, self.names, self.sample_rate, self.post = plan, list(names), sample_rate, post
        self.starts = start_times(self.names, plan.start_time_pattern)
        self.label_files = {}
        if plan.output_dir is not None:
            extension = EXTENSIONS.get(plan.per_file_format, ".tsv")
            self.label_files = unique_paths(plan.output_dir, self.names, extension, what="the events")
        self.frame_files = {}
        if plan.frames is not None:
            if len(self.names) == 1:
                self.frame_files = {self.names[0]: plan.frames}
            else:
                suffix = ".npy" if plan.frames.suffix.lower() == ".npy" else ".csv"
                self.frame_files = unique_paths(plan.frames.with_suffix(""), self.names, suffix, what="the frames")
        refuse_overwrites(self.paths(), with_sidecars(inputs))

    def paths(self) -> list[tuple[str, Path]]:
        """Every file this writer may write, with the option that asked for it."""
        single = [("--output", self.plan.output), ("--plot", self.plan.plot)]
        summary = [] if self.plan.summary is None else [self.plan.summary, hourly_path(self.plan.summary)]
        return [
            *((what, path) for what, path in single if path is not None),
            *(("--frames", path) for path in self.frame_files.values()),
            *(("--output-dir", path) for path in self.label_files.values()),
            *(("--summary", path) for path in summary),
        ]

    def resume(self, settings: dict) -> set[str]:
        """The names whose per-file outputs (event file, and frames if asked) an earlier
        run with the same ``settings`` (model, post-processing...) wrote, so a resumed
        detect skips them. The settings are kept in ``output_dir/.soundnet-detect.json``:
        resuming with others is an error, never a folder of mixed results. Each output is
        written whole or not at all (soundnet.storage), so one that exists is complete.
        """
        plan = self.plan
        if plan.output_dir is None:
            raise UsageError("--resume skips the files whose results are in --output-dir: give --output-dir")
        if plan.output is not None or plan.plot is not None:
            raise UsageError("--resume writes per-file results only (--output-dir, --frames): drop --output and --plot")
        settings = {
            **settings,
            "format": plan.per_file_format,
            "frames": None if plan.frames is None else str(plan.frames.resolve()),
        }
        path = plan.output_dir / RESUME_FILE
        if path.is_file():
            old = read_json(path)
            changed = sorted(key for key in old.keys() | settings.keys() if old.get(key) != settings.get(key))
            if changed:
                raise SoundnetError(
                    f"{path}: the results here come from other settings ({', '.join(changed)} differ): "
                    "resume with the same model and options, or choose another --output-dir"
                )
        else:
            write_json(path, settings)
        return {
            name
            for name in self.names
            if self.label_files[name].is_file() and (name not in self.frame_files or self.frame_files[name].is_file())
        }

    @property
    def high_freq(self) -> float:
        return self.sample_rate / 2

    def write_file(self, detection) -> None:
        """Write the per-file outputs of one detection (its plot, frames and label file)."""
        name = detection.name
        if self.plan.output is not None or self.plan.fmt != "text":  # the text report on stdout says it already
            log.info("%s: %d event(s) in %.1f s", name, len(detection.events), detection.duration)
        if self.plan.plot is not None:
            plot_file(self.plan.plot, detection, sample_rate=self.sample_rate, threshold=self.post.threshold)
        if name in self.frame_files:
            write_frames(self.frame_files[name], detection.times, detection.probabilities)
        if name in self.label_files:
            text = render_events(
                detection.events, self.plan.per_file_format, files=[name], high_freq=self.high_freq, starts=self.starts
            )
            write_text(self.label_files[name], text)

    def combined_text(self, detections: Sequence) -> str:
        """The combined event output of all detections, in the plan's format."""
        if self.plan.fmt == "text":
            return render_text(detections, self.starts)
        events = [e for d in detections for e in d.events]
        frames = None
        if self.plan.json_frames and self.plan.fmt == "json":
            frames = {d.name: (d.times, d.probabilities) for d in detections}
        names = [d.name for d in detections]
        return render_events(events, self.plan.fmt, files=names, frames=frames, high_freq=self.high_freq, starts=self.starts)

    def write_summary(self, detections: Sequence) -> None:
        """Write the per-file and per-site, per-hour summaries (``plan.summary``) of ``detections``."""
        if self.plan.summary is None:
            return
        recordings = [(d.name, d.duration, d.events) for d in detections]
        sites = {d.name: site_of(d.name, None if d.name == STDIN_NAME else d.path) for d in detections}  # not the spool's folder
        files, hours = summarize(recordings, starts=self.starts, sites=sites)
        written = write_summary(self.plan.summary, files, hours)
        log.info("summary of %d file(s) in %s and %s", len(files), *written)

    def finish(self, detections: Sequence) -> str | None:
        """Write the summary and the combined output to ``plan.output``; return the
        output's text when it goes to the caller instead (no ``output`` and no
        ``output_dir``), else None."""
        self.write_summary(detections)
        if self.plan.output_dir is not None and self.plan.output is None:
            return None
        text = self.combined_text(detections)
        if self.plan.output is None:
            return text
        write_text(self.plan.output, text)
        return None
