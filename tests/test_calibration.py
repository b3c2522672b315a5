"""Calibrated event confidence: the maps against scikit-learn, the event truth against
sed_eval, the ECE against scikit-learn's bins, a planted known answer, the card and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from clirun import cli, fails, ok

import soundnet
from soundnet.calibration import (
    Calibration,
    events_at,
    expected_calibration_error,
    fit_calibration,
    fit_event_calibration,
    matched_events,
    outcomes,
    pooled,
    reliability,
)
from soundnet.config import PostConfig
from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.run import read_card
from soundnet.scoring import event_scores

FRAME = 0.01


def test_isotonic_map_predicts_as_scikit_learn():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(0)
    c = rng.uniform(0.2, 1.0, 300)
    y = rng.random(300) < c**2
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(c, y)
    calibration = Calibration("isotonic", tuple(model.X_thresholds_), tuple(model.y_thresholds_))
    grid = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(calibration.apply(grid), model.predict(grid), atol=1e-12)


def test_platt_map_predicts_as_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    c = rng.uniform(0.05, 0.99, 400)
    y = rng.random(400) < c**3
    chosen = fit_calibration(c, y)
    logit = np.log(c / (1 - c))[:, None]
    model = LogisticRegression().fit(logit, y)
    platt = Calibration("platt", slope=float(model.coef_[0, 0]), intercept=float(model.intercept_[0]))
    grid = np.linspace(0.01, 0.99, 99)
    np.testing.assert_allclose(platt.apply(grid), model.predict_proba(np.log(grid / (1 - grid))[:, None])[:, 1], atol=1e-12)
    assert chosen.method in ("isotonic", "platt")
    assert set(chosen.fitted["cross_validated_log_loss"]) == {"isotonic", "platt"}


def test_platt_never_inverts_the_order():
    """Two false events at the top and true ones below: no downward slope, the base rate instead."""
    c = np.array([0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.98, 0.99])
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0], bool)
    calibration = fit_calibration(c, y)
    assert np.all(np.diff(calibration.apply(np.linspace(0, 1, 101))) >= -1e-12)


def test_too_few_events_is_said():
    with pytest.raises(SoundnetError, match="too few events to calibrate: 5 true and 1 false"):
        fit_calibration(np.linspace(0.5, 0.9, 6), np.array([1, 1, 1, 1, 1, 0], bool))


def test_reliability_bins_are_scikit_learns():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(2)
    c = np.concatenate([rng.uniform(0, 1, 500), [0.1, 0.2, 0.5, 0.9, 1.0, 0.0]])  # edges included
    y = rng.random(len(c)) < c
    r = reliability(c, y, bins=10)
    fraction, mean = calibration_curve(y, c, n_bins=10, strategy="uniform")
    filled = r.count > 0
    np.testing.assert_allclose(r.fraction_true[filled], fraction)
    np.testing.assert_allclose(r.confidence[filled], mean)
    expected = np.sum(r.count[filled] / len(c) * np.abs(fraction - mean))
    assert expected_calibration_error(c, y) == pytest.approx(expected)
    assert expected_calibration_error(np.zeros(0), np.zeros(0, bool)) is None


def test_perfectly_calibrated_and_overconfident_known_answers():
    c = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0], bool)
    assert expected_calibration_error(c, y) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(10, 0.95), np.arange(10) < 5) == pytest.approx(0.45)


def test_matched_events_are_sed_evals_true_positives():
    rng = np.random.default_rng(3)
    for trial in range(30):
        ref = sorted(Event("f", t, t + rng.uniform(0.2, 1), "a") for t in rng.uniform(0, 20, rng.integers(0, 6)))
        est = sorted(Event("f", t, t + rng.uniform(0.1, 1), "a", 0.5) for t in rng.uniform(0, 20, rng.integers(0, 8)))
        est += [Event("f", r.onset + rng.uniform(-0.6, 0.6), r.offset, "a", 0.9) for r in ref[:2]]
        est = sorted(e for e in est if e.onset >= 0)
        matched = matched_events(ref, est, label="a")
        counts = event_scores({"f": ref}, {"f": est}, label="a").files["f"]
        assert int(matched.sum()) == counts.true_positives, trial
        assert len(matched) - int(matched.sum()) == counts.false_alarms, trial


# -- the planted known answer ----------------------------------------------------------


def _planted_file(rng: np.random.Generator, name: str) -> tuple[np.ndarray, list[Event]]:
    """10 s of probabilities: true events peaking at a height h ~ U(0.5, 1) and blips with
    no reference event peaking as high, so that raw confidence overstates: an event at
    raw confidence h is true with probability (h - 0.5) * 1.6 + 0.1."""
    p = rng.uniform(0.0, 0.2, 1000).astype(np.float32)
    reference = []
    for slot in range(4):
        start = 50 + slot * 240 + int(rng.integers(0, 40))
        height = rng.uniform(0.5, 1.0)
        p[start : start + 60] = height
        if rng.random() < (height - 0.5) * 1.6 + 0.1:
            reference.append(Event(name, round((start - 0.5) * FRAME, 6), round((start + 59.5) * FRAME, 6), "a"))
    return p, reference


def _planted(seed: int, files: int):
    rng = np.random.default_rng(seed)
    probabilities, reference = {}, {}
    for i in range(files):
        name = f"f{i:02d}"
        probabilities[name], reference[name] = _planted_file(rng, name)
    return probabilities, reference, {name: 10.0 for name in probabilities}


def test_calibrated_confidence_has_lower_ece_on_held_out_files():
    post = PostConfig(threshold=0.4, median_seconds=0.0, min_duration=0.1, merge_gap=0.0)
    fit_probs, fit_ref, fit_durations = _planted(10, 40)  # the "validation" files
    calibration, note = fit_event_calibration(
        fit_probs, fit_ref, post=post, label="a", frame_seconds=FRAME, durations=fit_durations, seed=0
    )
    assert calibration is not None, note
    assert note.startswith(f"confidence calibrated ({calibration.method}) on 160 events of 40 file(s)")
    probs, ref, durations = _planted(11, 40)  # held out
    held_out = pooled(outcomes(ref, events_at(probs, post=post, label="a", frame_seconds=FRAME, durations=durations), label="a"))
    assert len(held_out.true) == 160
    raw = expected_calibration_error(held_out.confidence, held_out.true)
    calibrated = expected_calibration_error(calibration.apply(held_out.confidence), held_out.true)
    assert raw > 0.15  # overconfident by construction: true probability 0.1 + 1.6 (h - 0.5) < h
    assert calibrated < raw / 2, (raw, calibrated)


def test_no_calibration_from_too_few_events_says_why():
    probs = {"a.wav": np.zeros(500, np.float32)}
    calibration, note = fit_event_calibration(
        probs, {"a.wav": []}, post=PostConfig(), label="x", frame_seconds=FRAME, durations={"a.wav": 5.0}
    )
    assert calibration is None
    assert (
        note
        == "no calibration of event confidence: too few events to calibrate: 0 true and 0 false (at least 2 of each are needed) in 1 file(s)"
    )


def test_events_get_calibrated_confidence_and_keep_the_rest():
    calibration = Calibration("isotonic", (0.5, 0.9), (0.2, 0.6))
    events = [Event("f", 0.0, 1.0, "a", 0.7), Event("f", 2.0, 3.0, "a", None), Event("f", 4.0, 5.0, "a", 0.95)]
    out = calibration.events(events)
    assert [e.confidence for e in out] == [pytest.approx(0.4), None, 0.6]
    assert [(e.onset, e.offset, e.label) for e in out] == [(e.onset, e.offset, e.label) for e in events]


# -- the card and the command line -------------------------------------------------------


def _card(run):
    return json.loads((run / "card.json").read_text())


def _write_card(run, card):
    (run / "card.json").write_text(json.dumps(card))


def test_card_keeps_a_calibration_as_plain_numbers(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    card = _card(run)
    card["calibration"] = {"method": "platt", "slope": 0.5, "intercept": -0.25, "fitted": {"events": 9}}
    _write_card(run, card)
    loaded = read_card(run)
    assert loaded.calibration == Calibration("platt", slope=0.5, intercept=-0.25)
    assert loaded.to_json()["calibration"] == card["calibration"]
    card["calibration"] = {"method": "isotonic", "x": [0.1, 0.2], "y": [0.9, 0.1]}
    _write_card(run, card)
    with pytest.raises(SoundnetError, match=r"card.json calibration: isotonic calibration breakpoints must be non-decreasing"):
        read_card(run)
    card["calibration"] = {"method": "magic"}
    _write_card(run, card)
    with pytest.raises(SoundnetError, match=r"card.json calibration: calibration method must be one of isotonic, platt"):
        read_card(run)


def test_training_records_its_calibration_or_why_not(trained):
    card = read_card(trained.run)
    note = card.validation["calibration"]
    if card.calibration is None:
        assert note.startswith("no calibration of event confidence: too few events to calibrate"), note
    else:
        assert note.startswith(f"confidence calibrated ({card.calibration.method}) on "), note
        assert card.calibration.fitted["postprocessing"]["threshold"] == card.postprocessing.threshold


def _events(result) -> list[dict]:
    return [e for f in json.loads(result.stdout) for e in f["events"]]


def test_detect_reports_calibrated_confidence_unless_raw(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    card = _card(run)
    card["calibration"] = {"method": "isotonic", "x": [0.0, 1.0], "y": [0.0, 0.5]}  # halves every confidence
    _write_card(run, card)
    raw = _events(ok(cli("detect", trained.test, "--model", run, "--format", "json", "--raw-confidence")))
    calibrated = _events(ok(cli("detect", trained.test, "--model", run, "--format", "json")))
    assert raw, "the planted test files hold events"
    assert [(e["onset"], e["offset"]) for e in raw] == [(e["onset"], e["offset"]) for e in calibrated]
    for r, c in zip(raw, calibrated, strict=True):
        assert c["confidence"] == pytest.approx(r["confidence"] / 2, abs=1e-4)


def test_a_card_without_calibration_gives_raw_confidence_with_a_note(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    card = _card(run)
    card.pop("calibration", None)  # a card written before soundnet calibrated
    _write_card(run, card)
    result = ok(cli("detect", trained.test, "--model", run, "--format", "json"))
    assert "the model card has no calibration: event confidences are the network's raw values" in result.stderr
    raw = _events(ok(cli("detect", trained.test, "--model", run, "--format", "json", "--raw-confidence")))
    assert _events(result) == raw


def test_evaluate_reports_ece_and_draws_the_reliability_diagram(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    card = _card(run)
    card["calibration"] = {"method": "platt", "slope": 1.0, "intercept": -1.0}
    _write_card(run, card)
    out = tmp_path / "e.json"
    result = ok(
        cli("evaluate", trained.test, "-a", trained.test_table, "--model", run, "--output", out, "--plot-dir", tmp_path / "p")
    )
    confidence = json.loads(out.read_text())["confidence"]
    assert confidence["calibration"] == "platt"
    assert f"expected calibration error of event confidence: {confidence['ece']:.3f} calibrated (platt), " in result.stdout
    assert sum(b["events"] for b in confidence["reliability"]) == confidence["events"] > 0
    assert (tmp_path / "p" / "reliability.png").stat().st_size > 10_000


def test_bad_raw_confidence_usage_is_a_usage_error(trained):
    fails(cli("detect", trained.test, "--raw-confidence=yes"), "--raw-confidence", code=2)


def test_tune_fits_the_calibration_again_for_its_post_processing(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    ok(cli("tune", run, trained.audio, "--annotations", trained.table))
    note = read_card(run).validation["calibration"]  # the training audio: the detector is rarely wrong there
    assert note.startswith("no calibration of event confidence: too few events") and note.endswith("in 10 file(s)"), note
    assert read_card(run).calibration is None
    # a threshold low enough for false events too: now there is something to calibrate
    low = {"threshold": (0.05,), "median_seconds": (0.0,), "min_duration": (0.0,), "merge_gap": (0.0,)}
    card = soundnet.tune(run, trained.test, annotations=trained.test_table, grid=low).card
    assert card.calibration is not None, card.validation["calibration"]
    assert read_card(run).calibration == card.calibration
    fitted = card.calibration.fitted
    assert fitted["files"] == 4
    assert fitted["postprocessing"] == {
        "threshold": 0.05,
        "off_threshold": None,
        "median_seconds": 0.0,
        "min_duration": 0.0,
        "merge_gap": 0.0,
    }
    assert card.validation["calibration"] == (
        f"confidence calibrated ({card.calibration.method}) on {fitted['events']} events of 4 file(s) "
        f"({fitted['true_events']} true): expected calibration error {fitted['raw_ece']:.3f} raw, "
        f"{fitted['calibrated_ece']:.3f} calibrated"
    )


def test_evaluate_refuses_a_file_whose_plot_would_be_the_reliability_diagram(trained, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(trained.test / "clip_00.wav", audio / "reliability.wav")
    table = tmp_path / "t.tsv"
    table.write_text("reliability.wav\n")
    args = ("evaluate", audio, "-a", table, "--model", trained.run, "--plot-dir", tmp_path / "plots")
    fails(cli(*args), "reliability.png", "the reliability diagram would both be written here", code=2)
