"""Event confidence that means probability: calibration fitted on validation events.

An event's raw confidence is the network's highest frame probability inside it. A
calibration maps it to the fraction of events with that confidence that were true
(matched a reference event, onset collar 0.5 s, as sed_eval counts them) on the files
it was fitted on: of the validation events reported at 0.8, about 80 % were true.

Two maps are fitted with scikit-learn, isotonic regression and Platt scaling (a
logistic regression on the logit of the raw confidence), and the one with the lower
cross-validated log loss on the fitting events is kept. Either is stored in the model
card as plain numbers (breakpoints, or a slope and an intercept) and applied here with
NumPy; tests hold the results equal to scikit-learn's ``predict``.

Pure functions of events and probabilities; nothing here reads or writes files.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from soundnet.config import PostConfig, to_dict
from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.postprocess import to_events

log = logging.getLogger(__name__)

METHODS = ("isotonic", "platt")
BINS = 10
"""Equal-width confidence bins of the expected calibration error and the reliability diagram."""
MIN_EVENTS_PER_OUTCOME = 2
"""A calibration is fitted only from at least this many true and this many false events."""
FOLDS = 5
LOG_LOSS_EPS = 1e-3  # predictions clipped to [eps, 1 - eps] for the log loss: an isotonic 0 or 1 is not infinitely wrong
_LOGIT_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _LOGIT_EPS, 1 - _LOGIT_EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Calibration:
    """A fitted map from raw event confidence to calibrated confidence.

    Attributes
    ----------
    method : {"isotonic", "platt"}
        ``isotonic``: piecewise-linear through the breakpoints ``x`` -> ``y`` (constant
        beyond the ends), as scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``
        predicts; ``platt``: ``1 / (1 + exp(-(slope * logit(c) + intercept)))``.
    x, y : tuple of float
        Isotonic breakpoints (increasing ``x``; ``y`` in [0, 1], non-decreasing).
    slope, intercept : float
        Platt's coefficients.
    fitted : dict
        How it was fitted: events, true events, cross-validated log loss of each method,
        the post-processing and the files (plain JSON).
    """

    method: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    slope: float = 1.0
    intercept: float = 0.0
    fitted: dict = field(default_factory=dict, repr=False, compare=False)  # a record, not part of the map

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SoundnetError(f"calibration method must be one of {', '.join(METHODS)}. Received: method={self.method!r}")
        if self.method == "isotonic":
            x, y = np.asarray(self.x, float), np.asarray(self.y, float)
            if not (len(x) >= 1 and len(x) == len(y) and np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
                raise SoundnetError("isotonic calibration needs as many finite x as y breakpoints, at least one")
            if np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0) or y.min() < 0 or y.max() > 1:
                raise SoundnetError("isotonic calibration breakpoints must be non-decreasing, y in [0, 1]")
        elif not (math.isfinite(self.slope) and math.isfinite(self.intercept)):
            raise SoundnetError(
                f"Platt calibration needs finite numbers. Received: slope={self.slope}, intercept={self.intercept}"
            )

    def apply(self, confidence: np.ndarray | float) -> np.ndarray:
        """Calibrated confidence of raw confidences in [0, 1] (same shape, float64)."""
        c = np.asarray(confidence, np.float64)
        if self.method == "isotonic":
            return np.interp(c, self.x, self.y)
        return _Platt(self.slope, self.intercept).predict(c)

    def events(self, events: Sequence[Event]) -> list[Event]:
        """``events`` with calibrated confidences (rounded to 6 decimals, as raw ones are);
        an event without confidence is left as it is."""
        from dataclasses import replace

        known = [e.confidence for e in events if e.confidence is not None]
        mapped = iter(self.apply(np.array(known, np.float64)).tolist())
        return [e if e.confidence is None else replace(e, confidence=round(next(mapped), 6)) for e in events]

    def to_json(self) -> dict:
        params = {"x": list(self.x), "y": list(self.y)} if self.method == "isotonic" else {}
        if self.method == "platt":
            params = {"slope": self.slope, "intercept": self.intercept}
        return {"method": self.method, **params, "fitted": self.fitted}

    @classmethod
    def from_json(cls, data: dict, where: str) -> Calibration:
        try:
            method = str(data["method"])
            if method not in METHODS:
                return cls(method)  # refused, with the methods named
            if method == "isotonic":
                return cls(
                    method,
                    tuple(float(v) for v in data["x"]),
                    tuple(float(v) for v in data["y"]),
                    fitted=dict(data.get("fitted", {})),
                )
            return cls(
                method, slope=float(data["slope"]), intercept=float(data["intercept"]), fitted=dict(data.get("fitted", {}))
            )
        except (KeyError, TypeError, ValueError) as error:
            raise SoundnetError(f"{where}: not a calibration ({error!r})") from None
        except SoundnetError as error:
            raise SoundnetError(f"{where}: {error}") from None


# -- which events were true ------------------------------------------------------------


def matched_events(reference: Sequence[Event], estimated: Sequence[Event], *, label: str) -> np.ndarray:
    """Which of ``estimated``'s events of ``label`` (in their order) match a reference
    event of ``label``: sed_eval's optimal one-to-one matching with the onset collar
    0.5 s, offsets ignored (the true positives of :func:`soundnet.scoring.event_scores`)."""
    import sed_eval
    from sed_eval.util import bipartite_match

    from soundnet.scoring import COLLAR

    ref = [e for e in reference if e.label == label]
    est = [e for e in estimated if e.label == label]
    hits: dict[int, list[int]] = {}
    for i, e in enumerate(est):
        for j, r in enumerate(ref):
            if sed_eval.sound_event.EventBasedMetrics.validate_onset({"onset": r.onset}, {"onset": e.onset}, t_collar=COLLAR):
                hits.setdefault(i, []).append(j)
    matched = np.zeros(len(est), bool)
    for _, i in bipartite_match(hits).items():
        matched[i] = True
    return matched


class Outcomes(NamedTuple):
    """Events' raw confidences and whether each was true, over a set of files."""

    confidence: np.ndarray  # float64
    true: np.ndarray  # bool


