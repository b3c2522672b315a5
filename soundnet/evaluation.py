"""Evaluation: a detector, or any detector's event table, scored on annotated audio.

Reading the reference and running the detector happen here; the scores come from
:mod:`soundnet.scoring` and the readable table from :mod:`soundnet.report`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundnet.annotations import choose_target, frame_labels, match_files, read_annotations
from soundnet.audio import as_paths, audio_duration, find_audio
from soundnet.batch import Failure, run_batch
from soundnet.bootstrap import Bootstrap, bootstrap, resampled_keys
from soundnet.calibration import BINS, Outcomes, events_at, expected_calibration_error, outcomes, pooled, reliability
from soundnet.config import PostConfig
from soundnet.errors import UsageError
from soundnet.events import Event
from soundnet.guard import refuse_overwrites, with_sidecars
from soundnet.outputs import plot_file, unique_paths
from soundnet.psds import PSDS, SCENARIOS, deltas, has_events, psds_of_deltas
from soundnet.scoring import EventScores, FrameScores, event_scores, frame_scores
from soundnet.storage import write_json
from soundnet.tuning import CURVE_THRESHOLDS, CurvePoint, operating_curve

CURVE_FILE = "operating_curve.png"
"""The name of the operating curve's picture in evaluate's plot folder."""
PSD_ROC_FILE = "psd_roc.png"
"""The PSD-ROC of both PSDS scenarios, in evaluate's plot folder."""
RELIABILITY_FILE = "reliability.png"
"""The reliability diagram of event confidence, in evaluate's plot folder."""
SUMMARY_PLOTS = {CURVE_FILE: "the operating curve", PSD_ROC_FILE: "the PSD-ROC", RELIABILITY_FILE: "the reliability diagram"}

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
class ConfidenceScores:
    """How well event confidence says how likely an event is true (matched a reference
    event, onset collar 0.5 s): the expected calibration error (10 equal-width bins) of
    the confidence reported (``ece``: calibrated when the card has a calibration) and of
    the network's raw confidence (``ece_raw``), over ``events`` events (``true_events``
    true); ``method``: the calibration's (None: raw confidences reported)."""

    events: int
    true_events: int
    ece: float | None
    ece_raw: float | None
    method: str | None
    reported: Outcomes = field(repr=False)
    raw: Outcomes = field(repr=False)

    def to_json(self) -> dict:
        bins = reliability(self.reported.confidence, self.reported.true)
        return {
            "events": self.events,
            "true_events": self.true_events,
            "calibration": self.method,
            "ece": self.ece,
            "ece_raw": self.ece_raw,
            "bins": BINS,
            "reliability": [
                {
                    "low": float(lo),
                    "high": float(hi),
                    "events": int(n),
                    "mean_confidence": _finite(c),
                    "fraction_true": _finite(f),
                }
                for lo, hi, n, c, f in zip(
                    bins.edges[:-1], bins.edges[1:], bins.count, bins.confidence, bins.fraction_true, strict=True
                )
            ],
        }


def _finite(value) -> float | None:
    return None if not np.isfinite(value) else float(value)


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
    psds: dict[str, PSDS] | None = None
    confidence: ConfidenceScores | None = None
    bootstrap: Bootstrap | None = None

    def figures(self) -> dict[str, float | None]:
        """Every figure reported, by name (``event_onset.f_measure``, ``psds.psds1``,
        ``confidence.ece``...): what :attr:`bootstrap` gives intervals of."""
        return _flat_figures(self.scores, self.frame, self.psds, self.confidence)

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
            "psds": None if self.psds is None else {name: p.to_json() for name, p in self.psds.items()},
            "confidence": None if self.confidence is None else self.confidence.to_json(),
            "bootstrap": None if self.bootstrap is None else self.bootstrap.to_json(),
            "files": {name: counts.to_json() for name, counts in self.scores.files.items()},
            "failures": [{"file": f.item, "error": f.message} for f in self.failures],
        }


