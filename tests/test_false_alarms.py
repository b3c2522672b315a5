"""False alarms per hour and miss rate: evaluate's figures on planted cases counted by
hand, the operating curve, and tune's choice under a false alarm limit.

No network runs here: tables are scored as they are, and where a run is needed (tune,
evaluate through a model) it is a copy of the bundled detector whose per-frame
probabilities are replaced by planted ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from clirun import cli, fails, ok

import soundnet
from soundnet.config import PostConfig
from soundnet.detection import BUNDLED_MODEL, Detector
from soundnet.errors import SoundnetError, UsageError
from soundnet.evaluation import evaluate_table
from soundnet.events import Event
from soundnet.plot import plot_operating_curve
from soundnet.run import read_card, write_card
from soundnet.scoring import event_scores, onset_figures
from soundnet.tuning import BEST_F1, FEWEST_MISSES, operating_curve, search_postprocessing

RATE = 1000  # Hz: the planted WAVs only need a length
FRAME = 0.01
HEADER = "filename\tonset\toffset\tevent_label"


def silent_wav(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(round(seconds * RATE), np.float32), RATE)
    return path


def table(path: Path, rows: dict[str, list[tuple[float, float, str]]]) -> Path:
    """A DCASE table: each file's rows, or the bare file name for a file without events."""
    lines = [HEADER]
    for name, events in rows.items():
        lines += [f"{name}\t{on}\t{off}\t{label}" for on, off, label in events] or [name]
    path.write_text("\n".join(lines) + "\n")
    return path


def planted_probabilities(seconds: float, bursts: list[tuple[float, float, float]]) -> np.ndarray:
    """0 everywhere but ``(onset, offset, height)`` plateaus."""
    p = np.zeros(round(seconds / FRAME), np.float32)
    for onset, offset, height in bursts:
        p[round(onset / FRAME) : round(offset / FRAME)] = height
    return p


# -- evaluate: figures counted by hand --------------------------------------------------

LENGTHS = {"a.wav": 60.0, "b.wav": 120.0, "c.wav": 180.0}  # 360 s = 0.1 h
REFERENCE = {
    "a.wav": [(5.0, 6.0, "beep"), (20.0, 21.0, "beep"), (40.0, 41.0, "beep")],
    "b.wav": [(10.0, 11.0, "beep")],
    "c.wav": [],  # pure negative audio
}
ESTIMATED = {
    # 5.2 matches 5.0 (within the 0.5 s onset collar); 20.8 is 0.8 s late: a false alarm
    # and a miss; 50.0 a false alarm; 40.0 missed; the other label does not count
    "a.wav": [(5.2, 6.0, "beep"), (20.8, 21.5, "beep"), (50.0, 51.0, "beep"), (30.0, 31.0, "dog")],
    "b.wav": [(10.1, 11.0, "beep"), (70.0, 71.0, "beep")],  # one match, one false alarm
    "c.wav": [(30.0, 31.0, "beep"), (90.0, 91.0, "beep")],  # two false alarms
}
# by hand: false alarms 2 + 1 + 2 = 5 in 0.1 h = 50 per hour; misses 2 of 4 reference events


@pytest.fixture
def planted_tables(tmp_path) -> tuple[Path, Path, Path]:
    audio = tmp_path / "audio"
    for name, seconds in LENGTHS.items():
        silent_wav(audio / name, seconds)
    return audio, table(tmp_path / "reference.tsv", REFERENCE), table(tmp_path / "estimated.tsv", ESTIMATED)


def test_false_alarms_per_hour_and_miss_rate_are_the_hand_count(planted_tables):
    audio, reference, estimated = planted_tables
    evaluation = evaluate_table(audio, estimated, annotations=reference)
    alarms = evaluation.scores.alarms
    assert (alarms.false_alarms, alarms.misses, alarms.reference) == (5, 2, 4)
    assert alarms.hours == pytest.approx(0.1)
    assert evaluation.false_alarms_per_hour == pytest.approx(50.0)
    assert evaluation.miss_rate == pytest.approx(0.5)
    assert evaluation.miss_rate == pytest.approx(1 - evaluation.scores.event_onset.recall)
    assert {n: c.false_alarms for n, c in evaluation.scores.files.items()} == {"a.wav": 2, "b.wav": 1, "c.wav": 2}
    # the overall counts (sed_eval's overall) agree with the per-file ones
    files = evaluation.scores.files.values()
    assert sum(c.false_alarms for c in files) == alarms.false_alarms
    assert sum(c.reference - c.true_positives for c in files) == alarms.misses


