"""End to end through the command line: extract, train, detect, evaluate, tune on
planted-event audio, and the one-line errors a user sees.

The trained run is the session's (conftest.py ``trained``); tests that change a card
work on a copy of it."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import sed_eval
import soundfile as sf
from clirun import cli, fails, ok
from planted import planted_set, tone

from soundnet.formats import read_events

POST_NAMES = ("threshold", "median_seconds", "min_duration", "merge_gap")
PLAIN = {"threshold": 0.5, "median_seconds": 0.0, "min_duration": 0.0, "merge_gap": 0.0}


def onset_f1(reference: dict, estimated: list) -> float:
    metric = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=["beep"], t_collar=0.5, evaluate_onset=True, evaluate_offset=False
    )
    for name, spans in reference.items():
        ref = [{"filename": name, "onset": a, "offset": b, "event_label": "beep"} for a, b in spans]
        est = [
            {"filename": e.filename, "onset": e.onset, "offset": e.offset, "event_label": e.label}
            for e in estimated
            if e.filename == name
        ]
        metric.evaluate(reference_event_list=ref, estimated_event_list=est)
    return metric.results_overall_metrics()["f_measure"]["f_measure"]


def copy_run(trained, tmp_path: Path, name: str = "run") -> Path:
    copy = tmp_path / name
    shutil.copytree(trained.run, copy)
    return copy


def card_of(run: Path) -> dict:
    return json.loads((run / "card.json").read_text())


def post_options(post: dict) -> list:
    return [
        "--threshold",
        post["threshold"],
        "--median",
        post["median_seconds"],
        "--min-duration",
        post["min_duration"],
        "--merge-gap",
        post["merge_gap"],
    ]


def validation_files(trained, tmp_path: Path) -> tuple[list[str], Path]:
    """The card's validation files (those training tuned on) and a table of their rows only."""
    files = list(card_of(trained.run)["validation"]["files"])  # per-file counts, by audio file
    assert files and all(Path(f).is_file() for f in files)
    names = {Path(f).name for f in files}
    table = tmp_path / "val.tsv"
    table.write_text("".join(line + "\n" for line in trained.table.read_text().splitlines() if line.split("\t")[0] in names))
    return files, table


def evaluated(tmp_path: Path, name: str, *args) -> dict:
    report = tmp_path / f"{name}.json"
    ok(cli("evaluate", *args, "--output", report))
    return json.loads(report.read_text())


def test_run_folder_holds_what_detect_needs(trained):
    assert {"model.keras", "model.tflite", "card.json", "history.csv", "train.log"} <= {p.name for p in trained.run.iterdir()}
    card = card_of(trained.run)
    assert card["target"] == "beep"
    assert len(card["normalisation"]["mean"]) == 129
    assert card["features"]["hop_length"] == 160
    assert card["validation"]["event_onset"]["f_measure"] is not None
    assert "val_loss" in (trained.run / "history.csv").read_text().splitlines()[0]
    assert not (trained.root / "run.partial").exists()


def test_card_validation_scores_are_what_evaluate_gives_on_the_validation_files(trained, tmp_path):
    """The tuned figures in the card (computed in training from the dataset arrays, with
    the best epoch's probabilities) are reproduced from the audio by evaluate."""
    card = card_of(trained.run)
    files, table = validation_files(trained, tmp_path)
    scores = evaluated(tmp_path, "val", *files, "--annotations", table, "--model", trained.run)
    for key in ("f_measure", "error_rate"):
        assert scores["event_onset"][key] == pytest.approx(card["validation"]["event_onset"][key], abs=1e-9)
    assert scores["frame"]["average_precision"] == pytest.approx(card["validation"]["frame"]["average_precision"], abs=1e-4)


def test_detect_finds_planted_events_in_unseen_files(trained, tmp_path):
    out = tmp_path / "events.tsv"
    ok(cli("detect", trained.test, "--model", trained.run, "--format", "tsv", "--output", out))
    events = read_events(out, "tsv")
    assert onset_f1(trained.truth, events) >= 0.9
    assert {e.label for e in events} <= {"beep"}


def test_inference_mode_is_not_collapsed(trained, tmp_path):
    """The seed's BatchNorm hazard: inference-mode outputs must separate the classes."""
    frames = tmp_path / "frames.csv"
    ok(cli("detect", trained.test / "clip_00.wav", "--model", trained.run, "--frames", frames))
    data = np.loadtxt(frames, delimiter=",", skiprows=1)
    times, probs = data[:, 0], data[:, 1]
    assert len(times) == 1 + 8 * 16000 // 160
    inside = np.zeros(len(times), bool)
    for a, b in trained.truth["clip_00.wav"]:
        inside |= (times >= a + 0.05) & (times < b - 0.05)
    assert probs[inside].mean() > 0.7
    assert probs[~inside].mean() < 0.2


