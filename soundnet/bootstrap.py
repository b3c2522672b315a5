"""Bootstrap confidence intervals: the files resampled with replacement, every figure
recomputed on each resample, percentile intervals.

Files, not frames or events, are what a user would record again, and figures such as
an F-score or a false-alarm rate are not sums over independent events, so the unit
resampled is the file (as in DCASE's evaluations). Pure functions; the figures come
from a callable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from soundnet.errors import UsageError

LEVEL = 0.95
"""The intervals' confidence level."""


@dataclass(frozen=True)
class Bootstrap:
    """Percentile intervals of figures over resamples of the files.

    ``intervals`` maps a figure's name to ``(low, high)`` (None where the figure was
    undefined in every resample); ``defined`` to the number of resamples where it was
    defined (an F-score without any event is not).
    """

    resamples: int
    seed: int
    level: float
    intervals: dict[str, tuple[float, float] | None]
    defined: dict[str, int]

    def to_json(self) -> dict:
        return {
            "resamples": self.resamples,
            "seed": self.seed,
            "level": self.level,
            "unit": "file (resampled with replacement)",
            "intervals": {k: None if v is None else list(v) for k, v in self.intervals.items()},
            "defined": self.defined,
        }


def resampled_keys(names: Sequence[str]) -> list[str]:
    """Distinct keys for a resample that may hold one file several times (``i:name``)."""
    return [f"{i}:{name}" for i, name in enumerate(names)]


def bootstrap(
    names: Sequence[str],
    figures: Callable[[list[str]], Mapping[str, float | None]],
    *,
    resamples: int,
    seed: int = 0,
    level: float = LEVEL,
) -> Bootstrap:
    """Percentile bootstrap intervals of ``figures`` over resamples of ``names``.

    Parameters
    ----------
    names : sequence of str
        The files scored.
    figures : callable
        ``figures(selection)`` -> figure name -> value (None or NaN: undefined), for a
        list of names that may repeat a file.
    resamples : int > 0
        Number of resamples; each draws ``len(names)`` files with replacement.
    seed : int
        The resampling's seed: same seed, same intervals.
    level : float in (0, 1)
        Confidence level of the central percentile interval.
    """
    if resamples < 1:
        raise UsageError(f"bootstrap needs at least 1 resample. Received: resamples={resamples}")
    if not 0 < level < 1:
        raise UsageError(f"level must be in (0, 1). Received: level={level}")
    names = list(names)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), size=(resamples, len(names))) if names else np.zeros((resamples, 0), int)
    values: dict[str, list[float]] = {}
    for row in draws:
        for key, value in figures([names[i] for i in row]).items():
            bucket = values.setdefault(key, [])
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                bucket.append(float(value))
    tail = (1 - level) / 2
    intervals = {
        key: (None if not v else (float(np.quantile(v, tail)), float(np.quantile(v, 1 - tail)))) for key, v in values.items()
    }
    return Bootstrap(resamples, seed, level, intervals, {key: len(v) for key, v in values.items()})
