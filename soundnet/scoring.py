"""Scores in the numbers DCASE papers report, computed by sed_eval and scikit-learn.

Pure functions of events and probabilities; the metric math stays in the libraries,
this module only arranges the data for them and gives the results typed names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from soundnet.events import Event

COLLAR = 0.5  # seconds: the onset collar of DCASE 2017 task 2
SEGMENT = 1.0  # seconds: segment length of the segment-based scores
OFFSET_LENGTH_FRACTION = 0.5  # the offset collar, as a fraction of the reference event's length


@dataclass(frozen=True)
class Scores:
    """One sed_eval metric's figures (None where undefined, e.g. F1 with no event at all)."""

    f_measure: float | None
    precision: float | None
    recall: float | None
    error_rate: float | None
    substitution_rate: float | None
    deletion_rate: float | None
    insertion_rate: float | None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FileCounts:
    """One file's events: reference, estimated, matched (onset collar, offsets ignored),
    and false alarms (estimated events matching no reference event)."""

    reference: int
    estimated: int
    true_positives: int
    false_alarms: int

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Alarms:
    """False alarms per hour and miss rate, event-based with the onset collar (0.5 s).

    ``false_alarms`` are sed_eval's false positives (estimated events matching no
    reference event) and ``misses`` its false negatives, summed over every file scored,
    files without reference events included; ``hours`` is the audio scored (None when
    the files' lengths are unknown).
    """

    false_alarms: int
    misses: int
    reference: int
    hours: float | None

    @property
    def false_alarms_per_hour(self) -> float | None:
        """False alarms divided by hours of audio (None when no length is known)."""
        return None if not self.hours else self.false_alarms / self.hours

    @property
    def miss_rate(self) -> float | None:
        """Reference events missed / reference events, i.e. 1 - event recall (None without reference events)."""
        return None if self.reference == 0 else self.misses / self.reference

    def to_json(self) -> dict:
        return {**asdict(self), "false_alarms_per_hour": self.false_alarms_per_hour, "miss_rate": self.miss_rate}


@dataclass(frozen=True)
class EventScores:
    """Event- and segment-based scores of a detector on a set of files.

    Attributes
    ----------
    event_onset : Scores
        Event-based, onset collar 0.5 s, offsets ignored (DCASE 2017 task 2).
    event_onset_offset : Scores
        Event-based, onset collar 0.5 s and offset collar 50 % of the event's length.
    segment : Scores
        Segment-based on 1 s segments.
    alarms : Alarms
        False alarms per hour and miss rate (onset collar), over all the files.
    files : dict of str to FileCounts
        Per-file counts, in the order the files were scored (left out of the repr).
    """

    event_onset: Scores
    event_onset_offset: Scores
    segment: Scores
    alarms: Alarms
    files: dict[str, FileCounts] = field(repr=False)  # grows with the files: printed scores stay short

    def summary_json(self) -> dict:
        """The metrics as JSON (no per-file counts)."""
        return {
            "event_onset": self.event_onset.to_json(),
            "event_onset_offset": self.event_onset_offset.to_json(),
            "segment": self.segment.to_json(),
            "alarms": self.alarms.to_json(),
        }

    def to_json(self) -> dict:
        return {**self.summary_json(), "files": {name: c.to_json() for name, c in self.files.items()}}


@dataclass(frozen=True)
class FrameScores:
    """Threshold-free frame-level scores (None when one class is absent)."""

    average_precision: float | None
    roc_auc: float | None
    frames: int

    def to_json(self) -> dict:
        return asdict(self)


def _dicts(events: Sequence[Event]) -> list[dict]:
    return [{"filename": e.filename, "onset": e.onset, "offset": e.offset, "event_label": e.label} for e in events]


