"""Bootstrap intervals: scipy's percentile bootstrap, reproducible with a seed, around the point figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clirun import cli, fails, ok

import soundnet
from soundnet.bootstrap import bootstrap
from soundnet.errors import UsageError


def test_percentile_intervals_are_scipys():
    import scipy.stats

    x = np.random.default_rng(5).exponential(size=25)
    names = [str(i) for i in range(25)]
    ours = bootstrap(names, lambda sel: {"mean": float(np.mean([x[int(n)] for n in sel]))}, resamples=999, seed=7)
    theirs = scipy.stats.bootstrap((x,), np.mean, n_resamples=999, method="percentile", rng=np.random.default_rng(7))
    assert ours.intervals["mean"] == pytest.approx(tuple(theirs.confidence_interval), rel=1e-12)
    assert ours.defined == {"mean": 999}


def test_undefined_figures_are_left_out_and_counted():
    figures = {"a": 1.0, "b": 2.0, "c": 3.0}
    result = bootstrap(list(figures), lambda sel: {"x": None if "a" in sel else 1.0, "y": float("nan")}, resamples=50, seed=0)
    assert result.intervals["x"] == (1.0, 1.0)
    assert 0 < result.defined["x"] < 50  # about (2/3)^3 of the resamples hold no "a"
    assert result.intervals["y"] is None and result.defined["y"] == 0


def test_bad_resamples_are_refused():
    with pytest.raises(UsageError, match="bootstrap needs at least 1 resample. Received: resamples=0"):
        bootstrap(["a"], lambda sel: {}, resamples=0)


def test_evaluate_intervals_hold_the_point_figures_and_repeat_with_the_seed(trained, tmp_path):
    kwargs = dict(annotations=trained.test_table, model=trained.run, bootstrap=40)
    first = soundnet.evaluate(trained.test, seed=3, **kwargs)
    again = soundnet.evaluate(trained.test, seed=3, **kwargs)
    other = soundnet.evaluate(trained.test, seed=4, **kwargs)
    assert first.bootstrap.intervals == again.bootstrap.intervals
    assert first.bootstrap.intervals != other.bootstrap.intervals
    figures = first.figures()
    assert {"event_onset.f_measure", "segment.error_rate", "alarms.false_alarms_per_hour", "frame.average_precision"} <= set(
        figures
    )
    assert {"psds.psds1", "psds.psds2", "confidence.ece", "confidence.ece_raw"} <= set(figures)
    assert set(first.bootstrap.intervals) == set(figures)
    for name, value in figures.items():
        interval = first.bootstrap.intervals[name]
        if value is None or interval is None:
            continue
        assert interval[0] - 1e-9 <= value <= interval[1] + 1e-9, (name, value, interval)

    out = tmp_path / "e.json"
    result = ok(
        cli("evaluate", trained.test, "-a", trained.test_table, "--model", trained.run, "--bootstrap", 40, "--seed", 3, "-o", out)
    )
    assert json.loads(out.read_text())["bootstrap"]["intervals"] == {k: list(v) for k, v in first.bootstrap.intervals.items()}
    assert "95% bootstrap intervals (40 resamples of the files, seed 3):" in result.stdout
    low, high = first.bootstrap.intervals["event_onset.f_measure"]
    line = next(row for row in result.stdout.splitlines() if row.strip().startswith("event_onset.f_measure"))
    assert line.split()[1:] == [f"{figures['event_onset.f_measure']:.3f}", f"{low:.3f}", f"{high:.3f}"]


def test_a_ready_table_gets_intervals_too(trained, tmp_path):
    table = tmp_path / "estimated.tsv"
    ok(cli("detect", trained.test, "--model", trained.run, "--format", "tsv", "--output", table))
    evaluation = soundnet.evaluate_table(trained.test, table, annotations=trained.test_table, bootstrap=30, seed=0)
    assert evaluation.psds is None and evaluation.confidence is None
    assert set(evaluation.bootstrap.intervals) == set(evaluation.figures())
    fails(cli("evaluate", trained.test, "-a", trained.test_table, "--bootstrap", -1), "--bootstrap", code=2)


def test_a_resample_without_any_event_leaves_psds_undefined():
    from soundnet.evaluation import _Scored
    from soundnet.events import Event
    from soundnet.psds import SCENARIOS, deltas

    probabilities = {"a.wav": np.r_[np.zeros(100), np.ones(100), np.zeros(100)], "b.wav": np.zeros(300)}
    reference = {"a.wav": [Event("a.wav", 1.0, 2.0, "x")], "b.wav": []}
    durations = {"a.wav": 3.0, "b.wav": 3.0}
    per_file = {
        name: deltas(probabilities, reference, label="x", frame_seconds=0.01, durations=durations, scenario=s)
        for name, s in SCENARIOS.items()
    }
    scored = _Scored("x", reference, {}, durations, deltas=per_file)
    assert scored.figures(["a.wav", "b.wav"])["psds.psds1"] == pytest.approx(1.0)
    assert scored.figures(["b.wav", "b.wav"])["psds.psds1"] is None
