"""Evaluation: a detector, or any detector's event table, scored on annotated audio.

Reading the reference and running the detector happen here; the scores come from
:mod:`soundnet.scoring` and the readable table from :mod:`soundnet.report`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from soundnet.annotations import choose_target, frame_labels, match_files, read_annotations
from soundnet.audio import as_paths, audio_duration, find_audio
from soundnet.batch import Failure, run_batch
from soundnet.config import PostConfig
from soundnet.errors import UsageError
from soundnet.events import Event
from soundnet.guard import refuse_overwrites, with_sidecars
from soundnet.outputs import plot_file, unique_paths
from soundnet.scoring import EventScores, FrameScores, event_scores, frame_scores
from soundnet.storage import write_json
from soundnet.tuning import CURVE_THRESHOLDS, CurvePoint, operating_curve

CURVE_FILE = "operating_curve.png"
"""The name of the operating curve's picture in evaluate's plot folder."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class References:
    """Annotated audio: the target label, each annotated file's path and reference
    events, keyed by its display name (relative to the folder it was found in)."""

    target: str
    paths: dict[str, Path]
    events: dict[str, list[Event]]


def _rows_by_name(matched: dict, names: dict[Path, str]) -> dict[str, list[Event]]:
    return {
        names[p]: sorted(Event(names[p], r.event.onset, r.event.offset, r.event.label) for r in rows if r.event is not None)
        for p, rows in matched.items()
        if p in names
    }


def read_references(
    inputs: Path | str | Iterable[Path | str],
    annotations: Path | None,
    *,
    target: str | None,
    label_column: str | None = None,
) -> References:
    """The annotated files among ``inputs`` and their reference events.

    ``annotations`` is a DCASE or Raven table; None reads the label files beside the
    audio. Only annotated files are kept, and the table's rows of files not among
    ``inputs`` are left out with one warning (a subset is scored); ``target`` None
    takes the only label there is; ``label_column`` is a Raven table's label column.
    """
    from soundnet.dataset import annotations_name, collect_annotations
    from soundnet.detection import display_name

    roots = as_paths(inputs)
    audio = find_audio(roots)
    matched = collect_annotations(audio, roots, annotations, label_column=label_column, skip_unknown=True)
    rows = [row for rows in matched.values() for row in rows]
    if target is not None and not any(row.event is not None and row.event.label == target for row in rows):
        # audio known to hold no target (negatives only): scored all the same, each detection a false alarm
        log.warning(
            "%s: no reference event of %r: every detection counts as a false alarm", annotations_name(annotations), target
        )
    else:
        target = choose_target(rows, target, where=annotations_name(annotations))
    names = {p: display_name(p, roots) for p in audio if p in matched}
    return References(target, {n: p for p, n in names.items()}, _rows_by_name(matched, names))


@dataclass(frozen=True)
class Evaluation:
    """Scores of a detector (or of a ready event table) on labelled audio.

    ``target`` is the label scored; ``scores`` the event-based (onset; onset and
    offset) and segment-based figures, false alarms per hour and miss rate
    (``scores.alarms``) and per-file counts; ``frame`` the frame-level average
    precision and ROC AUC (None when a table was scored); ``reference`` and
    ``estimated`` the events compared, by file; ``failures`` the files the detector
    could not score (``item``: the file's display name); ``curve`` the operating
    curve, false alarms per hour and miss rate at each threshold of
    :data:`soundnet.tuning.CURVE_THRESHOLDS` and the one used, the rest of the
    post-processing fixed (None when a table was scored: no probabilities).
    """

    target: str
    scores: EventScores
    frame: FrameScores | None
    reference: dict[str, list[Event]]
    estimated: dict[str, list[Event]]
    failures: list[Failure]
    curve: list[CurvePoint] | None = None

    @property
    def false_alarms_per_hour(self) -> float | None:
        """Event-based false alarms (onset collar 0.5 s) per hour of the audio scored."""
        return self.scores.alarms.false_alarms_per_hour

    @property
    def miss_rate(self) -> float | None:
        """Reference events missed / reference events (1 - event recall, onset collar 0.5 s)."""
        return self.scores.alarms.miss_rate

    def to_json(self) -> dict:
        return {
            "target": self.target,
            **self.scores.summary_json(),
            "frame": None if self.frame is None else self.frame.to_json(),
            "operating_curve": None if self.curve is None else [point._asdict() for point in self.curve],
            "files": {name: counts.to_json() for name, counts in self.scores.files.items()},
            "failures": [{"file": f.item, "error": f.message} for f in self.failures],
        }


def _durations(references: References, names) -> dict[str, float]:
    return {name: audio_duration(references.paths[name]) for name in names}


def _scored(references: References, reference: dict, estimated: dict, frame, failures, durations: dict, curve=None) -> Evaluation:
    scores = event_scores(reference, estimated, label=references.target, durations=durations)
    return Evaluation(references.target, scores, frame, reference, estimated, failures, curve)


def _refuse_overwrites(outputs: list[tuple[str, Path]], references: References, *tables: Path | None) -> None:
    """No output may replace an evaluated file, its label file, or a table read."""
    refuse_overwrites(outputs, [*with_sidecars(references.paths.values()), *(t for t in tables if t is not None)])


