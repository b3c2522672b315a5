"""Scores in the numbers DCASE papers report, computed by sed_eval, and the
post-processing search that picks detect's defaults.

Metric math stays in sed_eval and scikit-learn; this module only arranges events
and probabilities for them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from soundnet.config import PostConfig
from soundnet.events import Event
from soundnet.postprocess import median_frames, smooth, to_events

COLLAR = 0.5
SEGMENT = 1.0

# The post-processing search: 9 thresholds x 5 median lengths x 4 minimum durations x 4 gaps.
GRID = {
    "threshold": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "median_seconds": (0.0, 0.05, 0.11, 0.21, 0.31),
    "min_duration": (0.0, 0.05, 0.1, 0.2),
    "merge_gap": (0.0, 0.1, 0.2, 0.5),
}


def _dicts(events: Sequence[Event]) -> list[dict]:
    return [{"filename": e.filename, "onset": e.onset, "offset": e.offset, "event_label": e.label} for e in events]


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _summary(results: dict) -> dict:
    f, er = results["f_measure"], results["error_rate"]
    return {
        "f_measure": _clean(f["f_measure"]),
        "precision": _clean(f["precision"]),
        "recall": _clean(f["recall"]),
        "error_rate": _clean(er["error_rate"]),
        "substitution_rate": _clean(er["substitution_rate"]),
        "deletion_rate": _clean(er["deletion_rate"]),
        "insertion_rate": _clean(er["insertion_rate"]),
    }


def event_scores(
    reference: Mapping[str, Sequence[Event]],
    estimated: Mapping[str, Sequence[Event]],
    *,
    label: str,
    durations: Mapping[str, float] | None = None,
) -> dict:
    """sed_eval scores of estimated events against reference events, file by file.

    Parameters
    ----------
    reference, estimated : mapping filename -> events
        Every file of ``reference`` is scored (a file missing from ``estimated`` has no
        detection); only events of ``label`` count.
    durations : mapping filename -> seconds, optional
        File lengths, so that segment-based scores count the silent end of a file.

    Returns
    -------
    scores : dict
        ``event_onset`` (onset collar 0.5 s, offsets ignored: DCASE 2017 task 2),
        ``event_onset_offset`` (collar 0.5 s, offset collar 50 % of the length),
        ``segment`` (1 s segments), each with f_measure, precision, recall,
        error_rate and its parts; ``files`` with per-file reference/estimated counts
        and true positives (onset-only matching).
    """
    import sed_eval

    onset = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=[label], t_collar=COLLAR, percentage_of_length=0.5, evaluate_onset=True, evaluate_offset=False
    )
    both = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=[label], t_collar=COLLAR, percentage_of_length=0.5, evaluate_onset=True, evaluate_offset=True
    )
    segment = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=[label], time_resolution=SEGMENT)
    files = {}
    for filename in reference:
        ref = _dicts([e for e in reference[filename] if e.label == label])
        est = _dicts([e for e in estimated.get(filename, []) if e.label == label])
        per_file = sed_eval.sound_event.EventBasedMetrics(
            event_label_list=[label], t_collar=COLLAR, evaluate_onset=True, evaluate_offset=False
        )
        for metric in (onset, both, per_file):
            metric.evaluate(reference_event_list=ref, estimated_event_list=est)
        length = None if durations is None else durations.get(filename)
        segment.evaluate(reference_event_list=ref, estimated_event_list=est, evaluated_length_seconds=length)
        counts = per_file.overall
        files[filename] = {"reference": len(ref), "estimated": len(est), "true_positives": int(counts["Ntp"])}
    return {
        "event_onset": _summary(onset.results_overall_metrics()),
        "event_onset_offset": _summary(both.results_overall_metrics()),
        "segment": _summary(segment.results_overall_metrics()),
        "files": files,
    }


def frame_scores(labels: Sequence[np.ndarray], probabilities: Sequence[np.ndarray]) -> dict:
    """Threshold-free frame-level scores: average precision and ROC AUC (None when a
    class is absent)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.concatenate([np.asarray(a).ravel() for a in labels]) if labels else np.zeros(0)
    p = np.concatenate([np.asarray(a).ravel() for a in probabilities]) if probabilities else np.zeros(0)
    if len(y) == 0 or y.min() == y.max():
        return {"average_precision": None, "roc_auc": None, "frames": int(len(y))}
    return {
        "average_precision": float(average_precision_score(y, p)),
        "roc_auc": float(roc_auc_score(y, p)),
        "frames": int(len(y)),
    }


@dataclass(frozen=True)
class TuneResult:
    post: PostConfig
    scores: dict
    baseline: dict  # threshold 0.5, no filtering


def _onset_scores(reference, estimated, label) -> tuple[float, float]:
    import sed_eval

    metric = sed_eval.sound_event.EventBasedMetrics(event_label_list=[label], t_collar=COLLAR, evaluate_onset=True, evaluate_offset=False)
    for filename, events in reference.items():
        metric.evaluate(reference_event_list=_dicts(events), estimated_event_list=_dicts(estimated.get(filename, [])))
    results = metric.results_overall_metrics()
    f = results["f_measure"]["f_measure"]
    return (0.0 if math.isnan(f) else f), results["error_rate"]["error_rate"]


def tune(
    probabilities: Mapping[str, np.ndarray],
    reference: Mapping[str, Sequence[Event]],
    *,
    label: str,
    frame_seconds: float,
    durations: Mapping[str, float],
    grid: Mapping[str, Sequence[float]] = GRID,
) -> TuneResult:
    """Search the post-processing for the best event-based F-score (onset collar 0.5 s)
    on labelled files; ties go to the lower error rate, then to the simpler setting.
    """
    def events_for(post: PostConfig) -> dict[str, list[Event]]:
        return {
            name: to_events(p, post=post, frame_seconds=frame_seconds, duration=durations[name], filename=name, label=label)
            for name, p in probabilities.items()
        }

    best_key, best_post = None, None
    for median in grid["median_seconds"]:
        # smooth once per median length; to_events below then needs no further filtering
        frames = median_frames(median, frame_seconds=frame_seconds)
        smoothed = {name: smooth(np.asarray(p, np.float32), frames=frames) for name, p in probabilities.items()}
        for threshold, min_duration, gap in itertools.product(grid["threshold"], grid["min_duration"], grid["merge_gap"]):
            post = PostConfig(threshold=threshold, median_seconds=0.0, min_duration=min_duration, merge_gap=gap)
            estimated = {
                name: to_events(p, post=post, frame_seconds=frame_seconds, duration=durations[name], filename=name, label=label)
                for name, p in smoothed.items()
            }
            f, er = _onset_scores(reference, estimated, label)
            key = (round(f, 9), -round(er, 9), -median, -min_duration, -gap)
            if best_key is None or key > best_key:
                best_key = key
                best_post = PostConfig(threshold=threshold, median_seconds=median, min_duration=min_duration, merge_gap=gap)
    baseline = event_scores(reference, events_for(PostConfig()), label=label, durations=durations)
    scores = event_scores(reference, events_for(best_post), label=label, durations=durations)
    return TuneResult(best_post, scores, baseline)