def _durations(references: References, names) -> dict[str, float]:
    return {name: audio_duration(references.paths[name]) for name in names}


_FIGURE_FIELDS = ("f_measure", "precision", "recall", "error_rate")


def _flat_figures(scores: EventScores, frame: FrameScores | None, psds: dict | None, confidence) -> dict[str, float | None]:
    figures: dict[str, float | None] = {}
    for metric in ("event_onset", "event_onset_offset", "segment"):
        for name in _FIGURE_FIELDS:
            figures[f"{metric}.{name}"] = getattr(getattr(scores, metric), name)
    figures["alarms.false_alarms_per_hour"] = scores.alarms.false_alarms_per_hour
    figures["alarms.miss_rate"] = scores.alarms.miss_rate
    if frame is not None:
        figures["frame.average_precision"] = frame.average_precision
        figures["frame.roc_auc"] = frame.roc_auc
    for name, value in (psds or {}).items():
        figures[f"psds.{name}"] = None if value is None else value.value
    if confidence is not None:
        figures["confidence.ece"] = confidence.ece
        figures["confidence.ece_raw"] = confidence.ece_raw
    return figures


@dataclass(frozen=True)
class _Scored:
    """Everything a figure is computed from, by file: what a bootstrap resamples."""

    label: str
    reference: dict[str, list[Event]]
    estimated: dict[str, list[Event]]
    durations: dict[str, float]
    labels: dict[str, np.ndarray] | None = None  # frame labels
    probabilities: dict[str, np.ndarray] | None = None
    deltas: dict[str, dict] | None = None  # PSDS scenario -> file -> sed_scores_eval deltas
    reported: dict[str, Outcomes] | None = None  # events' reported confidence and truth
    raw: dict[str, Outcomes] | None = None  # the same events' raw confidence
    method: str | None = None

    def figures(self, names: list[str]) -> dict[str, float | None]:
        keys = resampled_keys(names)
        by_key = dict(zip(keys, names, strict=True))
        scores = event_scores(
            {k: self.reference[n] for k, n in by_key.items()},
            {k: self.estimated.get(n, []) for k, n in by_key.items()},
            label=self.label,
            durations={k: self.durations[n] for k, n in by_key.items()},
        )
        frame = (
            None if self.labels is None else frame_scores([self.labels[n] for n in names], [self.probabilities[n] for n in names])
        )
        psds = None if self.deltas is None else dict.fromkeys(self.deltas)  # None: no event in this resample
        if self.deltas is not None and has_events(self.reference, names, label=self.label):
            durations, reference = (
                {k: self.durations[n] for k, n in by_key.items()},
                {k: self.reference[n] for k, n in by_key.items()},
            )
            psds = {
                name: psds_of_deltas(
                    {k: per_file[n] for k, n in by_key.items()},
                    reference,
                    label=self.label,
                    durations=durations,
                    scenario=SCENARIOS[name],
                    name=name,
                )
                for name, per_file in self.deltas.items()
            }
        return _flat_figures(scores, frame, psds, self.confidence(names))

    def confidence(self, names: list[str]) -> ConfidenceScores | None:
        if self.reported is None:
            return None
        reported, raw = pooled([self.reported[n] for n in names]), pooled([self.raw[n] for n in names])
        return ConfidenceScores(
            events=len(raw.true),
            true_events=int(raw.true.sum()),
            ece=expected_calibration_error(reported.confidence, reported.true),
            ece_raw=expected_calibration_error(raw.confidence, raw.true),
            method=self.method,
            reported=reported,
            raw=raw,
        )