def outcomes(
    reference: Mapping[str, Sequence[Event]], estimated: Mapping[str, Sequence[Event]], *, label: str
) -> dict[str, Outcomes]:
    """Per file of ``reference``: its estimated events' confidences and truth (events
    without a confidence are left out)."""
    result = {}
    for name, ref in reference.items():
        est = [e for e in estimated.get(name, []) if e.label == label]
        true = matched_events(ref, est, label=label)
        keep = np.array([e.confidence is not None for e in est], bool)
        confidence = np.array([e.confidence for e in est if e.confidence is not None], np.float64)
        result[name] = Outcomes(confidence, true[keep] if len(est) else np.zeros(0, bool))
    return result


def pooled(per_file: Mapping[str, Outcomes] | Sequence[Outcomes]) -> Outcomes:
    """The outcomes of several files as one."""
    items = list(per_file.values()) if isinstance(per_file, Mapping) else list(per_file)
    if not items:
        return Outcomes(np.zeros(0), np.zeros(0, bool))
    return Outcomes(np.concatenate([o.confidence for o in items]), np.concatenate([o.true for o in items]))


# -- reliability -------------------------------------------------------------------------


class Reliability(NamedTuple):
    """Per equal-width bin of confidence: events, their mean confidence and the fraction true
    (NaN in empty bins)."""

    edges: np.ndarray  # (bins + 1,)
    count: np.ndarray  # (bins,) int
    confidence: np.ndarray  # (bins,)
    fraction_true: np.ndarray  # (bins,)


def reliability(confidence: np.ndarray, true: np.ndarray, *, bins: int = BINS) -> Reliability:
    """Events binned by confidence (the bins of scikit-learn's ``calibration_curve``
    with ``strategy="uniform"``: ``searchsorted`` on the inner edges)."""
    confidence, true = np.asarray(confidence, np.float64), np.asarray(true, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], confidence)
    count = np.bincount(ids, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(ids, weights=confidence, minlength=bins) / count
        frac = np.bincount(ids, weights=true, minlength=bins) / count
    return Reliability(edges, count, mean_conf, frac)


def expected_calibration_error(confidence: np.ndarray, true: np.ndarray, *, bins: int = BINS) -> float | None:
    """ECE: the events' weighted mean, over equal-width bins, of |fraction true - mean
    confidence| (None without events)."""
    r = reliability(confidence, true, bins=bins)
    n = int(r.count.sum())
    if n == 0:
        return None
    filled = r.count > 0
    return float(np.sum(r.count[filled] * np.abs(r.fraction_true[filled] - r.confidence[filled])) / n)


# -- fitting -----------------------------------------------------------------------------


def _fit_isotonic(c: np.ndarray, y: np.ndarray):
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(c, y)


class _Platt(NamedTuple):
    slope: float
    intercept: float

    def predict(self, c: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * _logit(c) + self.intercept)))


