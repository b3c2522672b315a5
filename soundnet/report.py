"""The readable table that ``soundnet evaluate`` prints."""

from __future__ import annotations

from soundnet.evaluation import Evaluation

_TITLES = {
    "event_onset": "event-based, onset collar 0.5 s",
    "event_onset_offset": "event-based, onset + offset",
    "segment": "segment-based, 1 s",
}


def _cell(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "n/a"


def _alarms_line(evaluation: Evaluation) -> str:
    alarms = evaluation.scores.alarms
    hours = "" if alarms.hours is None else f" in {alarms.hours:.3g} h"
    rate = "n/a" if alarms.false_alarms_per_hour is None else f"{alarms.false_alarms_per_hour:.2f}"
    return (
        f"false alarms per hour {rate} ({alarms.false_alarms}{hours}), miss rate {_cell(alarms.miss_rate)} "
        f"({alarms.misses} of {alarms.reference} reference events missed); onset collar 0.5 s"
    )


def _bootstrap_lines(evaluation: Evaluation) -> str:
    b = evaluation.bootstrap
    lines = [
        f"{b.level:.0%} bootstrap intervals ({b.resamples} resamples of the files, seed {b.seed}):",
        f"  {'figure':<36}{'value':>8}{'low':>8}{'high':>8}",
    ]
    for name, value in evaluation.figures().items():
        interval = b.intervals.get(name)
        low, high = (None, None) if interval is None else interval
        lines.append(f"  {name:<36}{_cell(value):>8}{_cell(low):>8}{_cell(high):>8}")
    return "\n".join(lines)


def render_report(evaluation: Evaluation) -> str:
    """Scores, false alarms per hour and miss rate, frame-level figures, PSDS, the
    calibration error of event confidence, bootstrap intervals and per-file counts as
    aligned text."""
    lines = [f"target: {evaluation.target}   files: {len(evaluation.reference)}", ""]
    lines.append(f"{'metric':<34}{'F1':>8}{'precision':>11}{'recall':>8}{'ER':>8}")
    for key, title in _TITLES.items():
        s = getattr(evaluation.scores, key)
        lines.append(f"{title:<34}{_cell(s.f_measure):>8}{_cell(s.precision):>11}{_cell(s.recall):>8}{_cell(s.error_rate):>8}")
    lines.append("")
    lines.append(_alarms_line(evaluation))
    if evaluation.frame is not None:
        frame = evaluation.frame
        lines.append("")
        lines.append(
            f"frame-level average precision {_cell(frame.average_precision)}, "
            f"ROC AUC {_cell(frame.roc_auc)} over {frame.frames} frames"
        )
    if evaluation.psds is not None:
        lines.append(
            "PSDS (sed_scores_eval, per-frame probabilities): "
            + ", ".join(f"{name.upper()} {p.value:.3f}" for name, p in evaluation.psds.items())
            + " (scenario 1: dtc = gtc = 0.7; scenario 2: dtc = gtc = 0.1; up to 100 false positives per hour)"
        )
    elif evaluation.frame is not None:  # probabilities, but no reference event to detect
        lines.append("PSDS n/a (no reference event of the target: no true positive rate)")
    confidence = evaluation.confidence
    if confidence is not None:
        shown = "raw" if confidence.method is None else f"calibrated ({confidence.method})"
        lines.append(
            f"expected calibration error of event confidence: {_cell(confidence.ece)} {shown}"
            + ("" if confidence.method is None else f", {_cell(confidence.ece_raw)} raw")
            + f" over {confidence.events} events ({confidence.true_events} true)"
        )
    if evaluation.bootstrap is not None:
        lines.append("")
        lines.append(_bootstrap_lines(evaluation))
    lines.append("")
    lines.append(f"{'file':<40}{'reference':>10}{'detected':>10}{'matched':>9}{'false alarms':>14}")
    for name, c in evaluation.scores.files.items():
        lines.append(f"{name:<40}{c.reference:>10}{c.estimated:>10}{c.true_positives:>9}{c.false_alarms:>14}")
    return "\n".join(lines) + "\n"
