"""Choosing a detector's post-processing: the search over thresholds, median filters,
minimum durations and gaps that picks detect's defaults, and :func:`tune`, which runs
it for a trained run on labelled audio and writes the result to the run's card."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundnet.config import PostConfig
from soundnet.events import Event
from soundnet.postprocess import median_frames, smooth, to_events
from soundnet.run import ModelCard
from soundnet.scoring import EventScores, event_scores, onset_f_and_error

# The post-processing search: 9 thresholds x 5 median lengths x 4 minimum durations x 4 gaps.
GRID = {
    "threshold": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "median_seconds": (0.0, 0.05, 0.11, 0.21, 0.31),
    "min_duration": (0.0, 0.05, 0.1, 0.2),
    "merge_gap": (0.0, 0.1, 0.2, 0.5),
}


@dataclass(frozen=True)
class TuneResult:
    """The post-processing found, its scores, and the scores of the plain rule
    (threshold 0.5, no filtering) on the same files."""

    post: PostConfig
    scores: EventScores
    baseline: EventScores


def search_postprocessing(
    probabilities: Mapping[str, np.ndarray],
    reference: Mapping[str, Sequence[Event]],
    *,
    label: str,
    frame_seconds: float,
    durations: Mapping[str, float],
    grid: Mapping[str, Sequence[float]] = GRID,
) -> TuneResult:
    """The post-processing with the best event-based F-score (onset collar 0.5 s) on
    labelled files; ties go to the lower error rate, then to the threshold nearest
    0.5, then to more smoothing (longer median filter and minimum duration: safer on
    unseen audio), then to the smaller gap.

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
        The values searched for each PostConfig field.
    """

    def events_for(post: PostConfig, probs: Mapping[str, np.ndarray]) -> dict[str, list[Event]]:
        return {
            name: to_events(p, post=post, frame_seconds=frame_seconds, duration=durations[name], filename=name, label=label)
            for name, p in probs.items()
        }

    best_key, best_post = None, None
    for median in grid["median_seconds"]:
        # smooth once per median length; to_events below then needs no further filtering
        frames = median_frames(median, frame_seconds=frame_seconds)
        smoothed = {name: smooth(np.asarray(p, np.float32), frames=frames) for name, p in probabilities.items()}
        for threshold, min_duration, gap in itertools.product(grid["threshold"], grid["min_duration"], grid["merge_gap"]):
            post = PostConfig(threshold=threshold, median_seconds=0.0, min_duration=min_duration, merge_gap=gap)
            f, er = onset_f_and_error(reference, events_for(post, smoothed), label=label)
            key = (round(f, 9), -round(er, 9), -abs(threshold - 0.5), median, min_duration, -gap)
            if best_key is None or key > best_key:
                best_key = key
                best_post = PostConfig(threshold=threshold, median_seconds=median, min_duration=min_duration, merge_gap=gap)
    baseline = event_scores(reference, events_for(PostConfig(), probabilities), label=label, durations=durations)
    scores = event_scores(reference, events_for(best_post, probabilities), label=label, durations=durations)
    return TuneResult(best_post, scores, baseline)


@dataclass(frozen=True)
class Tuning:
    """What :func:`tune` did to a run: the new post-processing, its scores on the
    tuning files, the plain rule's scores there, and the card as written."""

    run: Path
    post: PostConfig
    scores: EventScores
    baseline: EventScores
    card: ModelCard = dataclasses.field(repr=False)
    files: list[Path] = dataclasses.field(repr=False)


def tune(
    run: Path,
    inputs: Path | str | Iterable[Path | str],
    *,
    annotations: Path | None = None,
    grid: Mapping[str, Sequence[float]] | None = None,
) -> Tuning:
    """Search ``run``'s post-processing on labelled audio and write it to the run's card.

    Parameters
    ----------
    run : Path
        A run folder (written by :func:`soundnet.training`).
    inputs : path or iterable of paths
        Audio files and folders.
    annotations : Path or None
        A DCASE table of reference events; None reads Audacity labels beside the audio.
    grid : mapping or None
        The values searched (default :data:`GRID`).

    Returns
    -------
    Tuning
        The card now in ``run`` holds the new post-processing; its validation figures
        become the scores on these files (``tuned_on`` lists them).
    """
    from soundnet.detection import Detector
    from soundnet.evaluation import read_references
    from soundnet.run import write_card

    detector = Detector(run)
    card = detector.card
    references = read_references(inputs, annotations, target=card.target)
    probabilities, durations = {}, {}
    for name, path in references.paths.items():
        probabilities[name], durations[name] = detector.probabilities(path)
    result = search_postprocessing(
        probabilities,
        references.events,
        label=references.target,
        frame_seconds=card.features.frame_seconds,
        durations=durations,
        grid=grid or GRID,
    )
    validation = {**card.validation, "tuned_on": [str(p) for p in references.paths.values()], **result.scores.summary_json()}
    card = dataclasses.replace(card, postprocessing=result.post, validation=validation)
    write_card(run, card)
    return Tuning(Path(run), result.post, result.scores, result.baseline, card, list(references.paths.values()))
