"""The polyphonic sound detection score (PSDS) of per-frame probabilities, by sed_scores_eval.

PSDS (Bilen et al., ICASSP 2020) is the normalised area under the PSD-ROC, the
effective true positive rate against effective false positives per hour over every
decision threshold: a threshold-free figure, computed here from the detector's raw
per-frame probabilities (no median filter, no minimum duration), exactly by
sed_scores_eval (Ebbers et al., ICASSP 2022). The two scenarios are DCASE's since
2021 (task 4): scenario 1 asks for tight localisation, scenario 2 for coarse
localisation and penalises cross-triggers.

One class: soundnet detects one target sound, so scenario 2's cross-trigger term
(``cttc_threshold`` 0.3, ``alpha_ct`` 0.5) has no other class to act on and adds
nothing; it is left out of the call (sed_scores_eval 0.0.4 fails on an empty set of
other classes). ``alpha_st`` (the penalty on the spread across classes) is likewise
0 in effect. Both are recorded as DCASE defines them.

Pure functions: probabilities and events in, numbers out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from soundnet.events import Event


class Scenario(NamedTuple):
    """A PSDS scenario: detection and ground-truth tolerance criteria, cross-trigger
    tolerance (None: not used), the weights of cross-triggers and of the spread across
    classes, and the highest effective false positive rate per hour integrated."""

    dtc_threshold: float
    gtc_threshold: float
    cttc_threshold: float | None
    alpha_ct: float
    alpha_st: float
    max_efpr: float


SCENARIOS = {
    "psds1": Scenario(dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0.0, alpha_st=1.0, max_efpr=100.0),
    "psds2": Scenario(dtc_threshold=0.1, gtc_threshold=0.1, cttc_threshold=0.3, alpha_ct=0.5, alpha_st=1.0, max_efpr=100.0),
}
"""DCASE 2021-2024 task 4's two scenarios."""


def single_class(scenario: Scenario) -> Scenario:
    """``scenario`` as sed_scores_eval is called for one class: no cross-trigger term."""
    return scenario._replace(cttc_threshold=None, alpha_ct=0.0)


@dataclass(frozen=True)
class PSDS:
    """One scenario's score and its PSD-ROC (effective TPR against effective FPR per hour)."""

    name: str
    value: float
    scenario: Scenario
    etpr: np.ndarray
    efpr: np.ndarray

    def to_json(self) -> dict:
        return {
            "psds": self.value,
            **self.scenario._asdict(),
            "note": "one class: the cross-trigger term (cttc_threshold, alpha_ct) and alpha_st have nothing to act on",
        }


def timestamps(n_frames: int, *, frame_seconds: float, duration: float) -> np.ndarray:
    """The ``n_frames + 1`` frame boundaries: frame ``i`` covers
    ``[(i - 1/2), (i + 1/2)) * frame_seconds``, cut to ``[0, duration]`` (as events are,
    :func:`soundnet.postprocess.to_events`)."""
    edges = (np.arange(n_frames + 1) - 0.5) * frame_seconds
    edges[0] = 0.0
    if n_frames >= 1 and duration > edges[-2]:
        edges[-1] = duration
    return edges


def score_dataframes(
    probabilities: Mapping[str, np.ndarray], *, label: str, frame_seconds: float, durations: Mapping[str, float]
) -> dict:
    """sed_scores_eval's score tables (one pandas DataFrame per file: onset, offset, label)."""
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    return {
        name: create_score_dataframe(
            np.asarray(p, np.float64)[:, None], timestamps(len(p), frame_seconds=frame_seconds, duration=durations[name]), [label]
        )
        for name, p in probabilities.items()
    }


def ground_truth(reference: Mapping[str, Sequence[Event]], *, label: str) -> dict[str, list[tuple[float, float, str]]]:
    """sed_scores_eval's ground truth: each file's events of ``label`` as (onset, offset, label)."""
    return {name: [(e.onset, e.offset, label) for e in events if e.label == label] for name, events in reference.items()}


def has_events(reference: Mapping[str, Sequence[Event]], names: Sequence[str], *, label: str) -> bool:
    """Whether any of the files ``names`` holds a reference event of ``label``: PSDS is
    undefined without one (sed_scores_eval refuses a class without ground truth)."""
    return any(e.label == label for name in names for e in reference.get(name, []))


def deltas(
    probabilities: Mapping[str, np.ndarray],
    reference: Mapping[str, Sequence[Event]],
    *,
    label: str,
    frame_seconds: float,
    durations: Mapping[str, float],
    scenario: Scenario,
) -> dict:
    """sed_scores_eval's per-file intermediate statistics of a scenario: computed once,
    any resampling of the files is scored from them (:func:`psds_of_deltas`)."""
    from sed_scores_eval.intersection_based import intermediate_statistics_deltas

    call = single_class(scenario)
    return intermediate_statistics_deltas(
        scores=score_dataframes(probabilities, label=label, frame_seconds=frame_seconds, durations=durations),
        ground_truth=ground_truth({n: reference.get(n, []) for n in probabilities}, label=label),
        dtc_threshold=call.dtc_threshold,
        gtc_threshold=call.gtc_threshold,
        cttc_threshold=call.cttc_threshold,
    )


def psds_of_deltas(
    file_deltas: Mapping[str, dict],
    reference: Mapping[str, Sequence[Event]],
    *,
    label: str,
    durations: Mapping[str, float],
    scenario: Scenario,
    name: str = "",
) -> PSDS:
    """PSDS of the files of ``file_deltas`` (its keys; each maps to a file's deltas, so a
    resampled set may hold one file under several keys), ``reference`` and
    ``durations`` keyed the same way."""
    from sed_scores_eval.intersection_based import psds as sed_scores_psds

    call = single_class(scenario)
    value, _, (etpr, efpr), _ = sed_scores_psds(
        scores=None,
        ground_truth=ground_truth({k: reference.get(k, []) for k in file_deltas}, label=label),
        audio_durations={k: durations[k] for k in file_deltas},
        deltas=dict(file_deltas),
        dtc_threshold=call.dtc_threshold,
        gtc_threshold=call.gtc_threshold,
        cttc_threshold=call.cttc_threshold,
        alpha_ct=call.alpha_ct,
        alpha_st=call.alpha_st,
        max_efpr=call.max_efpr,
        unit_of_time="hour",
    )
    return PSDS(name, float(value), scenario, np.asarray(etpr), np.asarray(efpr))


def psds_scores(
    probabilities: Mapping[str, np.ndarray],
    reference: Mapping[str, Sequence[Event]],
    *,
    label: str,
    frame_seconds: float,
    durations: Mapping[str, float],
) -> dict[str, PSDS]:
    """PSDS of both DCASE scenarios (:data:`SCENARIOS`) of each file's per-frame probabilities.

    Parameters
    ----------
    probabilities : mapping name -> np.ndarray [shape=(frames,)]
        Per-frame probabilities; frame ``i`` centred at ``i * frame_seconds``.
    reference : mapping name -> events
        Reference events (only ``label``'s count; a file without events counts too).
    label : str
        The target label.
    frame_seconds : float > 0
        The frame hop.
    durations : mapping name -> seconds
        File lengths (the false positive rate is per hour of them).
    """
    return {
        name: psds_of_deltas(
            deltas(probabilities, reference, label=label, frame_seconds=frame_seconds, durations=durations, scenario=scenario),
            reference,
            label=label,
            durations=durations,
            scenario=scenario,
            name=name,
        )
        for name, scenario in SCENARIOS.items()
    }