def _clean(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _scores(results: dict) -> Scores:
    f, er = results["f_measure"], results["error_rate"]
    return Scores(
        f_measure=_clean(f["f_measure"]),
        precision=_clean(f["precision"]),
        recall=_clean(f["recall"]),
        error_rate=_clean(er["error_rate"]),
        substitution_rate=_clean(er["substitution_rate"]),
        deletion_rate=_clean(er["deletion_rate"]),
        insertion_rate=_clean(er["insertion_rate"]),
    )


def _alarms(metric, hours: float | None) -> Alarms:
    """The false alarms and misses counted by an onset-only event metric of one label
    (no substitutions, so false positives and negatives are the whole story)."""
    counts = metric.overall
    return Alarms(int(counts["Nfp"]), int(counts["Nfn"]), int(counts["Nref"]), hours)


def hours_of(durations: Mapping[str, float] | None, names: Iterable[str]) -> float | None:
    """Total length in hours of the files ``names`` (None when a file's length is unknown)."""
    seconds = [None if durations is None else durations.get(name) for name in names]
    return None if None in seconds else sum(seconds) / 3600.0


def _event_metric(label: str, *, offsets: bool):
    import sed_eval

    return sed_eval.sound_event.EventBasedMetrics(
        event_label_list=[label],
        t_collar=COLLAR,
        percentage_of_length=OFFSET_LENGTH_FRACTION,
        evaluate_onset=True,
        evaluate_offset=offsets,
    )


def event_scores(
    reference: Mapping[str, Sequence[Event]],
    estimated: Mapping[str, Sequence[Event]],
    *,
    label: str,
    durations: Mapping[str, float] | None = None,
) -> EventScores:
    """sed_eval scores of estimated events against reference events, file by file.

    Parameters
    ----------
    reference, estimated : mapping filename -> events
        Every file of ``reference`` is scored (a file missing from ``estimated`` has no
        detection); only events of ``label`` count.
    durations : mapping filename -> seconds, optional
        File lengths, so that segment-based scores count the silent end of a file and
        false alarms are counted per hour (else ``alarms.hours`` is None).
    """
    import sed_eval

    onset, both = _event_metric(label, offsets=False), _event_metric(label, offsets=True)
    segment = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=[label], time_resolution=SEGMENT)
    files = {}
    for filename in reference:
        ref = _dicts([e for e in reference[filename] if e.label == label])
        est = _dicts([e for e in estimated.get(filename, []) if e.label == label])
        per_file = _event_metric(label, offsets=False)
        for metric in (onset, both, per_file):
            metric.evaluate(reference_event_list=ref, estimated_event_list=est)
        length = None if durations is None else durations.get(filename)
        segment.evaluate(reference_event_list=ref, estimated_event_list=est, evaluated_length_seconds=length)
        files[filename] = FileCounts(len(ref), len(est), int(per_file.overall["Ntp"]), int(per_file.overall["Nfp"]))
    return EventScores(
        event_onset=_scores(onset.results_overall_metrics()),
        event_onset_offset=_scores(both.results_overall_metrics()),
        segment=_scores(segment.results_overall_metrics()),
        alarms=_alarms(onset, hours_of(durations, reference)),
        files=files,
    )


def onset_figures(
    reference: Mapping[str, Sequence[Event]],
    estimated: Mapping[str, Sequence[Event]],
    *,
    label: str,
    hours: float | None = None,
) -> tuple[float, float, Alarms]:
    """Event-based F-score (0 when undefined), error rate and alarms, onset collar 0.5 s,
    of the events of ``label``: the post-processing search's figures, one sed_eval
    metric only (fast). ``hours``: the length of the files of ``reference``."""
    metric = _event_metric(label, offsets=False)
    for filename, events in reference.items():
        metric.evaluate(
            reference_event_list=_dicts([e for e in events if e.label == label]),
            estimated_event_list=_dicts([e for e in estimated.get(filename, []) if e.label == label]),
        )
    results = metric.results_overall_metrics()
    f = results["f_measure"]["f_measure"]
    return (0.0 if math.isnan(f) else f), results["error_rate"]["error_rate"], _alarms(metric, hours)


def frame_scores(labels: Sequence[np.ndarray], probabilities: Sequence[np.ndarray]) -> FrameScores:
    """Frame-level average precision and ROC AUC of per-frame probabilities against 0/1 labels."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.concatenate([np.asarray(a).ravel() for a in labels]) if labels else np.zeros(0)
    p = np.concatenate([np.asarray(a).ravel() for a in probabilities]) if probabilities else np.zeros(0)
    if len(y) == 0 or y.min() == y.max():
        return FrameScores(None, None, int(len(y)))
    return FrameScores(float(average_precision_score(y, p)), float(roc_auc_score(y, p)), int(len(y)))
