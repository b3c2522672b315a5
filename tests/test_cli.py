"""End to end through the command line: extract, train, detect, evaluate, tune on
planted-event audio, and the one-line errors a user sees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sed_eval
from click.testing import CliRunner
from planted import planted_set

from soundnet.cli import main
from soundnet.formats import read_events


def run(*args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output + result.stderr
    return result


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A detector trained on planted beeps (never seen by the detection tests)."""
    root = tmp_path_factory.mktemp("e2e")
    table, _ = planted_set(root / "train", files=10, seconds=8.0, seed=1)
    config = root / "fast.yaml"
    config.write_text("training:\n  epochs: 12\n  patience: 4\n  batch_size: 16\n")
    run("extract", root / "train", "--annotations", table, "--out", root / "data")
    run("train", root / "data", "--out", root / "run", "--config", config, "--seed", 3)
    test_table, truth = planted_set(root / "test", files=4, seconds=8.0, seed=7)
    return root, test_table, truth


def onset_f1(reference: dict, estimated: list) -> float:
    metric = sed_eval.sound_event.EventBasedMetrics(event_label_list=["beep"], t_collar=0.5, evaluate_onset=True, evaluate_offset=False)
    for name, spans in reference.items():
        ref = [{"filename": name, "onset": a, "offset": b, "event_label": "beep"} for a, b in spans]
        est = [{"filename": e.filename, "onset": e.onset, "offset": e.offset, "event_label": e.label} for e in estimated if e.filename == name]
        metric.evaluate(reference_event_list=ref, estimated_event_list=est)
    return metric.results_overall_metrics()["f_measure"]["f_measure"]


def test_run_folder_holds_what_detect_needs(trained):
    root, _, _ = trained
    run_dir = root / "run"
    assert {"model.keras", "model.tflite", "card.json", "history.csv", "train.log"} <= {p.name for p in run_dir.iterdir()}
    card = json.loads((run_dir / "card.json").read_text())
    assert card["target"] == "beep"
    assert len(card["normalisation"]["mean"]) == 129
    assert card["features"]["hop_length"] == 160
    assert card["validation"]["event_onset"]["f_measure"] is not None
    assert "val_loss" in (run_dir / "history.csv").read_text().splitlines()[0]
    assert not (root / "run.partial").exists()


def test_card_validation_scores_are_what_evaluate_gives_on_the_validation_files(trained, tmp_path):
    """The tuned figures in the card (computed in training from the dataset arrays, with
    the best epoch's probabilities) are reproduced from the audio by evaluate."""
    root, _, _ = trained
    card = json.loads((root / "run" / "card.json").read_text())
    files = list(card["validation"]["files"])  # per-file counts, by audio file
    assert files and all(Path(f).is_file() for f in files)
    names = {Path(f).name for f in files}
    table = tmp_path / "val.tsv"  # the rows of the validation files only
    table.write_text("".join(line + "\n" for line in (root / "train.tsv").read_text().splitlines() if line.split("\t")[0] in names))
    report = tmp_path / "val.json"
    run("evaluate", *files, "--annotations", table, "--model", root / "run", "--output", report)
    scores = json.loads(report.read_text())
    for key in ("f_measure", "error_rate"):
        assert scores["event_onset"][key] == pytest.approx(card["validation"]["event_onset"][key], abs=1e-9)
    assert scores["frame"]["average_precision"] == pytest.approx(card["validation"]["frame"]["average_precision"], abs=1e-4)


def test_detect_finds_planted_events_in_unseen_files(trained, tmp_path):
    root, _, truth = trained
    out = tmp_path / "events.tsv"
    run("detect", root / "test", "--model", root / "run", "--format", "tsv", "--output", out)
    events = read_events(out, "tsv")
    assert onset_f1(truth, events) >= 0.9
    assert {e.label for e in events} <= {"beep"}


