"""Scores in the numbers DCASE papers report, computed by sed_eval, and the
post-processing search that picks detect's defaults.

Metric math stays in sed_eval and scikit-learn; this module only arranges events
and probabilities for them.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from soundnet.config import PostConfig
from soundnet.events import Event
from soundnet.postprocess import median_frames, smooth, to_events

log = logging.getLogger(__name__)

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

    metric = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=[label], t_collar=COLLAR, evaluate_onset=True, evaluate_offset=False
    )
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
    on labelled files; ties go to the lower error rate, then to the threshold nearest
    0.5, then to more smoothing (longer median filter and minimum duration: safer on
    unseen audio), then to the smaller gap.
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
            key = (round(f, 9), -round(er, 9), -abs(threshold - 0.5), median, min_duration, -gap)
            if best_key is None or key > best_key:
                best_key = key
                best_post = PostConfig(threshold=threshold, median_seconds=median, min_duration=min_duration, merge_gap=gap)
    baseline = event_scores(reference, events_for(PostConfig()), label=label, durations=durations)
    scores = event_scores(reference, events_for(best_post), label=label, durations=durations)
    return TuneResult(best_post, scores, baseline)


@dataclass
class Evaluation:
    """Scores of a detector (or of a ready event list) on labelled audio."""

    target: str
    scores: dict
    frame: dict | None
    reference: dict[str, list[Event]]
    estimated: dict[str, list[Event]]
    failures: list[tuple[str, str]]

    def to_json(self) -> dict:
        return {
            "target": self.target,
            **{k: v for k, v in self.scores.items() if k != "files"},
            "frame": self.frame,
            "files": self.scores["files"],
            "failures": [{"file": f, "error": e} for f, e in self.failures],
        }


def reference_events(paths: Sequence, annotations, *, target: str | None) -> tuple[str, dict, dict]:
    """Audio files, their display names and reference events from an annotation table.

    Returns ``(target, {name: path}, {name: [Event]})``; only annotated files are kept.
    """
    from pathlib import Path

    from soundnet.annotations import choose_target
    from soundnet.audio import find_audio
    from soundnet.dataset import collect_annotations
    from soundnet.detect import display_name

    roots = [Path(p) for p in paths]
    audio = find_audio(roots)
    matched = collect_annotations(audio, roots, annotations)
    rows = [row for rs in matched.values() for row in rs]
    target = choose_target(rows, target)
    names = {display_name(p, roots): p for p in audio if p in matched}
    by_path = {p: n for n, p in names.items()}
    reference = {
        by_path[p]: sorted(Event(by_path[p], r.event.onset, r.event.offset, r.event.label) for r in rs if r.event is not None)
        for p, rs in matched.items()
    }
    return target, names, reference


def render_report(evaluation: Evaluation) -> str:
    """A readable table of the scores."""
    lines = [f"target: {evaluation.target}   files: {len(evaluation.reference)}", ""]
    lines.append(f"{'metric':<34}{'F1':>8}{'precision':>11}{'recall':>8}{'ER':>8}")
    titles = {
        "event_onset": "event-based, onset collar 0.5 s",
        "event_onset_offset": "event-based, onset + offset",
        "segment": "segment-based, 1 s",
    }

    def cell(value):
        return f"{value:.3f}" if value is not None else "n/a"

    for key, title in titles.items():
        s = evaluation.scores[key]
        lines.append(
            f"{title:<34}{cell(s['f_measure']):>8}{cell(s['precision']):>11}{cell(s['recall']):>8}{cell(s['error_rate']):>8}"
        )
    if evaluation.frame is not None:
        lines.append("")
        lines.append(
            f"frame-level average precision {cell(evaluation.frame['average_precision'])}, "
            f"ROC AUC {cell(evaluation.frame['roc_auc'])} over {evaluation.frame['frames']} frames"
        )
    lines.append("")
    lines.append(f"{'file':<40}{'reference':>10}{'detected':>10}{'matched':>9}")
    for name, counts in evaluation.scores["files"].items():
        lines.append(f"{name:<40}{counts['reference']:>10}{counts['estimated']:>10}{counts['true_positives']:>9}")
    return "\n".join(lines) + "\n"


def evaluate(
    paths: Sequence,
    *,
    annotations,
    model=None,
    estimated=None,
    target: str | None = None,
    post: PostConfig | None = None,
    on_detection=None,
    fail_fast: bool = False,
) -> Evaluation:
    """Score a detector (``model``, a run folder; None for the bundled one), or a ready
    event list (``estimated``, a DCASE table), on the annotated audio in ``paths``.

    ``on_detection(name, detection, reference_events)`` is called for each file the
    detector scored (the command line uses it to draw plots).
    """
    from pathlib import Path

    from soundnet.annotations import frame_labels, match_files, read_event_table
    from soundnet.detect import Detector
    from soundnet.errors import SoundnetError

    failures: list[tuple[str, str]] = []
    if estimated is not None:
        target, names, reference = reference_events(paths, annotations, target=target)
        rows = match_files(read_event_table(Path(estimated)), list(names.values()), [Path(p) for p in paths])
        by_path = {p: n for n, p in names.items()}
        found = {
            by_path[p]: [Event(by_path[p], r.event.onset, r.event.offset, r.event.label) for r in rs if r.event]
            for p, rs in rows.items()
            if p in by_path
        }
        frame = None
    else:
        detector = Detector(model)
        target, names, reference = reference_events(paths, annotations, target=target or detector.card.target)
        post = post or detector.card.postprocessing
        found, labels, probs = {}, [], []
        for name, path in names.items():
            try:
                detection = detector.detect_file(path, post=post, name=name)
            except SoundnetError as error:
                failures.append((name, str(error)))
                log.error("%s", error)
                if fail_fast:
                    break
                continue
            found[name] = detection.events
            labels.append(
                frame_labels(
                    [e for e in reference[name] if e.label == target],
                    len(detection.probabilities),
                    frame_seconds=detection.frame_seconds,
                )
            )
            probs.append(detection.probabilities)
            if on_detection is not None:
                on_detection(name, detection, reference[name])
        reference = {name: events for name, events in reference.items() if name in found}
        frame = frame_scores(labels, probs)
    from soundnet.audio import audio_duration

    durations = {name: audio_duration(names[name]) for name in reference}
    scores = event_scores(reference, found, label=target, durations=durations)
    return Evaluation(target, scores, frame, reference, found, failures)