def evaluate(
    inputs: Path | str | Iterable[Path | str],
    *,
    annotations: Path | None = None,
    model: Path | None = None,
    target: str | None = None,
    post: PostConfig | Mapping[str, float | None] | None = None,
    output: Path | None = None,
    plot_dir: Path | None = None,
    on_detection: Callable | None = None,
    fail_fast: bool = False,
    label_column: str | None = None,
) -> Evaluation:
    """Run a detector on annotated audio and score it with the DCASE metrics of sed_eval.

    Parameters
    ----------
    inputs : path or iterable of paths
        Audio files and folders.
    annotations : Path or None
        A DCASE or Raven table of reference events (rows of files not among ``inputs``
        are left out, with one warning); None reads the label files beside the audio.
    model : Path or None
        A run folder; None for the bundled default detector.
    target : str or None
        The label to score (default: the model's target).
    post : PostConfig, mapping or None
        The post-processing: a whole PostConfig, or some of its values
        (``{"threshold": 0.6}``; None values ignored) replacing the model card's tuned
        ones; None keeps the card's.
    output : Path or None
        Also write every figure and the per-file counts there as JSON (``to_json``).
    plot_dir : Path or None
        Draw each file's spectrogram, probability, detected and reference events here
        (one PNG per file, named as detect's per-file outputs), and the operating
        curve (miss rate against false alarms per hour) as ``operating_curve.png``.
    on_detection : callable, optional
        ``on_detection(detection, reference_events)`` for each file scored.
    fail_fast : bool
        Stop at the first file the detector cannot read.
    label_column : str or None
        A Raven table's label column (default: ``Annotation``, ``Species``, ``Label``).
    """
    from soundnet.detection import Detection, Detector

    detector = Detector(model)
    references = read_references(inputs, annotations, target=target or detector.card.target, label_column=label_column)
    post = detector.postprocessing(post)

    plots = {} if plot_dir is None else unique_paths(plot_dir, list(references.paths), ".png", what="the plot")
    curve_plot = None if plot_dir is None else Path(plot_dir) / CURVE_FILE
    for name, path in plots.items():
        if path == curve_plot:
            raise UsageError(f"{path}: the plot of {name!r} and the operating curve would both be written here")
    outputs = [("--plot-dir", path) for path in plots.values()] + ([("--output", Path(output))] if output is not None else [])
    outputs += [("--plot-dir", curve_plot)] if curve_plot is not None else []
    _refuse_overwrites(outputs, references, annotations)

    def detect_one(name: str) -> Detection:
        detection = detector.detect_file(references.paths[name], post=post, name=name)
        if name in plots:
            sample_rate = detector.card.features.sample_rate
            plot_file(
                plots[name], detection, sample_rate=sample_rate, threshold=post.threshold, reference=references.events[name]
            )
        if on_detection is not None:
            on_detection(detection, references.events[name])
        return detection

    batch = run_batch(detect_one, list(references.paths), fail_fast=fail_fast)
    detections = {name: d for name, d in batch.done}
    labels = [
        frame_labels(
            [e for e in references.events[name] if e.label == references.target],
            len(d.probabilities),
            frame_seconds=d.frame_seconds,
        )
        for name, d in detections.items()
    ]
    frame = frame_scores(labels, [d.probabilities for d in detections.values()])
    reference = {name: references.events[name] for name in detections}
    estimated = {name: d.events for name, d in detections.items()}
    durations = _durations(references, reference)
    curve = operating_curve(
        {name: d.probabilities for name, d in detections.items()},
        reference,
        label=references.target,
        post=post,
        frame_seconds=detector.card.features.frame_seconds,
        durations=durations,
        thresholds=(*CURVE_THRESHOLDS, post.threshold),
    )
    evaluation = _scored(references, reference, estimated, frame, batch.failures, durations, curve)
    if curve_plot is not None:
        from soundnet.plot import plot_operating_curve

        alarms = evaluation.scores.alarms
        plot_operating_curve(
            curve_plot,
            curve,
            point=(alarms.false_alarms_per_hour, alarms.miss_rate),
            point_label=f"threshold {post.threshold:g} (used)",
            title=f"{references.target}: miss rate against false alarms per hour",
        )
    if output is not None:
        write_json(output, evaluation.to_json())
    return evaluation


def evaluate_table(
    inputs: Path | str | Iterable[Path | str],
    estimated: Path,
    *,
    annotations: Path | None = None,
    target: str | None = None,
    output: Path | None = None,
    label_column: str | None = None,
) -> Evaluation:
    """Score a ready event table (``estimated``: a DCASE or Raven table, any detector's)
    on the annotated audio in ``inputs``, exactly as :func:`evaluate` scores a soundnet
    model; rows of either table naming files not among ``inputs`` are left out."""
    references = read_references(inputs, annotations, target=target, label_column=label_column)
    _refuse_overwrites([("--output", Path(output))] if output is not None else [], references, annotations, Path(estimated))
    rows = read_annotations(Path(estimated))
    matched = match_files(rows, list(references.paths.values()), as_paths(inputs), skip_unknown=True)
    names = {p: n for n, p in references.paths.items()}
    estimated_events = _rows_by_name(matched, names)
    evaluation = _scored(references, references.events, estimated_events, None, [], _durations(references, references.events))
    if output is not None:
        write_json(output, evaluation.to_json())
    return evaluation