def test_inference_mode_is_not_collapsed(trained, tmp_path):
    """The seed's BatchNorm hazard: inference-mode outputs must separate the classes."""
    root, _, truth = trained
    frames = tmp_path / "frames.csv"
    run("detect", root / "test" / "clip_00.wav", "--model", root / "run", "--frames", frames)
    data = np.loadtxt(frames, delimiter=",", skiprows=1)
    times, probs = data[:, 0], data[:, 1]
    assert len(times) == 1 + 8 * 16000 // 160
    inside = np.zeros(len(times), bool)
    for a, b in truth["clip_00.wav"]:
        inside |= (times >= a + 0.05) & (times < b - 0.05)
    assert probs[inside].mean() > 0.7
    assert probs[~inside].mean() < 0.2


def test_evaluate_reports_sed_eval_figures(trained, tmp_path):
    root, table, truth = trained
    report = tmp_path / "report.json"
    est = tmp_path / "est.tsv"
    result = run("evaluate", root / "test", "--annotations", table, "--model", root / "run", "--output", report)
    assert "event-based, onset collar 0.5 s" in result.stdout
    run("detect", root / "test", "--model", root / "run", "--format", "tsv", "--output", est)
    scores = json.loads(report.read_text())
    assert scores["event_onset"]["f_measure"] == pytest.approx(onset_f1(truth, read_events(est, "tsv")))
    assert scores["frame"]["average_precision"] > 0.9
    # a ready event list scores the same as the model that produced it
    again = tmp_path / "again.json"
    run("evaluate", root / "test", "--annotations", table, "--estimated", est, "--output", again)
    assert json.loads(again.read_text())["event_onset"] == scores["event_onset"]


def test_detect_a_clip_shorter_than_one_window(trained, tmp_path):
    root, _, _ = trained
    import soundfile as sf
    from planted import tone

    clip = tmp_path / "short.wav"
    sf.write(clip, tone(2000.0, 0.3), 16000)
    frames = tmp_path / "short.csv"
    result = run("detect", clip, "--model", root / "run", "--frames", frames)
    assert len(np.loadtxt(frames, delimiter=",", skiprows=1)) == 1 + 4800 // 160
    assert "short.wav" in result.stdout


def test_detect_errors_are_one_line(trained, tmp_path):
    root, _, _ = trained
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    good = root / "test" / "clip_00.wav"
    result = run("detect", bad, good, "--model", root / "run", ok=False)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"{bad}: cannot read audio" in result.stderr
    assert "clip_00.wav" in result.stdout  # the good file was still processed


def test_missing_model_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    clip = tmp_path / "x.wav"
    import soundfile as sf

    sf.write(clip, np.zeros(1600, np.float32), 16000)
    result = run("detect", clip, "--model", tmp_path / "empty", ok=False)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'empty'}: not a soundnet model folder (no card.json)"


def test_unknown_target_label(tmp_path):
    table, _ = planted_set(tmp_path / "a", files=2, seconds=3.0, seed=0)
    result = run("extract", tmp_path / "a", "--annotations", table, "--out", tmp_path / "d", "--target", "dog", ok=False)
    assert result.exit_code == 1
    assert "unknown target label 'dog' (labels in the annotations: beep)" in result.stderr


def test_bad_annotation_row_names_file_and_line(tmp_path):
    table, _ = planted_set(tmp_path / "a", files=2, seconds=3.0, seed=0)
    table.write_text(table.read_text() + "clip_00.wav\t2.0\t1.0\tbeep\n")
    line = len(table.read_text().splitlines())
    result = run("extract", tmp_path / "a", "--annotations", table, "--out", tmp_path / "d", ok=False)
    assert result.exit_code == 1
    assert f"{table} line {line}: offset 1.0 is before onset 2.0" in result.stderr


def test_usage_error_exits_2():
    result = CliRunner().invoke(main, ["detect"])
    assert result.exit_code == 2


def test_litert_runtime_gives_the_keras_probabilities(trained, tmp_path):
    root, _, _ = trained
    clip = root / "test" / "clip_01.wav"
    for runtime in ("keras", "litert"):
        run("detect", clip, "--model", root / "run", "--runtime", runtime, "--frames", tmp_path / f"{runtime}.npy")
    keras_probs = np.load(tmp_path / "keras.npy")
    litert_probs = np.load(tmp_path / "litert.npy")
    assert keras_probs.shape == litert_probs.shape == (801, 2)
    np.testing.assert_allclose(litert_probs, keras_probs, atol=1e-5)