def _fit_platt(c: np.ndarray, y: np.ndarray) -> _Platt:
    """Platt scaling on the logit of the raw confidence (scikit-learn's logistic regression,
    its default L2 penalty), the slope kept >= 0: where the fit would make a higher raw
    confidence mean a lower probability (a few events, no trend), the best constant, the
    fraction of events true, is kept instead."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(_logit(c)[:, None], y)
    slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
    if slope < 0:
        rate = float(np.clip(np.mean(y), _LOGIT_EPS, 1 - _LOGIT_EPS))
        slope, intercept = 0.0, math.log(rate / (1 - rate))
    return _Platt(slope, intercept)


def _calibration_of(method: str, model, fitted: dict) -> Calibration:
    if method == "isotonic":
        return Calibration(
            "isotonic", tuple(map(float, model.X_thresholds_)), tuple(map(float, model.y_thresholds_)), fitted=fitted
        )
    return Calibration("platt", slope=model.slope, intercept=model.intercept, fitted=fitted)


def _cross_validated_log_loss(c: np.ndarray, y: np.ndarray, *, seed: int) -> dict[str, float]:
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=min(FOLDS, int(y.sum()), int((1 - y).sum())), shuffle=True, random_state=seed)
    predicted = {method: np.zeros(len(y)) for method in METHODS}
    for train, test in folds.split(c[:, None], y):
        predicted["isotonic"][test] = _fit_isotonic(c[train], y[train]).predict(c[test])
        predicted["platt"][test] = _fit_platt(c[train], y[train]).predict(c[test])
    return {m: float(log_loss(y, np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS), labels=[0, 1])) for m, p in predicted.items()}


def fit_calibration(confidence: np.ndarray, true: np.ndarray, *, seed: int = 0) -> Calibration:
    """Fit isotonic and Platt maps of raw confidence to truth; keep the one with the lower
    cross-validated log loss (stratified folds, at most 5, seeded), refitted on every event.

    Parameters
    ----------
    confidence : np.ndarray [shape=(n,)], values in [0, 1]
        Events' raw confidences.
    true : np.ndarray [shape=(n,)], bool
        Whether each event matched a reference event.
    seed : int
        Seed of the folds.

    Raises
    ------
    SoundnetError
        Fewer than :data:`MIN_EVENTS_PER_OUTCOME` true or false events.
    """
    c, y = np.asarray(confidence, np.float64), np.asarray(true, bool).astype(np.float64)
    n_true, n_false = int(y.sum()), int(len(y) - y.sum())
    if min(n_true, n_false) < MIN_EVENTS_PER_OUTCOME:
        raise SoundnetError(
            f"too few events to calibrate: {n_true} true and {n_false} false "
            f"(at least {MIN_EVENTS_PER_OUTCOME} of each are needed)"
        )
    losses = _cross_validated_log_loss(c, y, seed=seed)
    method = min(METHODS, key=lambda m: (losses[m], m != "platt"))  # ties go to Platt: two numbers, smooth
    model = _fit_isotonic(c, y) if method == "isotonic" else _fit_platt(c, y)
    fitted = {
        "events": len(y),
        "true_events": n_true,
        "cross_validated_log_loss": losses,
        "folds": min(FOLDS, n_true, n_false),
        "seed": seed,
        "raw_ece": expected_calibration_error(c, y),
    }
    calibration = _calibration_of(method, model, fitted)
    fitted["calibrated_ece"] = expected_calibration_error(calibration.apply(c), y)
    return calibration


def events_at(
    probabilities: Mapping[str, np.ndarray],
    *,
    post: PostConfig,
    label: str,
    frame_seconds: float,
    durations: Mapping[str, float],
) -> dict[str, list[Event]]:
    """Each file's events (raw confidence) under ``post``."""
    return {
        name: to_events(p, post=post, frame_seconds=frame_seconds, duration=durations[name], filename=name, label=label)
        for name, p in probabilities.items()
    }


def fit_event_calibration(
    probabilities: Mapping[str, np.ndarray],
    reference: Mapping[str, Sequence[Event]],
    *,
    post: PostConfig,
    label: str,
    frame_seconds: float,
    durations: Mapping[str, float],
    seed: int = 0,
    estimated: Mapping[str, Sequence[Event]] | None = None,
) -> tuple[Calibration | None, str]:
    """The calibration of the events that ``post`` finds in labelled files (validation, or
    the tuning files), and a line saying what was fitted, or why nothing was (too few
    true or false events: the card then keeps raw confidences). ``estimated``: the
    events reported there (raw confidence) when not simply ``post``'s (a verifier kept
    some of them)."""
    if estimated is None:
        estimated = events_at(probabilities, post=post, label=label, frame_seconds=frame_seconds, durations=durations)
    data = pooled(outcomes({name: reference.get(name, []) for name in probabilities}, estimated, label=label))
    try:
        calibration = fit_calibration(data.confidence, data.true, seed=seed)
    except SoundnetError as error:
        return None, f"no calibration of event confidence: {error} in {len(probabilities)} file(s)"
    calibration.fitted.update({"files": len(probabilities), "postprocessing": to_dict(post)})
    f = calibration.fitted
    return calibration, (
        f"confidence calibrated ({calibration.method}) on {f['events']} events of {f['files']} file(s) "
        f"({f['true_events']} true): expected calibration error {f['raw_ece']:.3f} raw, {f['calibrated_ece']:.3f} calibrated"
    )