def _evaluation(scored: _Scored, failures, *, curve=None, resamples: int = 0, seed: int = 0) -> Evaluation:
    names = list(scored.reference)
    scores = event_scores(scored.reference, scored.estimated, label=scored.label, durations=scored.durations)
    frame = (
        None
        if scored.labels is None
        else frame_scores([scored.labels[n] for n in names], [scored.probabilities[n] for n in names])
    )
    psds = None
    if scored.deltas is not None:
        psds = {
            name: psds_of_deltas(
                per_file, scored.reference, label=scored.label, durations=scored.durations, scenario=SCENARIOS[name], name=name
            )
            for name, per_file in scored.deltas.items()
        }
    intervals = None
    if resamples:
        log.info("bootstrap: %d resamples of %d file(s), seed %d", resamples, len(names), seed)
        intervals = bootstrap(names, scored.figures, resamples=resamples, seed=seed)
    return Evaluation(
        scored.label,
        scores,
        frame,
        scored.reference,
        scored.estimated,
        failures,
        curve,
        psds=psds,
        confidence=scored.confidence(names),
        bootstrap=intervals,
    )


def _refuse_overwrites(outputs: list[tuple[str, Path]], references: References, *tables: Path | None) -> None:
    """No output may replace an evaluated file, its label file, or a table read."""
    refuse_overwrites(outputs, [*with_sidecars(references.paths.values()), *(t for t in tables if t is not None)])


def _check_bootstrap(resamples: int) -> None:
    if resamples < 0:
        raise UsageError(f"bootstrap must be a number of resamples >= 0. Received: bootstrap={resamples}")


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
    bootstrap: int = 0,
    seed: int = 0,
    verify: bool = True,
) -> Evaluation:
    """Run a detector on annotated audio and score it: the DCASE metrics of sed_eval,
    PSDS of sed_scores_eval, and the calibration of event confidence.

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
        (one PNG per file, named as detect's per-file outputs), the operating curve
        (miss rate against false alarms per hour) as ``operating_curve.png``, the PSD-ROC
        of both PSDS scenarios as ``psd_roc.png`` and the reliability diagram of event
        confidence as ``reliability.png``.
    on_detection : callable, optional
        ``on_detection(detection, reference_events)`` for each file scored.
    fail_fast : bool
        Stop at the first file the detector cannot read.
    label_column : str or None
        A Raven table's label column (default: ``Annotation``, ``Species``, ``Label``).
    bootstrap : int >= 0
        Resample the files this many times (with replacement) for 95 % percentile
        intervals of every figure (``Evaluation.bootstrap``); 0: none.
    seed : int
        The bootstrap's seed.
    verify : bool
        Apply the card's verifier, if it has one (:class:`soundnet.Detector`).

    Returns
    -------
    Evaluation
        ``psds``: PSDS1 and PSDS2 (:data:`soundnet.psds.SCENARIOS`) of the raw per-frame
        probabilities; ``confidence``: the expected calibration error of the events'
        confidence as detect reports it (calibrated when the card has a calibration) and raw.
    """
    from soundnet.detection import Detection, Detector

    _check_bootstrap(bootstrap)
    detector = Detector(model, verify=verify)
    references = read_references(inputs, annotations, target=target or detector.card.target, label_column=label_column)
    post = detector.postprocessing(post)

    plots = {} if plot_dir is None else unique_paths(plot_dir, list(references.paths), ".png", what="the plot")
    summary = {} if plot_dir is None else {name: Path(plot_dir) / name for name in SUMMARY_PLOTS}
    for name, path in plots.items():
        for picture in summary.values():
            if path == picture:
                raise UsageError(f"{path}: the plot of {name!r} and {SUMMARY_PLOTS[picture.name]} would both be written here")
    outputs = [("--plot-dir", path) for path in [*plots.values(), *summary.values()]]
    outputs += [("--output", Path(output))] if output is not None else []
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
    frame_seconds = detector.card.features.frame_seconds
    labels = {
        name: frame_labels(
            [e for e in references.events[name] if e.label == references.target],
            len(d.probabilities),
            frame_seconds=d.frame_seconds,
        )
        for name, d in detections.items()
    }
    probabilities = {name: d.probabilities for name, d in detections.items()}
    reference = {name: references.events[name] for name in detections}
    estimated = {name: d.events for name, d in detections.items()}
    durations = _durations(references, reference)
    label = references.target
    raw_events = events_at(probabilities, post=post, label=label, frame_seconds=frame_seconds, durations=durations)
    if detector.verify and detector.card.verifier is not None:  # the events reported (kept by it), with their raw confidence
        told = {n: {(e.onset, e.offset) for e in events} for n, events in estimated.items()}
        raw_events = {n: [e for e in events if (e.onset, e.offset) in told[n]] for n, events in raw_events.items()}
    raw = outcomes(reference, raw_events, label=label)
    reported = raw
    if detector.calibrated:
        reported = {n: o._replace(confidence=detector.card.calibration.apply(o.confidence)) for n, o in raw.items()}
    scored = _Scored(
        label,
        reference,
        estimated,
        durations,
        labels,
        probabilities,
        None  # no file scored, or no reference event: PSDS undefined (no true positive rate)
        if not has_events(reference, list(reference), label=label)
        else {
            name: deltas(
                probabilities, reference, label=label, frame_seconds=frame_seconds, durations=durations, scenario=scenario
            )
            for name, scenario in SCENARIOS.items()
        },
        reported,
        raw,
        detector.card.calibration.method if detector.calibrated else None,
    )
    curve = operating_curve(
        probabilities,
        reference,
        label=label,
        post=post,
        frame_seconds=frame_seconds,
        durations=durations,
        thresholds=(*CURVE_THRESHOLDS, post.threshold),
    )
    evaluation = _evaluation(scored, batch.failures, curve=curve, resamples=bootstrap, seed=seed)
    if summary:
        _plot_summary(summary, evaluation, post=post)
    if output is not None:
        write_json(output, evaluation.to_json())
    return evaluation