def test_files_without_reference_events_count_their_false_alarms_and_their_hours(planted_tables, tmp_path):
    audio, _, _ = planted_tables
    without_c = {n: e for n, e in REFERENCE.items() if n != "c.wav"}
    reference = table(tmp_path / "ab.tsv", without_c)
    estimated = table(tmp_path / "ab_estimated.tsv", {n: ESTIMATED[n] for n in without_c})
    alarms = evaluate_table([audio / "a.wav", audio / "b.wav"], estimated, annotations=reference).scores.alarms
    assert (alarms.false_alarms, alarms.hours) == (3, pytest.approx(0.05))
    assert alarms.false_alarms_per_hour == pytest.approx(60.0)  # and 50 with c.wav's 2 false alarms and 3 minutes
    assert alarms.miss_rate == pytest.approx(0.5)


def test_alarms_are_unknown_without_lengths_and_miss_rate_without_references():
    reference = {"x": []}
    estimated = {"x": [Event("x", 1.0, 2.0, "beep")]}
    alarms = event_scores(reference, estimated, label="beep").alarms
    assert (alarms.false_alarms, alarms.hours, alarms.false_alarms_per_hour, alarms.miss_rate) == (1, None, None, None)
    alarms = event_scores(reference, estimated, label="beep", durations={"x": 1800.0}).alarms
    assert alarms.false_alarms_per_hour == pytest.approx(2.0) and alarms.miss_rate is None


def test_evaluate_estimated_prints_and_writes_the_figures(planted_tables, tmp_path):
    audio, reference, estimated = planted_tables
    out = tmp_path / "report.json"
    result = ok(cli("evaluate", audio, "--annotations", reference, "--estimated", estimated, "--output", out))
    assert (
        "false alarms per hour 50.00 (5 in 0.1 h), miss rate 0.500 (2 of 4 reference events missed); onset collar 0.5 s"
        in result.stdout
    )
    assert "false alarms" in result.stdout.splitlines()[-4]  # the per-file table's header
    written = json.loads(out.read_text())
    assert written["alarms"] == {
        "false_alarms": 5,
        "misses": 2,
        "reference": 4,
        "hours": pytest.approx(0.1),
        "false_alarms_per_hour": pytest.approx(50.0),
        "miss_rate": 0.5,
    }
    assert written["files"]["c.wav"] == {"reference": 0, "estimated": 2, "true_positives": 0, "false_alarms": 2}
    assert written["operating_curve"] is None  # a table has no probabilities


# -- the operating curve ----------------------------------------------------------------

TRUE_HEIGHTS = (0.33, 0.53, 0.73, 0.93)  # file a's four reference events
FALSE_HEIGHTS = {"a": (0.27, 0.47, 0.67, 0.87), "b": (0.37, 0.97)}  # plateaus where nothing is


@pytest.fixture
def curve_case():
    a = [(10.0 + 20 * i, 10.5 + 20 * i, h) for i, h in enumerate(TRUE_HEIGHTS)]
    a_false = [(20.0 + 20 * i, 20.5 + 20 * i, h) for i, h in enumerate(FALSE_HEIGHTS["a"])]
    b_false = [(15.0 + 40 * i, 15.5 + 40 * i, h) for i, h in enumerate(FALSE_HEIGHTS["b"])]
    probabilities = {"a": planted_probabilities(100.0, a + a_false), "b": planted_probabilities(100.0, b_false)}
    reference = {"a": [Event("a", on, off, "beep") for on, off, _ in a], "b": []}
    return probabilities, reference, {"a": 100.0, "b": 100.0}