def test_evaluate_reports_sed_eval_figures(trained, tmp_path):
    est = tmp_path / "est.tsv"
    report = tmp_path / "report.json"
    result = ok(cli("evaluate", trained.test, "--annotations", trained.test_table, "--model", trained.run, "--output", report))
    assert "event-based, onset collar 0.5 s" in result.stdout
    ok(cli("detect", trained.test, "--model", trained.run, "--format", "tsv", "--output", est))
    scores = json.loads(report.read_text())
    assert scores["event_onset"]["f_measure"] == pytest.approx(onset_f1(trained.truth, read_events(est, "tsv")))
    assert scores["frame"]["average_precision"] > 0.9
    # a ready event list scores the same as the model that produced it
    again = evaluated(tmp_path, "again", trained.test, "--annotations", trained.test_table, "--estimated", est)
    assert again["event_onset"] == scores["event_onset"]


def test_detect_a_clip_shorter_than_one_window(trained, tmp_path):
    clip = tmp_path / "short.wav"
    sf.write(clip, tone(2000.0, 0.3), 16000)
    frames = tmp_path / "short.csv"
    result = ok(cli("detect", clip, "--model", trained.run, "--frames", frames))
    assert len(np.loadtxt(frames, delimiter=",", skiprows=1)) == 1 + 4800 // 160
    assert "short.wav: " in result.stdout