def _plot_summary(paths: dict[str, Path], evaluation: Evaluation, *, post: PostConfig) -> None:
    from soundnet.plot import plot_operating_curve, plot_psd_rocs, plot_reliability

    alarms = evaluation.scores.alarms
    plot_operating_curve(
        paths[CURVE_FILE],
        evaluation.curve,
        point=(alarms.false_alarms_per_hour, alarms.miss_rate),
        point_label=f"threshold {post.threshold:g} (used)",
        title=f"{evaluation.target}: miss rate against false alarms per hour",
    )
    if evaluation.psds is not None:
        plot_psd_rocs(paths[PSD_ROC_FILE], evaluation.psds, title=f"{evaluation.target}: PSD-ROC (sed_scores_eval)")
    confidence = evaluation.confidence
    plot_reliability(
        paths[RELIABILITY_FILE],
        reported=confidence.reported if confidence.method is not None else None,
        raw=confidence.raw,
        title=f"{evaluation.target}: event confidence against the fraction of events true",
    )


def evaluate_table(
    inputs: Path | str | Iterable[Path | str],
    estimated: Path,
    *,
    annotations: Path | None = None,
    target: str | None = None,
    output: Path | None = None,
    label_column: str | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> Evaluation:
    """Score a ready event table (``estimated``: a DCASE or Raven table, any detector's)
    on the annotated audio in ``inputs``, exactly as :func:`evaluate` scores a soundnet
    model (without the figures that need probabilities: frame scores, PSDS, calibration);
    rows of either table naming files not among ``inputs`` are left out."""
    _check_bootstrap(bootstrap)
    references = read_references(inputs, annotations, target=target, label_column=label_column)
    _refuse_overwrites([("--output", Path(output))] if output is not None else [], references, annotations, Path(estimated))
    rows = read_annotations(Path(estimated))
    matched = match_files(rows, list(references.paths.values()), as_paths(inputs), skip_unknown=True)
    names = {p: n for n, p in references.paths.items()}
    estimated_events = _rows_by_name(matched, names)
    scored = _Scored(references.target, references.events, estimated_events, _durations(references, references.events))
    evaluation = _evaluation(scored, [], resamples=bootstrap, seed=seed)
    if output is not None:
        write_json(output, evaluation.to_json())
    return evaluation