def test_operating_curve_is_the_hand_count_at_every_threshold(curve_case):
    probabilities, reference, durations = curve_case
    post = PostConfig(threshold=0.5, median_seconds=0.11, min_duration=0.1, merge_gap=0.2)
    curve = operating_curve(probabilities, reference, label="beep", post=post, frame_seconds=FRAME, durations=durations)
    assert [p.threshold for p in curve] == pytest.approx([0.01 * i for i in range(1, 100)])
    hours = 200 / 3600
    false_heights = [h for heights in FALSE_HEIGHTS.values() for h in heights]
    for threshold, fa_per_hour, miss_rate in curve:
        assert fa_per_hour == pytest.approx(sum(h >= threshold for h in false_heights) / hours), threshold
        assert miss_rate == pytest.approx(sum(h < threshold for h in TRUE_HEIGHTS) / 4), threshold


def test_operating_curve_trades_misses_for_false_alarms(curve_case):
    """Raising the threshold never adds false alarms nor removes misses here."""
    probabilities, reference, durations = curve_case
    curve = operating_curve(probabilities, reference, label="beep", post=PostConfig(), frame_seconds=FRAME, durations=durations)
    rates, misses = [p.false_alarms_per_hour for p in curve], [p.miss_rate for p in curve]
    assert np.all(np.diff(rates) <= 0) and rates[0] > rates[-1] == 0
    assert np.all(np.diff(misses) >= 0) and misses[0] == 0 < misses[-1] == 1.0


def test_operating_curve_picture(curve_case, tmp_path):
    probabilities, reference, durations = curve_case
    curve = operating_curve(probabilities, reference, label="beep", post=PostConfig(), frame_seconds=FRAME, durations=durations)
    out = plot_operating_curve(tmp_path / "plots" / "curve.png", curve, point=(curve[49][1], curve[49][2]))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["curve.png"]  # written whole, nothing left beside it
    with pytest.raises(SoundnetError, match="cannot draw a .xyz picture"):
        plot_operating_curve(tmp_path / "curve.xyz", curve)


# -- tune under a false alarm limit -------------------------------------------------------

# t0.wav: two sure events (0.95), two faint ones (0.45), and one false plateau at 0.65
# that no filter of the grid removes; t1.wav: nothing. 200 s: one false alarm is 18 per hour.
#   threshold <= 0.4: no miss, 1 false alarm (18 per hour), F1 8/9
#   threshold 0.5, 0.6: 2 misses, 1 false alarm; threshold >= 0.7: 2 misses, none
TUNE_REFERENCE = {"t0.wav": [(10.0, 10.5, "beep"), (30.0, 30.5, "beep"), (50.0, 50.5, "beep"), (70.0, 70.5, "beep")]}
TUNE_PROBABILITIES = {
    "t0.wav": [(10.0, 10.5, 0.95), (30.0, 30.5, 0.95), (50.0, 50.5, 0.45), (70.0, 70.5, 0.45), (85.0, 85.5, 0.65)],
    "t1.wav": [],
}
ALWAYS_FALSE = [(40.0, 41.0, 0.99)]  # added to t1.wav: a false alarm whatever the grid point


def tune_case(folder: Path, *, always_false: bool = False) -> tuple[dict, dict, Path]:
    bursts = {**TUNE_PROBABILITIES, "t1.wav": ALWAYS_FALSE if always_false else []}
    probabilities = {name: planted_probabilities(100.0, b) for name, b in bursts.items()}
    for name in probabilities:
        silent_wav(folder / name, 100.0)
    rows = {name: TUNE_REFERENCE.get(name, []) for name in probabilities}
    reference = {name: [Event(name, on, off, label) for on, off, label in events] for name, events in rows.items()}
    return probabilities, reference, table(folder.parent / f"{folder.name}.tsv", rows)


def search(probabilities, reference, **kwargs):
    durations = dict.fromkeys(probabilities, 100.0)
    return search_postprocessing(probabilities, reference, label="beep", frame_seconds=FRAME, durations=durations, **kwargs)


