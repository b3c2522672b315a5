"""Choosing a detector's post-processing: the search over thresholds, median filters,
minimum durations and gaps that picks detect's defaults, and :func:`tune`, which runs
it for a trained run on labelled audio and writes the result to the run's card."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from soundnet.calibration import events_at, fit_event_calibration
from soundnet.config import PostConfig, to_dict
from soundnet.errors import SoundnetError, UsageError
from soundnet.events import Event
from soundnet.postprocess import median_frames, smooth
from soundnet.run import ModelCard
from soundnet.scoring import Alarms, EventScores, event_scores, hours_of, onset_figures
from soundnet.verification import DESCRIPTORS, Verifier

# The post-processing search: 9 thresholds x 5 median lengths x 4 minimum durations x 4 gaps,
# and "off_threshold" values (hysteresis; None: none; one at or above a threshold is none
# there, so 14 threshold/off pairs); a grid without that key searches no hysteresis.
# Hysteresis is searched because on the real-audio benchmark it lifted test event F1 on both
# targets (bird 0.299 to 0.393, cattle 0.054 to 0.127; BENCHMARKS.md); searched with off
# levels 0.2 and 0.4 there, both chose 0.4, so the default keeps that one (the search costs
# 1.6 times the grid without hysteresis, not 2.3).
GRID = {
    "threshold": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "median_seconds": (0.0, 0.05, 0.11, 0.21, 0.31),
    "min_duration": (0.0, 0.05, 0.1, 0.2),
    "merge_gap": (0.0, 0.1, 0.2, 0.5),
    "off_threshold": (None, 0.4),
}

CURVE_THRESHOLDS = tuple(round(0.01 * i, 2) for i in range(1, 100))
"""The thresholds of the operating curve: 0.01, 0.02, ... 0.99."""

OUT_OF_FOLD_NOTE = "out-of-fold predictions of the run's cross-validation (out_of_fold.npz)"

BEST_F1 = "best event F1"
BEST_FOLD_F1 = "best event F1 averaged over the folds"
FEWEST_MISSES = "fewest misses within the false alarm limit"


@dataclass(frozen=True)
class TuneResult:
    """The post-processing found, its scores, the scores of the plain rule (threshold
    0.5, no filtering) on the same files, and what chose it: ``criterion`` (BEST_F1,
    BEST_FOLD_F1 or FEWEST_MISSES), the false alarm limit (None unless FEWEST_MISSES)
    and, where the files came in folds, each fold's event F1 at the point chosen."""

    post: PostConfig
    scores: EventScores
    baseline: EventScores
    criterion: str = BEST_F1
    max_false_alarms_per_hour: float | None = None
    fold_f1: tuple[float, ...] | None = None

    def criterion_json(self) -> dict:
        """What chose the post-processing, as recorded in a card's validation figures."""
        folds = {} if self.fold_f1 is None else {"fold_event_f1": list(self.fold_f1)}
        return {"criterion": self.criterion, "max_false_alarms_per_hour": self.max_false_alarms_per_hour, **folds}


class CurvePoint(NamedTuple):
    """One point of an operating curve: a threshold, and the false alarms per hour and
    miss rate it gives (None where undefined: no audio length, no reference event)."""

    threshold: float
    false_alarms_per_hour: float | None
    miss_rate: float | None


#: keys of a card's validation figures that only ``tune`` writes
_TUNE_ONLY = ("tuned_on", "tuned_on_reviewed", "training_validation")


def training_validation(validation: Mapping) -> dict:
    """The figures training measured on its own held-out files, from a card's validation
    record: the record itself as training wrote it, or what an earlier ``tune`` on other
    audio set aside in its ``training_validation`` (or, for a card tuned on other audio
    before that record existed, its ``split`` and ``frame`` figures alone)."""
    if "training_validation" in validation:
        return dict(validation["training_validation"])
    tuned_on = validation.get("tuned_on") or []
    if tuned_on and not str(tuned_on[0]).startswith(OUT_OF_FOLD_NOTE):
        # tuned on other audio by a soundnet that kept no training_validation: its event figures are that
        # audio's, so only training's split and frame figures are left of what training measured
        return {k: validation[k] for k in ("split", "frame") if k in validation}
    return {k: v for k, v in validation.items() if k not in _TUNE_ONLY}