def test_tuned_postprocessing_does_at_least_as_well_as_plain_threshold(trained, tmp_path):
    root, table, _ = trained
    tuned, plain = tmp_path / "tuned.json", tmp_path / "plain.json"
    run("evaluate", root / "test", "--annotations", table, "--model", root / "run", "--output", tuned)
    run("evaluate", root / "test", "--annotations", table, "--model", root / "run", "--output", plain,
        "--threshold", 0.5, "--median", 0, "--min-duration", 0, "--merge-gap", 0)
    f_tuned = json.loads(tuned.read_text())["event_onset"]["f_measure"]
    f_plain = json.loads(plain.read_text())["event_onset"]["f_measure"] or 0.0
    card = json.loads((root / "run" / "card.json").read_text())
    print(f"held-out event F1: tuned {f_tuned:.3f} ({card['postprocessing']}), plain threshold 0.5: {f_plain:.3f}")
    assert f_tuned >= f_plain, (f_tuned, f_plain)


def test_tune_updates_the_card(trained, tmp_path):
    import shutil

    root, table, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(root / "run", copy)
    result = run("tune", copy, root / "test", "--annotations", table)
    assert "event F1" in result.stdout
    card = json.loads((copy / "card.json").read_text())
    assert card["validation"]["tuned_on"]
    assert 0 < card["postprocessing"]["threshold"] < 1


def test_detect_writes_every_format_and_a_plot(trained, tmp_path):
    root, _, truth = trained
    clip = root / "test" / "clip_00.wav"
    for fmt in ("tsv", "csv", "json", "audacity", "raven"):
        out = tmp_path / f"events.{fmt}"
        run("detect", clip, "--model", root / "run", "--format", fmt, "--output", out)
        events = read_events(out, fmt, filename="clip_00.wav")
        assert onset_f1({"clip_00.wav": truth["clip_00.wav"]}, events) >= 0.8, fmt
    labels = tmp_path / "labels"
    run("detect", root / "test", "--model", root / "run", "--format", "audacity", "--output-dir", labels)
    assert sorted(p.name for p in labels.iterdir()) == [f"clip_{i:02d}.txt" for i in range(4)]
    png = tmp_path / "plot.png"
    run("detect", clip, "--model", root / "run", "--plot", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_output_with_frames(trained, tmp_path):
    root, _, _ = trained
    out = tmp_path / "d.json"
    run("detect", root / "test" / "clip_02.wav", "--model", root / "run", "--format", "json", "--json-frames", "--output", out)
    (entry,) = json.loads(out.read_text())
    assert entry["filename"] == "clip_02.wav"
    assert len(entry["frames"]["probability"]) == len(entry["frames"]["time"]) == 801
    assert entry["events"] and all(0 <= e["confidence"] <= 1 for e in entry["events"])


def test_synth_then_extract(tmp_path):
    import soundfile as sf
    from planted import tone

    (tmp_path / "beep").mkdir()
    (tmp_path / "bg").mkdir()
    for i in range(3):
        sf.write(tmp_path / "beep" / f"b{i}.wav", tone(2000.0 + 300 * i, 0.4), 16000)
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "bg" / "noise.wav", (0.05 * rng.standard_normal(16000 * 6)).astype(np.float32), 16000)
    out = tmp_path / "synth"
    run("synth", "--events", tmp_path / "beep", "--backgrounds", tmp_path / "bg", "--out", out, "-n", 6, "--duration", 3, "--presence", 1, "--seed", 4)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    run("synth", "--events", tmp_path / "beep", "--backgrounds", tmp_path / "bg", "--out", out, "-n", 6, "--duration", 3, "--presence", 1, "--seed", 4)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    run("extract", out, "--annotations", out / "annotations.tsv", "--out", tmp_path / "data")
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["target"] == "beep" and manifest["counts"]["events"] == 6
    bad = run("synth", "--events", tmp_path / "bg", "--backgrounds", tmp_path / "bg", "--out", out, "--ebr", "a,b", ok=False)
    assert bad.exit_code == 2