def test_search_under_a_limit_takes_the_fewest_misses_that_meet_it(tmp_path):
    probabilities, reference, _ = tune_case(tmp_path / "audio")
    best_f1 = search(probabilities, reference)
    assert best_f1.criterion == BEST_F1 and best_f1.post.threshold == 0.4  # no miss, 18 false alarms per hour
    assert best_f1.scores.alarms.false_alarms_per_hour == pytest.approx(18.0) and best_f1.scores.alarms.miss_rate == 0

    loose = search(probabilities, reference, max_false_alarms_per_hour=20.0)  # 18 per hour is allowed
    assert loose.post.threshold == 0.4 and loose.scores.alarms.miss_rate == 0
    strict = search(probabilities, reference, max_false_alarms_per_hour=10.0)  # no false alarm allowed
    assert strict.criterion == FEWEST_MISSES and strict.max_false_alarms_per_hour == 10.0
    assert strict.scores.alarms.false_alarms == 0 and strict.scores.alarms.miss_rate == 0.5
    assert strict.post.threshold == 0.7  # of the thresholds that meet it, the nearest 0.5 (the existing tie-break)
    assert search(probabilities, reference, max_false_alarms_per_hour=0.0).post == strict.post


def test_search_under_an_unreachable_limit_names_the_fewest_false_alarms(tmp_path):
    probabilities, reference, _ = tune_case(tmp_path / "audio", always_false=True)
    with pytest.raises(SoundnetError, match=r"the fewest is 18\.00 per hour \(miss rate 0\.500\)$"):
        search(probabilities, reference, max_false_alarms_per_hour=10.0)
    for bad in (math.nan, -1.0):
        with pytest.raises(UsageError, match="max_false_alarms_per_hour must be a number >= 0"):
            search(probabilities, reference, max_false_alarms_per_hour=bad)


@pytest.fixture
def run(tmp_path) -> Path:
    """A copy of the bundled detector, target "beep", without its verifier (its network
    never runs here: the probabilities are planted, the audio silent)."""
    run = Path(shutil.copytree(BUNDLED_MODEL, tmp_path / "run"))
    write_card(run, dataclasses.replace(read_card(run), target="beep", verifier=None))
    return run


def planted_detector(monkeypatch, probabilities: dict[str, np.ndarray]) -> None:
    """Detector.probabilities gives the planted probabilities of each file (by name)."""
    monkeypatch.setattr(
        Detector,
        "probabilities",
        lambda self, path: (probabilities[Path(path).name], len(probabilities[Path(path).name]) * FRAME),
    )


def test_tune_command_under_a_limit_writes_the_point_and_its_criterion(run, tmp_path, monkeypatch):
    probabilities, _, reference = tune_case(tmp_path / "audio")
    planted_detector(monkeypatch, probabilities)
    result = ok(cli("tune", run, tmp_path / "audio", "--annotations", reference, "--max-false-alarms-per-hour", 10))
    assert "threshold 0.7" in result.stdout
    assert "chosen for fewest misses with at most 10 false alarms per hour: " in result.stdout
    assert "0.00 false alarms per hour, miss rate 0.500" in result.stdout
    card = read_card(run)
    assert card.postprocessing.threshold == 0.7
    assert card.validation["criterion"] == FEWEST_MISSES and card.validation["max_false_alarms_per_hour"] == 10.0
    assert card.validation["alarms"]["false_alarms_per_hour"] == 0.0 and card.validation["alarms"]["miss_rate"] == 0.5

    tuning = soundnet.tune(run, tmp_path / "audio", annotations=reference)  # the API, by F1 again
    assert tuning.criterion == BEST_F1 and tuning.post.threshold == 0.4
    card = read_card(run)
    assert card.validation["criterion"] == BEST_F1 and card.validation["max_false_alarms_per_hour"] is None
    assert card.validation["alarms"]["false_alarms_per_hour"] == pytest.approx(18.0)


def test_tune_command_under_an_unreachable_limit_leaves_the_card(run, tmp_path, monkeypatch):
    probabilities, _, reference = tune_case(tmp_path / "audio", always_false=True)
    planted_detector(monkeypatch, probabilities)
    before = (run / "card.json").read_bytes()
    args = ("tune", run, tmp_path / "audio", "--annotations", reference, "--max-false-alarms-per-hour")
    fails(cli(*args, 10), "at or below 10 per hour", "the fewest is 18.00 per hour (miss rate 0.500)")
    assert (run / "card.json").read_bytes() == before
    for bad, problem in (("nan", "'nan' is not a finite number"), ("-1", "-1.0 is not in the range x>=0")):
        fails(cli(*args, bad), "--max-false-alarms-per-hour", problem, code=2)
        assert (run / "card.json").read_bytes() == before
    with pytest.raises(UsageError):
        soundnet.tune(run, tmp_path / "audio", annotations=reference, max_false_alarms_per_hour=math.nan)
    assert (run / "card.json").read_bytes() == before


