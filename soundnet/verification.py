"""A second stage for events: does what the network found sound like the target?

The network sees one window of frames at a time and says how likely each frame is to
hold the target. Some sounds of the real world reach the same probability as the target
does, for a second or two: a held note, a bird, a hammer. What tells many targets from
them is the shape of the sound over the event itself: an alarm's beeps sit in one narrow
band and switch fully on and off, a held note does not switch, a hammer is broadband.

The verifier is a logistic regression over a few **descriptors** of each event's first
``span_seconds`` (or the whole event, if it is shorter), fitted by ``soundnet tune
--verify`` on the events the post-processing finds in labelled audio (true ones matched a
reference event, the others false). An event is kept when its score reaches the
verifier's threshold. The span is the event's *first* seconds so that ``soundnet listen``
can verify an event as soon as it has lasted that long, with the same result as
``soundnet detect`` on the same audio.

The descriptors (:data:`DESCRIPTORS`), from the probabilities of the span's frames and
from its audio's power spectrogram (frames of about 64 ms every 10 ms, 200 Hz and up):

- ``peak_probability``, ``mean_probability``: the network's own evidence;
- ``span_seconds``: how much of the span the event fills;
- ``band_depth_db``: how far the level of the event's dominant band (the strongest
  frequency over its louder frames, +-50 Hz) swings, in dB (90th minus 10th percentile,
  floored 60 dB below its maximum): beeps switch on and off, steady sounds do not;
- ``band_share``: the median share of the louder frames' power in that band (tonal or
  broadband);
- ``band_steadiness``: the fraction of the louder frames whose own strongest frequency
  lies in that band (one steady pitch, or a moving one);
- ``band_periodicity``: the highest normalised autocorrelation of that band's level at
  lags of 0.1 to 1.5 s (a repeated pulse).

Pure functions of arrays, fitted with scikit-learn and applied with NumPy; nothing here
reads or writes files (:mod:`soundnet.detection` reads each event's audio).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from soundnet.errors import SoundnetError
from soundnet.events import Event

DESCRIPTORS = (
    "peak_probability",
    "mean_probability",
    "span_seconds",
    "band_depth_db",
    "band_share",
    "band_steadiness",
    "band_periodicity",
)
SPAN_SECONDS = 2.0
"""Default length of the span described: an event's first 2 s."""
FMIN = 200.0  # Hz: below it, hum and rumble
BAND_HALF_WIDTH = 50.0  # Hz either side of the dominant frequency
DEPTH_FLOOR_DB = 60.0
PERIOD_LAGS = (0.1, 1.5)  # seconds
WINDOW_SECONDS = 0.064
HOP_SECONDS = 0.01
MIN_EVENTS_PER_OUTCOME = 5
"""A verifier is fitted only from at least this many true and this many false events."""
FOLDS = 5
PENALTIES = (1.0, 0.3, 0.1, 0.03)
"""The inverse strengths of the L2 penalty on the standardised weights tried (scikit-learn's
``C``): the one whose out-of-fold scores find the most reference events within the limit
is kept (ties: fewer false alarms, then the weaker penalty). A strong penalty spreads the
weight over the descriptors instead of leaning on one the few tuning events happen to
separate by."""


def span_of(event: Event, span_seconds: float) -> tuple[float, float]:
    """The part of ``event`` the verifier describes: its first ``span_seconds``."""
    return event.onset, min(event.offset, event.onset + span_seconds)


def span_bounds(event: Event, span_seconds: float, *, sample_rate: int, frame_seconds: float) -> tuple[int, int, int, int]:
    """The samples ``[start, stop)`` and frames ``[first, last)`` of the part of ``event``
    described (:func:`span_of`; frame ``i`` covers ``(i -+ 1/2) * frame_seconds``), never empty."""
    onset, offset = span_of(event, span_seconds)
    start, stop = round(onset * sample_rate), round(offset * sample_rate)
    first, last = (round(t / frame_seconds + 0.5) for t in (onset, offset))
    return start, max(stop, start + 1), first, max(last, first + 1)