def test_detect_errors_are_one_line(trained, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    good = trained.test / "clip_00.wav"
    result = fails(cli("detect", bad, good, "--model", trained.run), f"{bad}: cannot read audio")
    assert "clip_00.wav: " in result.stdout  # the good file was still processed


def test_missing_model_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    clip = tmp_path / "x.wav"
    sf.write(clip, np.zeros(1600, np.float32), 16000)
    result = fails(cli("detect", clip, "--model", tmp_path / "empty"))
    assert result.stderr.strip() == f"Error: {tmp_path / 'empty'}: not a soundnet model folder (no card.json)"


def test_unknown_target_label(tmp_path):
    table, _ = planted_set(tmp_path / "a", files=2, seconds=3.0, seed=0)
    result = cli("extract", tmp_path / "a", "--annotations", table, "--out", tmp_path / "d", "--target", "dog")
    fails(result, "unknown target label 'dog' (labels in the annotations: beep)")


def test_bad_annotation_row_names_file_and_line(tmp_path):
    table, _ = planted_set(tmp_path / "a", files=2, seconds=3.0, seed=0)
    table.write_text(table.read_text() + "clip_00.wav\t2.0\t1.0\tbeep\n")
    line = len(table.read_text().splitlines())
    result = cli("extract", tmp_path / "a", "--annotations", table, "--out", tmp_path / "d")
    fails(result, f"{table} line {line}: offset 1.0 is before onset 2.0")


def test_usage_error_exits_2():
    fails(cli("detect"), "Missing argument", "INPUTS", code=2)


def test_litert_runtime_gives_the_keras_probabilities(trained, tmp_path):
    clip = trained.test / "clip_01.wav"
    for runtime in ("keras", "litert"):
        ok(cli("detect", clip, "--model", trained.run, "--runtime", runtime, "--frames", tmp_path / f"{runtime}.npy"))
    keras_probs = np.load(tmp_path / "keras.npy")
    litert_probs = np.load(tmp_path / "litert.npy")
    assert keras_probs.shape == litert_probs.shape == (801, 2)
    np.testing.assert_allclose(litert_probs, keras_probs, atol=1e-5)


def test_tuned_postprocessing_does_at_least_as_well_as_plain_threshold(trained, tmp_path):
    """On the files the card was tuned on (the validation files), tuned >= plain holds by
    construction: plain thresholding at 0.5 is one point of the searched grid
    (test_evaluate.py) and the card's figures are what evaluate gives (test above).

    On unseen files it is no theorem: it may lose there, by chance, but not by more
    than one event (F1 moves by about 1/n per event among n reference events); more
    would mean the search over-fits the validation files."""
    card = card_of(trained.run)
    post = {name: card["postprocessing"][name] for name in POST_NAMES}
    files, table = validation_files(trained, tmp_path)
    tuned = evaluated(tmp_path, "tuned", *files, "--annotations", table, "--model", trained.run)["event_onset"]
    plain = evaluated(tmp_path, "plain", *files, "--annotations", table, "--model", trained.run, *post_options(PLAIN))[
        "event_onset"
    ]
    assert tuned["f_measure"] >= (plain["f_measure"] or 0.0), (post, tuned, plain)

    args = (trained.test, "--annotations", trained.test_table, "--model", trained.run)
    tuned = evaluated(tmp_path, "held_out_tuned", *args)["event_onset"]["f_measure"]
    plain = evaluated(tmp_path, "held_out_plain", *args, *post_options(PLAIN))["event_onset"]["f_measure"] or 0.0
    events = sum(len(spans) for spans in trained.truth.values())
    print(f"held-out event F1: tuned {tuned:.3f} ({post}), plain threshold 0.5: {plain:.3f}, {events} events")
    assert tuned >= plain - 1 / events, (tuned, plain, events)


def test_tune_replaces_a_bad_postprocessing_with_the_searched_optimum(trained, tmp_path):
    """Starting from a card with a deliberately bad post-processing, tune writes the
    optimum of its search on the given files, and the figures of that optimum.

    Told through the command line only: the search's result does not depend on the
    card it starts from (so the old values are not written back), it scores on these
    files at least as well as the other grid points known here (plain thresholding,
    the card's setting from training) and far better than the bad start, and the card
    holds the figures evaluate gives with it."""
    # the planted events last 0.3-0.8 s: a minimum duration of 2 s drops them all
    bad = {"threshold": 0.99, "median_seconds": 0.0, "min_duration": 2.0, "merge_gap": 0.0}
    trained_post = {name: card_of(trained.run)["postprocessing"][name] for name in POST_NAMES}
    args = (trained.test, "--annotations", trained.test_table)
    tuned = {}
    for start in ("bad", "plain"):
        run = copy_run(trained, tmp_path, start)
        card = card_of(run)
        card["postprocessing"] = {**card["postprocessing"], **(bad if start == "bad" else PLAIN)}
        (run / "card.json").write_text(json.dumps(card))
        result = ok(cli("tune", run, *args))
        assert "event F1" in result.stdout
        tuned[start] = card_of(run)
    card = tuned["bad"]
    post = {name: card["postprocessing"][name] for name in POST_NAMES}
    assert post != bad
    assert post == {name: tuned["plain"]["postprocessing"][name] for name in POST_NAMES}
    assert card["validation"]["tuned_on"] == [str(trained.test / f"clip_{i:02d}.wav") for i in range(4)]
    # these files' figures, each file's counts among them; training's held-out figures set aside whole
    validation = card["validation"]
    assert len(validation["files"]) == 4
    assert sum(f["reference"] for f in validation["files"].values()) == validation["alarms"]["reference"]
    assert sum(f["false_alarms"] for f in validation["files"].values()) == validation["alarms"]["false_alarms"]
    assert "split" not in validation and "frame" not in validation
    assert validation["training_validation"] == card_of(trained.run)["validation"]
    ok(cli("tune", run, *args, "--max-false-alarms-per-hour", "1000"))  # tuned again: still training's, not nested
    assert card_of(run)["validation"]["training_validation"] == card_of(trained.run)["validation"]
    # a card tuned before training_validation existed: its event figures are the tuning audio's; only split and frame are kept
    old_layout = {k: v for k, v in validation.items() if k != "training_validation"}
    old_layout |= {k: card_of(trained.run)["validation"][k] for k in ("split", "frame")}
    card = card_of(run)
    card["validation"] = old_layout
    (run / "card.json").write_text(json.dumps(card))
    ok(cli("tune", run, *args))
    assert card_of(run)["validation"]["training_validation"] == {k: old_layout[k] for k in ("split", "frame")}

    # the card's figures are evaluate's with that post-processing (the card's own, and given explicitly)
    scores = evaluated(tmp_path, "tuned", *args, "--model", tmp_path / "bad")
    assert scores == evaluated(tmp_path, "explicit", *args, "--model", trained.run, *post_options(post))
    for key in ("event_onset", "event_onset_offset", "segment"):
        assert card["validation"][key] == pytest.approx(scores[key], abs=1e-9), key
    f_tuned = scores["event_onset"]["f_measure"]
    for name, other in (("plain", PLAIN), ("trained", trained_post)):
        f_other = (
            evaluated(tmp_path, name, *args, "--model", trained.run, *post_options(other))["event_onset"]["f_measure"] or 0.0
        )
        assert f_tuned >= f_other, (name, post, other)
    worse = evaluated(tmp_path, "worse", *args, "--model", trained.run, *post_options(bad))["event_onset"]["f_measure"] or 0.0
    assert worse == 0.0 < f_tuned


def test_detect_writes_every_format_and_a_plot(trained, tmp_path):
    clip = trained.test / "clip_00.wav"
    for fmt in ("tsv", "csv", "json", "audacity", "raven"):
        out = tmp_path / f"events.{fmt}"
        ok(cli("detect", clip, "--model", trained.run, "--format", fmt, "--output", out))
        events = read_events(out, fmt, filename="clip_00.wav")
        assert onset_f1({"clip_00.wav": trained.truth["clip_00.wav"]}, events) >= 0.8, fmt
    labels = tmp_path / "labels"
    ok(cli("detect", trained.test, "--model", trained.run, "--format", "audacity", "--output-dir", labels))
    assert sorted(p.name for p in labels.iterdir()) == [f"clip_{i:02d}.txt" for i in range(4)]
    png = tmp_path / "plot.png"
    ok(cli("detect", clip, "--model", trained.run, "--plot", png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_raven_high_frequency_is_the_models_nyquist(trained, tmp_path):
    out = tmp_path / "events.selections.txt"
    ok(cli("detect", trained.test / "clip_00.wav", "--model", trained.run, "--format", "raven", "--output", out))
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert rows
    nyquist = card_of(trained.run)["features"]["sample_rate"] / 2
    assert {float(row["High Freq (Hz)"]) for row in rows} == {nyquist}
    assert {float(row["Low Freq (Hz)"]) for row in rows} == {0.0}


@pytest.mark.parametrize("model", ["whole", "unloadable"])
def test_audacity_output_of_several_files_needs_an_output_dir_before_the_model_loads(trained, tmp_path, model):
    """A usage error (exit 2) is found from the options alone: it must not wait for,
    or be hidden by, loading the network."""
    run = trained.run
    if model == "unloadable":
        run = copy_run(trained, tmp_path)
        (run / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
        (run / "model.tflite").write_bytes(b"not a flatbuffer")
    files = [trained.test / "clip_00.wav", trained.test / "clip_01.wav"]
    fails(cli("detect", *files, "--model", run, "--format", "audacity"), "--format audacity", "--output-dir", code=2)


@pytest.mark.parametrize("option, level", [(None, logging.INFO), ("-v", logging.DEBUG), ("-q", logging.ERROR)])
def test_verbosity_options_set_the_logging_level(trained, option, level):
    """-v shows debug messages, which the default level does not."""
    logger = logging.getLogger("soundnet")
    saved = logger.level, logger.handlers[:], logger.propagate
    try:
        ok(cli(*[option] if option else [], "detect", trained.test / "clip_03.wav", "--model", trained.run))
        assert logger.level == level, logging.getLevelName(logger.level)
        assert logger.isEnabledFor(logging.DEBUG) == (option == "-v")
    finally:  # what the command set up is not left to the tests that follow
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logger.propagate = saved[2]


def test_json_output_with_frames(trained, tmp_path):
    out = tmp_path / "d.json"
    ok(cli("detect", trained.test / "clip_02.wav", "--model", trained.run, "--format", "json", "--json-frames", "--output", out))
    (entry,) = json.loads(out.read_text())
    assert entry["filename"] == "clip_02.wav"
    assert len(entry["frames"]["probability"]) == len(entry["frames"]["time"]) == 801
    assert entry["events"] and all(0 <= e["confidence"] <= 1 for e in entry["events"])


def test_synth_then_extract(tmp_path):
    (tmp_path / "beep").mkdir()
    (tmp_path / "bg").mkdir()
    for i in range(3):
        sf.write(tmp_path / "beep" / f"b{i}.wav", tone(2000.0 + 300 * i, 0.4), 16000)
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "bg" / "noise.wav", (0.05 * rng.standard_normal(16000 * 6)).astype(np.float32), 16000)
    out = tmp_path / "synth"
    args = (
        "synth",
        "--events",
        tmp_path / "beep",
        "--backgrounds",
        tmp_path / "bg",
        "--out",
        out,
        "-n",
        6,
        "--duration",
        3,
        "--presence",
        1,
        "--seed",
        4,
    )
    ok(cli(*args))
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    ok(cli(*args))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    ok(cli("extract", out, "--annotations", out / "annotations.tsv", "--out", tmp_path / "data"))
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["target"] == "beep" and manifest["counts"]["events"] == 6
    fails(
        cli("synth", "--events", tmp_path / "bg", "--backgrounds", tmp_path / "bg", "--out", out, "--ebr", "a,b"), "--ebr", code=2
    )