# -- evaluate through a model: the curve, its picture and its JSON ------------------------


def test_evaluate_draws_and_writes_the_operating_curve(run, tmp_path, monkeypatch):
    audio = tmp_path / "audio"
    bursts = {"e0.wav": [(2.0, 2.5, 0.9), (6.0, 6.5, 0.45), (8.0, 8.5, 0.7)], "e1.wav": [(3.0, 3.5, 0.8)]}
    probabilities = {name: planted_probabilities(10.0, b) for name, b in bursts.items()}
    for name in probabilities:
        silent_wav(audio / name, 10.0)
    reference = table(tmp_path / "reference.tsv", {"e0.wav": [(2.0, 2.5, "beep"), (6.0, 6.5, "beep")], "e1.wav": []})
    planted_detector(monkeypatch, probabilities)
    out, plots = tmp_path / "report.json", tmp_path / "plots"
    post = ("--threshold", 0.6, "--median", 0, "--min-duration", 0, "--merge-gap", 0)
    ok(cli("evaluate", audio, "--annotations", reference, "--model", run, *post, "--output", out, "--plot-dir", plots))
    assert sorted(p.name for p in plots.iterdir()) == [
        "e0.png",
        "e1.png",
        "operating_curve.png",
        "psd_roc.png",
        "reliability.png",
    ]
    assert (plots / "operating_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads(out.read_text())
    # at 0.6: the 0.45 event missed, 0.7 and 0.8 false alarms in 20 s
    assert written["alarms"]["false_alarms"] == 2 and written["alarms"]["miss_rate"] == 0.5
    assert written["alarms"]["false_alarms_per_hour"] == pytest.approx(2 / (20 / 3600))
    curve = {p["threshold"]: (p["false_alarms_per_hour"], p["miss_rate"]) for p in written["operating_curve"]}
    assert len(curve) == 99  # 0.01 ... 0.99, the threshold used among them
    assert curve[0.6] == (pytest.approx(written["alarms"]["false_alarms_per_hour"]), written["alarms"]["miss_rate"])
    assert curve[0.4] == (pytest.approx(2 / (20 / 3600)), 0.0) and curve[0.85] == (pytest.approx(0.0), 0.5)


def test_evaluate_refuses_a_file_whose_plot_would_be_the_curve(run, tmp_path):
    silent_wav(tmp_path / "audio" / "operating_curve.wav", 2.0)
    reference = table(tmp_path / "reference.tsv", {"operating_curve.wav": [(0.5, 1.0, "beep")]})
    args = ("evaluate", tmp_path / "audio", "--annotations", reference, "--model", run, "--plot-dir", tmp_path / "plots")
    fails(cli(*args), "operating_curve.png", "the operating curve", code=2)


def test_the_search_counts_only_the_target_label(tmp_path):
    """A reference event of another label (a distractor) is neither a miss of the search
    nor of evaluate: the search's figures are event_scores' figures."""
    probabilities, reference, _ = tune_case(tmp_path / "audio")
    with_distractor = {**reference, "t1.wav": [Event("t1.wav", 20.0, 21.0, "dog")]}
    result = search(probabilities, with_distractor, max_false_alarms_per_hour=10.0)
    assert result.post == search(probabilities, reference, max_false_alarms_per_hour=10.0).post
    assert result.scores.alarms.miss_rate == 0.5 and result.scores.alarms.reference == 4
    events = {n: [Event(n, 50.0, 50.5, "beep")] for n in probabilities}
    hours = 200 / 3600
    _, _, alarms = onset_figures(with_distractor, events, label="beep", hours=hours)
    durations = dict.fromkeys(probabilities, 100.0)
    assert alarms == event_scores(with_distractor, events, label="beep", durations=durations).alarms
    assert (alarms.false_alarms, alarms.misses, alarms.reference) == (1, 3, 4)


def test_audio_without_any_target_event_is_scored_when_the_target_is_known(tmp_path):
    """Negatives only (a reference naming each file with no event): evaluate scores it
    for the target given, every detection a false alarm."""
    folder = tmp_path / "quiet"
    for name in ("a.wav", "b.wav"):
        silent_wav(folder / name, 900.0)  # 0.5 h in all
    reference = table(tmp_path / "ref.tsv", {"a.wav": [], "b.wav": []})
    estimated = table(tmp_path / "est.tsv", {"a.wav": [(1.0, 2.0, "beep"), (50.0, 51.0, "beep")], "b.wav": []})
    evaluation = evaluate_table([folder], estimated, annotations=reference, target="beep")
    assert evaluation.false_alarms_per_hour == pytest.approx(4.0)  # 2 in 0.5 h
    assert evaluation.scores.alarms.reference == 0
    with pytest.raises(SoundnetError, match="no event"):
        evaluate_table([folder], estimated, annotations=reference, target=None)


def test_search_finds_the_hysteresis_that_keeps_long_events_and_drops_spikes():
    # each true event holds 0.95 for 0.2 s inside 2 s at 0.6; the false alarms: a 0.2 s spike at 0.95
    # and a 3 s hum at 0.6. No plain threshold and minimum duration keeps both events and drops both.
    bursts = [(10.0, 12.0, 0.6), (10.5, 10.7, 0.95), (40.0, 42.0, 0.6), (41.0, 41.2, 0.95), (70.0, 70.2, 0.95)]
    bursts.append((80.0, 83.0, 0.6))
    probabilities = {"a.wav": planted_probabilities(100.0, bursts)}
    reference = {"a.wav": [Event("a.wav", 10.0, 12.0, "beep"), Event("a.wav", 40.0, 42.0, "beep")]}
    grid = {"threshold": (0.5, 0.9), "median_seconds": (0.0,), "min_duration": (0.0, 1.0), "merge_gap": (0.0,)}
    without = search(probabilities, reference, grid=grid)
    assert without.scores.alarms.false_alarms + without.scores.alarms.misses > 0
    found = search(probabilities, reference, grid={**grid, "off_threshold": (None, 0.5)})
    assert found.post.off_threshold == 0.5 and found.post.threshold == 0.9 and found.post.min_duration == 1.0
    assert found.scores.alarms.false_alarms == 0 and found.scores.alarms.misses == 0
    # an off threshold at or above every threshold is no hysteresis: the plain search
    assert search(probabilities, reference, grid={**grid, "off_threshold": (0.9,)}) == without


def test_detect_with_hysteresis_from_the_card_and_the_command_line(tmp_path):
    example = BUNDLED_MODEL.parents[2] / "examples" / "smoke_alarm.wav"
    model = shutil.copytree(BUNDLED_MODEL, tmp_path / "model")
    card = read_card(model)
    write_card(model, dataclasses.replace(card, postprocessing=dataclasses.replace(card.postprocessing, off_threshold=0.5)))
    detector = Detector(model)
    assert detector.postprocessing().off_threshold == 0.5  # the card's
    assert detector.postprocessing({"off_threshold": 0.3}).off_threshold == 0.3
    assert detector.postprocessing({"threshold": 0.95}).off_threshold is None  # a new threshold drops it

    def spans(*options):
        out = ok(cli("detect", example, "--model", model, "--format", "tsv", *options)).stdout
        return [tuple(map(float, row.split("\t")[1:3])) for row in out.splitlines()[1:]]

    wide, plain = spans(), spans("--threshold", str(card.postprocessing.threshold))
    assert plain and len(wide) <= len(plain)
    assert all(any(w[0] <= p[0] and p[1] <= w[1] for w in wide) for p in plain)  # hysteresis only widens and joins
    assert spans("--off-threshold", "0.5") == wide
    fails(cli("detect", example, "--model", model, "--threshold", "0.3", "--off-threshold", "0.5"), "off_threshold must be in")