def tuned_validation(
    validation: Mapping,
    result: TuneResult,
    *,
    tuned_on: list[str],
    calibration: str,
    out_of_fold: bool = False,
    extra: Mapping | None = None,
) -> dict:
    """A card's validation record after ``result`` was tuned on the files ``tuned_on``:
    their figures (criterion, scores, per-file counts, the plain rule's F-score, what the
    calibration fitted; ``extra`` beside them), and what training measured on its own
    held-out files (:func:`training_validation`) set aside whole as ``training_validation``.
    ``out_of_fold``: the files are those held-out files again (a cross-validated run's
    out-of-fold predictions), so training's ``split`` and ``frame`` figures stay instead."""
    figures = {
        "tuned_on": tuned_on,
        **(extra or {}),
        **result.criterion_json(),
        **result.scores.to_json(),
        "untuned_event_onset": result.baseline.event_onset.to_json(),
        "calibration": calibration,
    }
    held_out = training_validation(validation)
    if out_of_fold:
        return {**{k: held_out[k] for k in ("split", "frame") if k in held_out}, **figures}
    return {**figures, "training_validation": held_out}


def check_false_alarm_limit(value: float | None) -> None:
    """Refuse a false alarm limit that is not a number >= 0 (NaN included)."""
    if value is not None and not value >= 0:
        raise UsageError(f"max_false_alarms_per_hour must be a number >= 0. Received: max_false_alarms_per_hour={value}")


def _smoothed(probabilities: Mapping[str, np.ndarray], median_seconds: float, frame_seconds: float) -> dict[str, np.ndarray]:
    """Each file's probabilities through one median filter, so that ``to_events`` with
    ``median_seconds=0`` then needs no further filtering."""
    frames = median_frames(median_seconds, frame_seconds=frame_seconds)
    return {name: smooth(np.asarray(p, np.float32), frames=frames) for name, p in probabilities.items()}


def _rate(alarms: Alarms) -> float:
    """False alarms per hour for ranking: none counts as 0 per hour, even without a length."""
    rate = alarms.false_alarms_per_hour
    return rate if rate is not None else (0.0 if alarms.false_alarms == 0 else math.inf)


class FalseAlarmLimitError(SoundnetError):
    """No post-processing of the grid meets a false-alarm limit; ``fewest`` (per hour) and
    its ``miss_rate`` are the closest the grid comes."""

    def __init__(self, limit: float, fewest: float, miss_rate: float):
        super().__init__(
            f"no post-processing of the grid keeps false alarms at or below {limit:g} per hour "
            f"on these files: the fewest is {fewest:.2f} per hour (miss rate {miss_rate:.3f})"
        )
        self.limit, self.fewest, self.miss_rate = limit, fewest, miss_rate