def _power_spectrogram(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """``(frames, bins)`` power of Hann-windowed frames and the bins' frequencies (200 Hz and up):
    ``librosa.stft(center=False)``'s power, in NumPy (a test holds them equal), because
    importing librosa costs a fresh ``detect`` about a second."""
    n_fft = 1 << max(4, math.ceil(math.log2(WINDOW_SECONDS * sample_rate)))
    hop = max(1, round(HOP_SECONDS * sample_rate))
    y = np.asarray(audio, np.float64)
    if len(y) < n_fft:
        y = np.pad(y, (0, n_fft - len(y)))
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann, as librosa's STFT uses
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop] * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    keep = freqs >= FMIN
    return power[:, keep], freqs[keep]


def _periodicity(level: np.ndarray, frame_seconds: float) -> float:
    x = level - level.mean()
    energy = float(np.dot(x, x))
    first, last = (round(s / frame_seconds) for s in PERIOD_LAGS)
    last = min(last, len(x) - 1)
    if energy <= 0 or last < first:
        return 0.0
    return float(max(np.dot(x[:-lag], x[lag:]) / energy for lag in range(first, last + 1)))


def describe(audio: np.ndarray, probabilities: np.ndarray, *, sample_rate: int, frame_seconds: float) -> np.ndarray:
    """The :data:`DESCRIPTORS` of one span: its audio (mono, at ``sample_rate``) and the
    network's probabilities of its frames (frames of ``frame_seconds``).

    Returns
    -------
    np.ndarray [shape=(len(DESCRIPTORS),), dtype=float64], every value finite
    """
    p = np.asarray(probabilities, np.float64)
    peak, mean = (float(p.max()), float(p.mean())) if len(p) else (0.0, 0.0)
    power, freqs = _power_spectrogram(audio, sample_rate)
    total = power.sum(axis=1)
    if len(freqs) == 0 or not np.any(total > 0):  # digital silence, or nothing above FMIN
        return np.array([peak, mean, len(audio) / sample_rate, 0.0, 0.0, 0.0, 0.0])
    loud = total >= np.median(total)
    dominant = freqs[int(np.argmax(power[loud].mean(axis=0)))]
    in_band = np.abs(freqs - dominant) <= BAND_HALF_WIDTH
    band = power[:, in_band].sum(axis=1)
    level = 10 * np.log10(band + band.max() * 10 ** (-DEPTH_FLOOR_DB / 10) + np.finfo(float).tiny)
    depth = float(np.quantile(level, 0.9) - np.quantile(level, 0.1))
    share = float(np.median(band[loud] / np.maximum(total[loud], np.finfo(float).tiny)))
    steadiness = float(np.mean(in_band[np.argmax(power[loud], axis=1)]))
    periodicity = _periodicity(band / band.max(), HOP_SECONDS)
    return np.array([peak, mean, len(audio) / sample_rate, depth, share, steadiness, periodicity])