def reference_probabilities(detector, references) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-frame probabilities and durations of each referenced file, by reference name
    (``detector``: a soundnet.detection.Detector; ``references``: soundnet.evaluation.References)."""
    probabilities, durations = {}, {}
    for name, path in references.paths.items():
        probabilities[name], durations[name] = detector.probabilities(path)
    return probabilities, durations


def _off_below(off: float | None, threshold: float) -> float | None:
    """``off`` as an off threshold for ``threshold``: at or above it, no hysteresis (None)."""
    return off if off is not None and off < threshold else None


def grid_points(grid: Mapping[str, Sequence[float]]) -> Iterable[tuple[float, float | None, float, float]]:
    """(threshold, off_threshold, min_duration, merge_gap) of a grid. An off threshold at
    or above a threshold is no hysteresis there: it counts as None (searched once)."""
    for threshold in grid["threshold"]:
        offs = dict.fromkeys(_off_below(o, threshold) for o in grid.get("off_threshold", (None,)))
        for off, min_duration, gap in itertools.product(offs, grid["min_duration"], grid["merge_gap"]):
            yield threshold, off, min_duration, gap


def search_postprocessing(
    probabilities: Mapping[str, np.ndarray],
    reference: Mapping[str, Sequence[Event]],
    *,
    label: str,
    frame_seconds: float,
    durations: Mapping[str, float],
    grid: Mapping[str, Sequence[float]] = GRID,
    max_false_alarms_per_hour: float | None = None,
    folds: Mapping[str, int] | None = None,
) -> TuneResult:
    """The post-processing with the best event-based F-score (onset collar 0.5 s) on
    labelled files; ties go to the lower error rate, then to the threshold nearest
    0.5, then to more smoothing (longer median filter and minimum duration: safer on
    unseen audio), then to the smaller gap, then to less hysteresis.

    With ``folds`` (the files of a cross-validation, each in the fold that held its
    group out), the best F-score averaged over the folds that hold reference events,
    then the F-score of all files pooled, then as above: a point must hold on each set
    of groups the training never heard, not only on the pooled whole, where the folds
    it suits best can carry one on which it finds nothing.

    With ``max_false_alarms_per_hour``, the point of the grid with the fewest misses
    (lowest miss rate) among those with at most that many false alarms per hour;
    ties go to fewer false alarms (at equal misses, the same as a higher F-score),
    then as above.

    Parameters
    ----------
    probabilities : mapping name -> np.ndarray [shape=(frames,)]
        Each file's per-frame probabilities.
    reference : mapping name -> events
        Each file's reference events (the same names).
    label : str
        The target label.
    frame_seconds : float
        The frame hop in seconds.
    durations : mapping name -> seconds
        File lengths.
    grid : mapping
        The values searched for each PostConfig field; ``off_threshold`` is optional
        (None: no hysteresis; a value at or above a threshold is none there).
    max_false_alarms_per_hour : float >= 0 or None
        The false alarm limit; None chooses by F-score.
    folds : mapping name -> fold, optional
        Each file's fold (every file of ``reference``); used by the F-score criterion.
        Fewer than two folds with reference events: the pooled F-score alone.

    Raises
    ------
    SoundnetError
        No point of the grid meets ``max_false_alarms_per_hour`` (the message names
        the fewest false alarms per hour reachable, and that point's miss rate).
    """
    check_false_alarm_limit(max_false_alarms_per_hour)
    by_fold = _by_fold(reference, folds, label=label) if max_false_alarms_per_hour is None else []
    points = _grid_figures(
        probabilities, reference, label=label, frame_seconds=frame_seconds, durations=durations, grid=grid, by_fold=by_fold
    )
    best_post, best_folds = _best_point(points, max_false_alarms_per_hour)
    return _tune_result(
        probabilities, reference, best_post, label=label, frame_seconds=frame_seconds, durations=durations,
        max_false_alarms_per_hour=max_false_alarms_per_hour, fold_f1=best_folds,
    )  # fmt: skip


class _Point(NamedTuple):
    post: PostConfig
    key: tuple  # the F-score criterion's ranking key
    rate: float  # false alarms per hour (for ranking)
    miss_rate: float
    fold_f1: tuple[float, ...] | None


def _grid_figures(
    probabilities: Mapping[str, np.ndarray],
    reference: Mapping[str, Sequence[Event]],
    *,
    label: str,
    frame_seconds: float,
    durations: Mapping[str, float],
    grid: Mapping[str, Sequence[float]],
    by_fold: Sequence[Mapping[str, Sequence[Event]]] = (),
) -> list[_Point]:
    """Every point of the grid with its figures on these files (see :func:`search_postprocessing`)."""
    hours = hours_of(durations, reference)
    points = []
    for median in grid["median_seconds"]:
        smoothed = _smoothed(probabilities, median, frame_seconds)
        for threshold, off, min_duration, gap in grid_points(grid):
            post = PostConfig(threshold=threshold, min_duration=min_duration, merge_gap=gap, off_threshold=off)
            events = events_at(smoothed, post=post, label=label, frame_seconds=frame_seconds, durations=durations)
            f, er, alarms = onset_figures(reference, events, label=label, hours=hours)
            key = (round(f, 9), -round(er, 9), -abs(threshold - 0.5), median, min_duration, -gap, -(threshold - post.off))
            fold_f1 = tuple(onset_figures(part, events, label=label)[0] for part in by_fold)
            if fold_f1:
                key = (round(sum(fold_f1) / len(fold_f1), 9), *key)
            post = dataclasses.replace(post, median_seconds=median)
            points.append(_Point(post, key, _rate(alarms), alarms.miss_rate or 0.0, fold_f1 or None))
    return points


def _best_point(points: Sequence[_Point], limit: float | None) -> tuple[PostConfig, tuple[float, ...] | None]:
    """The best point: by the F-score key, or with ``limit`` the fewest misses within it
    (then fewer false alarms, then the key). Raises FalseAlarmLimitError if none meets it."""
    if limit is None:
        best = max(points, key=lambda point: point.key)
        return best.post, best.fold_f1
    within = [point for point in points if round(point.rate, 9) <= limit]
    if not within:
        raise FalseAlarmLimitError(limit, *min((point.rate, point.miss_rate) for point in points))
    best = max(within, key=lambda point: (-round(point.miss_rate, 9), -round(point.rate, 9), *point.key))
    return best.post, best.fold_f1


def _tune_result(
    probabilities: Mapping[str, np.ndarray],
    reference: Mapping[str, Sequence[Event]],
    best_post: PostConfig,
    *,
    label: str,
    frame_seconds: float,
    durations: Mapping[str, float],
    max_false_alarms_per_hour: float | None,
    fold_f1: tuple[float, ...] | None = None,
    estimated: Mapping[str, Sequence[Event]] | None = None,
) -> TuneResult:
    """The TuneResult of ``best_post``: its scores (those of ``estimated`` when given: the
    events a verifier kept of its own) beside the plain rule's."""

    def scored(post: PostConfig) -> EventScores:
        events = events_at(probabilities, post=post, label=label, frame_seconds=frame_seconds, durations=durations)
        return event_scores(reference, events, label=label, durations=durations)

    baseline = scored(PostConfig())
    if estimated is None:
        scores = scored(best_post)
    else:
        scores = event_scores(reference, estimated, label=label, durations=durations)
    if max_false_alarms_per_hour is None:
        return TuneResult(best_post, scores, baseline, BEST_FOLD_F1 if fold_f1 else BEST_F1, fold_f1=fold_f1)
    return TuneResult(best_post, scores, baseline, FEWEST_MISSES, max_false_alarms_per_hour)


def _by_fold(
    reference: Mapping[str, Sequence[Event]], folds: Mapping[str, int] | None, *, label: str
) -> list[dict[str, Sequence[Event]]]:
    """``reference`` split by fold, in fold order, the folds without a reference event of
    ``label`` left out; empty when fewer than two folds remain (nothing to average)."""
    if folds is None:
        return []
    missing = set(reference) - set(folds)
    if missing:
        raise ValueError(f"folds: no fold for {sorted(missing)[:3]}")
    parts: dict[int, dict[str, Sequence[Event]]] = {}
    for name in reference:
        parts.setdefault(folds[name], {})[name] = reference[name]
    held = [part for _, part in sorted(parts.items()) if any(e.label == label for n in part for e in part[n])]
    return held if len(held) >= 2 else []


def operating_curve(
    probabilities: Mapping[str, np.ndarray],
    reference: Mapping[str, Sequence[Event]],
    *,
    label: str,
    post: PostConfig,
    frame_seconds: float,
    durations: Mapping[str, float],
    thresholds: Iterable[float] = CURVE_THRESHOLDS,
) -> list[CurvePoint]:
    """False alarms per hour and miss rate (event-based, onset collar 0.5 s) at each
    threshold, the rest of ``post`` (median filter, minimum duration, gap, off threshold
    where it lies below the threshold) fixed: a DET-like curve of the operating points a
    detector offers.

    Parameters
    ----------
    probabilities : mapping name -> np.ndarray [shape=(frames,)]
        Each file's per-frame probabilities.
    reference : mapping name -> events
        Each file's reference events (the same names; a file without events counts:
        its false alarms and its length).
    label : str
        The target label.
    post : PostConfig
        The post-processing whose threshold varies.
    frame_seconds : float > 0
        The frame hop in seconds.
    durations : mapping name -> seconds
        File lengths.
    thresholds : iterable of float in [0, 1]
        The thresholds (default :data:`CURVE_THRESHOLDS`).

    Returns
    -------
    list of CurvePoint
        One ``(threshold, false_alarms_per_hour, miss_rate)`` per threshold, by
        increasing threshold.
    """
    hours = hours_of(durations, reference)
    smoothed = _smoothed(probabilities, post.median_seconds, frame_seconds)
    curve = []
    for threshold in sorted(set(thresholds)):
        off = _off_below(post.off_threshold, threshold)
        at = dataclasses.replace(post, threshold=threshold, median_seconds=0.0, off_threshold=off)
        events = events_at(smoothed, post=at, label=label, frame_seconds=frame_seconds, durations=durations)
        _, _, alarms = onset_figures(reference, events, label=label, hours=hours)
        curve.append(CurvePoint(float(threshold), alarms.false_alarms_per_hour, alarms.miss_rate))
    return curve


@dataclass(frozen=True)
class Tuning:
    """What :func:`tune` did to a run: the new post-processing, its scores on the
    tuning files (``scores.alarms``: false alarms per hour, miss rate), the plain
    rule's scores there, the card as written, and what chose the post-processing
    (``criterion``, ``max_false_alarms_per_hour``, as in :class:`TuneResult`)."""

    run: Path
    post: PostConfig
    scores: EventScores
    baseline: EventScores
    card: ModelCard = dataclasses.field(repr=False)
    files: list[Path] = dataclasses.field(repr=False)
    criterion: str = BEST_F1
    max_false_alarms_per_hour: float | None = None


VERIFY_STAGE_FACTORS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
"""With a verifier and a false alarm limit X, the first stages tried: the points with the
fewest misses within these multiples of X false alarms per hour (the verifier then
removes what it can of their false alarms)."""


class Verified(NamedTuple):
    """A first stage (its post-processing search result) and the verifier fitted on its events."""

    result: TuneResult
    verifier: Verifier
    events: dict[str, list[Event]]  # each file's events that the verifier keeps (raw confidence)


def search_verified(
    detector,
    paths: Mapping[str, Path],
    probabilities: Mapping[str, np.ndarray],
    reference: Mapping[str, Sequence[Event]],
    *,
    label: str,
    durations: Mapping[str, float],
    grid: Mapping[str, Sequence[float]] = GRID,
    max_false_alarms_per_hour: float | None = None,
    seed: int = 0,
    folds: Mapping[str, int] | None = None,
) -> Verified:
    """A first stage of post-processing and a verifier of its events
    (:mod:`soundnet.verification`), chosen together on labelled files.

    Without a limit the first stage is the best-F1 point (with ``folds``, a
    cross-validation's, the best F1 averaged over the folds, as
    :func:`search_postprocessing` chooses) and the verifier's threshold the best F1 of
    its out-of-fold scores. With ``max_false_alarms_per_hour`` X, each
    first stage of :data:`VERIFY_STAGE_FACTORS` (the fewest misses within k X) gets a
    verifier whose threshold has the fewest out-of-fold misses within X; the pair that
    finds the most reference events out of fold is kept (ties: fewer false alarms, then
    the smaller k). Every figure that chooses is out of fold (grouped by file), so the
    choice does not rest on events the regression has seen.

    Raises
    ------
    SoundnetError
        Too few true or false events to fit a verifier on any first stage.
    """
    from soundnet.calibration import matched_events
    from soundnet.verification import fit_verifier, verified

    frame_seconds = detector.card.features.frame_seconds
    search = dict(label=label, frame_seconds=frame_seconds, durations=durations)
    by_fold = _by_fold(reference, folds, label=label) if max_false_alarms_per_hour is None else []
    points = _grid_figures(probabilities, reference, grid=grid, by_fold=by_fold, **search)
    hours = hours_of(durations, reference)
    references = sum(1 for events in reference.values() for e in events if e.label == label)
    limits = [None] if max_false_alarms_per_hour is None else [k * max_false_alarms_per_hour for k in VERIFY_STAGE_FACTORS]
    cache: dict[tuple[str, float, float], np.ndarray] = {}
    best, tried, failures = None, set(), []
    for limit in limits:
        try:
            post, fold_f1 = _best_point(points, limit)
        except FalseAlarmLimitError:
            continue
        if post in tried:
            continue
        tried.add(post)
        found = events_at(probabilities, post=post, label=label, frame_seconds=frame_seconds, durations=durations)
        described, truth, files = {}, [], []
        for name, events in found.items():
            missing = [e for e in events if (name, e.onset, e.offset) not in cache]
            if missing:
                rows = detector.descriptors(paths[name], probabilities[name], missing)
                cache.update({(name, e.onset, e.offset): row for e, row in zip(missing, rows, strict=True)})
            described[name] = np.array([cache[(name, e.onset, e.offset)] for e in events]).reshape(len(events), len(DESCRIPTORS))
            truth += matched_events(reference.get(name, []), events, label=label).tolist()
            files += [name] * len(events)
        try:
            verifier = fit_verifier(
                np.concatenate(list(described.values())), np.array(truth, bool), files, references=references, hours=hours,
                max_false_alarms_per_hour=max_false_alarms_per_hour, seed=seed,
            )  # fmt: skip
        except SoundnetError as error:
            failures.append(f"first stage {post}: {error}")
            continue
        oof = verifier.fitted["out_of_fold"]
        key = (oof["found"] if limit is not None else oof["event_f1"], -oof["false_alarms"])
        if best is None or key > best[0]:
            verifier.fitted.update({"first_stage": to_dict(post), "first_stage_limit": limit})
            best = (key, post, fold_f1, verifier, found, described)
    if best is None:
        raise SoundnetError("no verifier could be fitted: " + ("; ".join(failures) or "no first stage meets the limit"))
    _, post, fold_f1, verifier, found, described = best
    kept = {name: verified(events, described[name], verifier) for name, events in found.items()}
    stage = _tune_result(
        probabilities, reference, post, max_false_alarms_per_hour=max_false_alarms_per_hour, fold_f1=fold_f1,
        estimated=kept, **search,
    )  # fmt: skip
    return Verified(stage, verifier, kept)


def tune(
    run: Path,
    inputs: Path | str | Iterable[Path | str] | None = None,
    *,
    annotations: Path | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
    max_false_alarms_per_hour: float | None = None,
    label_column: str | None = None,
    reviewed: Path | None = None,
    audio: Path | None = None,
    context: float = 1.0,
    verify: bool = False,
) -> Tuning:
    """Search ``run``'s post-processing on labelled audio and write it to the run's card.

    Parameters
    ----------
    run : Path
        A run folder (written by :func:`soundnet.training`).
    inputs : path or iterable of paths
        Audio files and folders. None (or empty) with no reviewed table: a
        cross-validated run's own out-of-fold predictions (``out_of_fold.npz``, what
        training tuned on), so another criterion or false alarm limit needs no audio.
    annotations : Path or None
        A DCASE or Raven table of reference events; None reads the label files beside
        the audio.
    grid : mapping or None
        The values searched (default :data:`GRID`).
    max_false_alarms_per_hour : float >= 0 or None
        Choose the point with the fewest misses among those with at most this many
        false alarms per hour on these files (see :func:`search_postprocessing`);
        None chooses the best event F-score.
    label_column : str or None
        A Raven table's label column (default: ``Annotation``, ``Species``, ``Label``).
    reviewed, audio : Path or None
        A reviewed table (``soundnet review``) and the folder of its recordings: the
        clips around its accepted and rejected detections (each span and ``context``
        seconds either side) join the tuning files, the accepted spans as their
        reference events (:func:`soundnet.review_training.reviewed_clips`). Their
        false alarms per hour count the clips' time only. ``inputs`` may then be empty.
    verify : bool
        Also fit a verifier of events (:mod:`soundnet.verification`) with its first
        stage of post-processing (:func:`search_verified`): on annotated audio, or a
        cross-validated run's out-of-fold files where extract read them (the verifier
        reads each event's sound; the first stage is then chosen on the pooled files),
        no reviewed table. Without it, a verifier
        the card held is dropped (it was fitted for another post-processing).

    Returns
    -------
    Tuning
        The card now in ``run`` holds the new post-processing and a calibration of event
        confidence fitted on these files for it (none when they hold too few true or
        false events: raw confidences, and ``validation.calibration`` says why); its validation figures
        become the scores on these files (``tuned_on`` lists them, ``files`` gives each
        one's counts, ``criterion`` and ``max_false_alarms_per_hour`` say what chose it).
        Tuned on other audio or a reviewed table, the figures training measured on its
        held-out files (their ``split``, ``frame`` scores and per-file counts, at the
        post-processing training chose) move to ``validation.training_validation``;
        re-tuned on the run's out-of-fold predictions, they are those same files, and
        ``split`` and ``frame`` stay.

    Raises
    ------
    SoundnetError
        No point meets ``max_false_alarms_per_hour``; the card is left as it was.
    """
    check_false_alarm_limit(max_false_alarms_per_hour)
    from soundnet.audio import as_paths
    from soundnet.detection import Detector
    from soundnet.evaluation import read_references
    from soundnet.run import write_card

    if (reviewed is None) != (audio is None):
        raise UsageError("a reviewed table needs the folder of its audio: give both reviewed and audio")
    if verify and reviewed is not None:
        raise UsageError("a verifier is fitted on annotated audio only (it reads each event's sound): no reviewed table")
    detector = Detector(run)
    card = detector.card
    inputs = () if inputs is None else inputs
    oof = None  # a cross-validated run's out-of-fold predictions, when tuned on them
    if not as_paths(inputs) and reviewed is None:
        from soundnet.run import read_out_of_fold

        oof = read_out_of_fold(run)
        if oof is None:
            raise UsageError(
                f"nothing to tune on: give annotated audio or a reviewed table ({run} holds no out-of-fold "
                "predictions: only a cross-validated run does, trained with --folds)"
            )
        probabilities, durations, events, target = oof.probabilities, oof.durations, oof.events, oof.target
        tuned_on = [f"{OUT_OF_FOLD_NOTE}: {len(probabilities)} files"]
    elif as_paths(inputs):
        references = read_references(inputs, annotations, target=card.target, label_column=label_column)
        probabilities, durations = reference_probabilities(detector, references)
        events, target, tuned_on = references.events, references.target, [str(p) for p in references.paths.values()]
    else:
        probabilities, durations, events, target, tuned_on = {}, {}, {}, card.target, []
    extra = {}
    if reviewed is not None:
        from soundnet.review_training import merge_material, reviewed_clips

        clips = reviewed_clips(
            reviewed, audio, detector.probabilities, label=target, frame_seconds=card.features.frame_seconds, context=context
        )
        probabilities, durations, events = merge_material(probabilities, durations, events, clips)
        extra = {
            "tuned_on_reviewed": {
                "table": str(Path(reviewed).resolve()),
                "sha256": clips.sha256,
                "clips": len(clips.durations),
                **clips.counts,
            }
        }
    verifier, kept = None, None
    if verify:
        if oof is not None:  # the out-of-fold files' audio, where extract read it
            paths = {name: Path(name) for name in probabilities}
            missing = [p for p in paths.values() if not p.is_file()]
            if missing:
                raise UsageError(
                    f"{missing[0]}: not found ({len(missing)} of the run's {len(paths)} out-of-fold files): the verifier "
                    "reads each event's sound; give the annotated audio as INPUTS instead"
                )
        else:
            paths = references.paths
        # how the verifier was fitted is in the card's verifier (its "fitted")
        result, verifier, kept = search_verified(
            detector, paths, probabilities, events, label=target, durations=durations, grid=grid or GRID,
            max_false_alarms_per_hour=max_false_alarms_per_hour, folds=None if oof is None else oof.folds,
        )  # fmt: skip
    else:
        result = search_postprocessing(
            probabilities,
            events,
            label=target,
            frame_seconds=card.features.frame_seconds,
            durations=durations,
            grid=grid or GRID,
            max_false_alarms_per_hour=max_false_alarms_per_hour,
            folds=None if oof is None else oof.folds,
        )
    calibration, note = fit_event_calibration(
        probabilities,
        events,
        post=result.post,
        label=target,
        frame_seconds=card.features.frame_seconds,
        durations=durations,
        estimated=kept,
    )
    validation = tuned_validation(
        card.validation, result, tuned_on=tuned_on, calibration=note, out_of_fold=oof is not None, extra=extra
    )
    card = dataclasses.replace(
        card, postprocessing=result.post, validation=validation, calibration=calibration, verifier=verifier
    )
    write_card(run, card)
    files = [Path(p) for p in tuned_on if not p.startswith(OUT_OF_FOLD_NOTE)]
    return Tuning(
        Path(run), result.post, result.scores, result.baseline, card, files, result.criterion, result.max_false_alarms_per_hour
    )