@dataclass(frozen=True)
class Verifier:
    """A fitted logistic regression over event descriptors, and the score an event needs.

    Attributes
    ----------
    threshold : float in [0, 1]
        An event is kept when its score reaches it.
    mean, scale, coef : tuple of float, one per descriptor
        The standardisation and the weights: ``score = 1 / (1 + exp(-(coef . (x - mean) / scale + intercept)))``.
    intercept : float
    span_seconds : float > 0
        The length of each event's first part that is described.
    descriptors : tuple of str
        Their names (:data:`DESCRIPTORS`).
    fitted : dict
        How it was fitted (events, true events, the post-processing, the figures on the
        fitting audio; plain JSON).
    """

    threshold: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    span_seconds: float = SPAN_SECONDS
    descriptors: tuple[str, ...] = DESCRIPTORS
    fitted: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.descriptors) != DESCRIPTORS:
            raise SoundnetError(f"verifier descriptors must be {', '.join(DESCRIPTORS)}. Received: {', '.join(self.descriptors)}")
        numbers = (*self.mean, *self.scale, *self.coef, self.intercept, self.threshold, self.span_seconds)
        if not all(len(v) == len(DESCRIPTORS) for v in (self.mean, self.scale, self.coef)) or not all(
            math.isfinite(v) for v in numbers
        ):
            raise SoundnetError(f"a verifier needs {len(DESCRIPTORS)} finite means, scales and weights")
        if not 0 <= self.threshold <= 1 or self.span_seconds <= 0 or min(self.scale) <= 0:
            raise SoundnetError(
                "a verifier's threshold must be in [0, 1], its span and scales > 0. Received: "
                f"threshold={self.threshold}, span_seconds={self.span_seconds}"
            )

    def score(self, descriptors: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] of descriptor rows ``(n, len(DESCRIPTORS))`` (or one row)."""
        x = (np.asarray(descriptors, np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(x @ np.asarray(self.coef) + self.intercept)))

    def to_json(self) -> dict:
        return {
            "descriptors": list(self.descriptors),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "threshold": self.threshold,
            "span_seconds": self.span_seconds,
            "fitted": self.fitted,
        }

    @classmethod
    def from_json(cls, data: dict, where: str) -> Verifier:
        try:
            return cls(
                threshold=float(data["threshold"]),
                mean=tuple(float(v) for v in data["mean"]),
                scale=tuple(float(v) for v in data["scale"]),
                coef=tuple(float(v) for v in data["coef"]),
                intercept=float(data["intercept"]),
                span_seconds=float(data.get("span_seconds", SPAN_SECONDS)),
                descriptors=tuple(str(v) for v in data.get("descriptors", DESCRIPTORS)),
                fitted=dict(data.get("fitted", {})),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise SoundnetError(f"{where}: not a verifier ({error!r})") from None
        except SoundnetError as error:
            raise SoundnetError(f"{where}: {error}") from None


def _model(seed: int, penalty: float = PENALTIES[0]):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=penalty, class_weight="balanced", max_iter=1000, random_state=seed)
    )


def out_of_fold_scores(
    descriptors: np.ndarray, true: np.ndarray, files: Sequence[str], *, seed: int = 0, penalty: float = PENALTIES[0]
) -> np.ndarray:
    """Each event's score from a verifier fitted without its file's events (grouped
    folds, at most :data:`FOLDS`): what the threshold is chosen on, so that the choice
    does not rest on events the regression has seen."""
    from sklearn.model_selection import StratifiedGroupKFold

    x, y = np.asarray(descriptors, np.float64), np.asarray(true, bool)
    folds = min(FOLDS, int(y.sum()), int((~y).sum()), len(set(files)))
    scores = np.zeros(len(y))
    for train, test in StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y, list(files)):
        if len(set(y[train])) < 2:  # a fold without one of the outcomes: no regression to fit
            scores[test] = float(y[train].mean())
            continue
        scores[test] = _model(seed, penalty).fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    return scores


def choose_threshold(
    scores: np.ndarray,
    true: np.ndarray,
    *,
    references: int,
    hours: float,
    max_false_alarms_per_hour: float | None = None,
) -> tuple[float, dict]:
    """The score threshold with the fewest misses within ``max_false_alarms_per_hour``
    false alarms per hour (ties: fewer false alarms), or, with no limit, the best event
    F1; and its figures. ``references`` reference events, of which the true events are
    the found ones (one true event per found reference, as sed_eval matches them); the
    events' audio is ``hours`` long.
    A threshold above every score (keeping no event) always meets the limit.

    Raises
    ------
    SoundnetError
        ``hours`` <= 0 or a negative limit.
    """
    if hours <= 0 or (max_false_alarms_per_hour is not None and max_false_alarms_per_hour < 0):
        raise SoundnetError(f"hours must be > 0 and the limit >= 0. Received: hours={hours}, limit={max_false_alarms_per_hour}")
    s, y = np.asarray(scores, np.float64), np.asarray(true, bool)
    candidates = sorted({*s.tolist(), 1.0 + 1e-9})  # above every score: keep nothing
    best = None
    for threshold in candidates:
        kept = s >= threshold
        found, false = int((kept & y).sum()), int((kept & ~y).sum())
        rate = false / hours
        f1 = 2 * found / (references + found + false) if references + found + false else 0.0
        figures = {"found": found, "false_alarms": false, "false_alarms_per_hour": round(rate, 4), "event_f1": round(f1, 4)}
        if max_false_alarms_per_hour is not None:
            if rate > max_false_alarms_per_hour + 1e-9:
                continue
            key = (found, -false)
        else:
            key = (f1, -false)
        if best is None or key > best[0]:
            best = (key, min(threshold, 1.0), figures)
    return best[1], {**best[2], "references": references}


def fit_verifier(
    descriptors: np.ndarray,
    true: np.ndarray,
    files: Sequence[str],
    *,
    references: int,
    hours: float,
    max_false_alarms_per_hour: float | None = None,
    span_seconds: float = SPAN_SECONDS,
    seed: int = 0,
) -> Verifier:
    """A verifier fitted on events' descriptors (rows) and truth, its penalty
    (:data:`PENALTIES`) and threshold chosen on their out-of-fold scores
    (:func:`out_of_fold_scores`, :func:`choose_threshold`).

    Raises
    ------
    SoundnetError
        Fewer than :data:`MIN_EVENTS_PER_OUTCOME` true or false events.
    """
    x, y = np.asarray(descriptors, np.float64), np.asarray(true, bool)
    n_true, n_false = int(y.sum()), int((~y).sum())
    if min(n_true, n_false) < MIN_EVENTS_PER_OUTCOME:
        raise SoundnetError(
            f"too few events to fit a verifier: {n_true} true and {n_false} false "
            f"(at least {MIN_EVENTS_PER_OUTCOME} of each are needed)"
        )
    with_true, with_false = (
        len({f for f, t in zip(files, y, strict=True) if t}),
        len({f for f, t in zip(files, y, strict=True) if not t}),
    )
    if min(with_true, with_false) < 2:
        raise SoundnetError(
            f"too few files to fit a verifier out of fold: true events in {with_true} and false ones in {with_false} "
            "(at least 2 of each are needed)"
        )
    best = None
    for penalty in PENALTIES:
        scores = out_of_fold_scores(x, y, files, seed=seed, penalty=penalty)
        threshold, figures = choose_threshold(
            scores, y, references=references, hours=hours, max_false_alarms_per_hour=max_false_alarms_per_hour
        )
        found = figures["found"] if max_false_alarms_per_hour is not None else figures["event_f1"]
        key = (found, -figures["false_alarms"])
        if best is None or key > best[0]:
            best = (key, penalty, threshold, figures)
    _, penalty, threshold, figures = best
    model = _model(seed, penalty).fit(x, y)
    scaler, regression = model[0], model[-1]
    return Verifier(
        threshold=float(threshold),
        mean=tuple(map(float, scaler.mean_)),
        scale=tuple(map(float, scaler.scale_)),
        coef=tuple(map(float, regression.coef_[0])),
        intercept=float(regression.intercept_[0]),
        span_seconds=span_seconds,
        fitted={
            "events": len(y),
            "true_events": n_true,
            "files": len(set(files)),
            "hours": round(hours, 4),
            "max_false_alarms_per_hour": max_false_alarms_per_hour,
            "out_of_fold": figures,
            "penalty_c": penalty,
            "seed": seed,
        },
    )


def span_descriptors(
    events: Sequence[Event],
    audio_of,
    probabilities: np.ndarray,
    *,
    sample_rate: int,
    frame_seconds: float,
    span_seconds: float,
) -> np.ndarray:
    """Descriptor rows of one file's ``events``: ``audio_of(start, stop)`` gives the
    file's samples ``[start, stop)`` at ``sample_rate``; ``probabilities`` are its frames'."""
    rows = []
    for event in events:
        start, stop, first, last = span_bounds(event, span_seconds, sample_rate=sample_rate, frame_seconds=frame_seconds)
        rows.append(
            describe(audio_of(start, stop), probabilities[first:last], sample_rate=sample_rate, frame_seconds=frame_seconds)
        )
    return np.array(rows, np.float64).reshape(len(rows), len(DESCRIPTORS))


def verified(events: Sequence[Event], descriptors: np.ndarray, verifier: Verifier) -> list[Event]:
    """The events whose score reaches the verifier's threshold."""
    if not len(events):
        return []
    keep = verifier.score(descriptors) >= verifier.threshold
    return [e for e, k in zip(events, keep.tolist(), strict=True) if k]
