"""soundnet export: ONNX, LiteRT float and full-integer int8 files of a trained run,
each checked against the Keras model; detect --runtime onnx."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from clirun import cli, fails, ok

from soundnet.cli import EXPORT_FORMATS
from soundnet.dataset import Dataset
from soundnet.export import FORMATS, calibration_set, export_model, training_entries, validation_entries
from soundnet.litert import LiteRTPredictor
from soundnet.onnxrt import CARD_KEY, SOURCE_KEY, ONNXPredictor, metadata
from soundnet.run import file_digest, read_card


def run_copy(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained.run, copy)
    return copy


def windows(card, count=6, seed=0):
    """Normalised-feature-like windows (b, window, features) with a known seed."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, card.model.window, card.features.n_features)).astype(np.float32)


def keras_probabilities(run, card, x):
    from soundnet.backend import quiet_import_keras

    quiet_import_keras()
    from soundnet.model import predict_fn
    from soundnet.run import load_keras_model

    return predict_fn(load_keras_model(run, card), n_mfcc=card.features.n_mfcc)(x)


def test_cli_formats_are_the_library_formats():
    assert EXPORT_FORMATS == FORMATS


def test_onnx_export_computes_the_keras_function(trained, tmp_path):
    out = tmp_path / "net.onnx"
    result = ok(cli("export", trained.run, "--format", "onnx", "--out", out, "--report", tmp_path / "report.json"))
    assert f"{out}: onnx, {out.stat().st_size:,} bytes" in result.stdout
    card = read_card(trained.run)
    x = windows(card, count=7)  # a batch size the export never saw
    onnx_probs = ONNXPredictor(out, n_mfcc=card.features.n_mfcc, window=card.model.window)(x)
    assert onnx_probs.shape == (7, card.model.window)
    assert np.max(np.abs(onnx_probs - keras_probabilities(trained.run, card, x))) <= 1e-5
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["format"] == "onnx" and report["bytes"] == out.stat().st_size
    accuracy = report["accuracy"]
    assert accuracy["files"] == card.validation["split"]["validation_files"]
    assert accuracy["max_abs_difference"] <= 1e-5
    assert accuracy["exported"] == pytest.approx(accuracy["reference"], abs=1e-9)
    meta = metadata(out)
    assert meta[SOURCE_KEY] == file_digest(trained.run / "model.keras")
    board = json.loads(meta[CARD_KEY])
    assert board["target"] == card.target and board["normalisation"]["mean"] == pytest.approx(card.mean.tolist())


def test_tflite_export_is_the_runs_litert_network_with_fewer_bytes(trained, tmp_path):
    out = tmp_path / "net.tflite"
    report = export_model(trained.run, format="tflite", out=out)
    assert report.bytes == out.stat().st_size < (trained.run / "model.tflite").stat().st_size  # inner names stripped
    card = read_card(trained.run)
    x = windows(card)
    shape = {"n_mfcc": card.features.n_mfcc, "window": card.model.window}
    np.testing.assert_allclose(
        LiteRTPredictor(out, **shape)(x), LiteRTPredictor(trained.run / "model.tflite", **shape)(x), atol=1e-6
    )
    assert report.accuracy.max_abs_difference <= 1e-5 and report.calibration_windows == 0


def test_int8_export_is_full_integer_and_close_to_float(trained, tmp_path):
    out = tmp_path / "net.int8.tflite"
    result = ok(
        cli(
            "export",
            trained.run,
            "--format",
            "tflite-int8",
            "--out",
            out,
            "--calibration-windows",
            64,
            "--report",
            tmp_path / "r.json",
        )
    )
    assert "calibrated on 64 training windows" in result.stdout
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out))
    assert {d["dtype"] for d in interpreter.get_input_details() + interpreter.get_output_details()} == {np.int8}
    weights = [d for d in interpreter.get_tensor_details() if d["name"] == ""]  # stripped inner tensors
    assert {d["dtype"] for d in weights} <= {np.int8, np.int32}, "a float tensor left: not full-integer"
    card = read_card(trained.run)
    x = calibration_set(Dataset.open(trained.data), card, count=32, seed=1)  # real windows, as detect sees them
    int8 = LiteRTPredictor(out, n_mfcc=card.features.n_mfcc, window=card.model.window)(x)
    reference = keras_probabilities(trained.run, card, x)
    assert np.mean(np.abs(int8 - reference)) < 0.03
    accuracy = json.loads((tmp_path / "r.json").read_text())["accuracy"]
    assert abs(accuracy["f1_change"]) <= 0.1 and abs(accuracy["exported"]["frame_ap"] - accuracy["reference"]["frame_ap"]) < 0.05
    assert out.stat().st_size < (trained.run / "model.tflite").stat().st_size


def test_int16x8_export_is_integer_only_and_closer_to_float(trained, tmp_path):
    out = tmp_path / "net.16x8.tflite"
    report = export_model(trained.run, format="tflite-int16x8", out=out, calibration_windows=64)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out))
    assert {d["dtype"] for d in interpreter.get_input_details() + interpreter.get_output_details()} == {np.int16}
    card = read_card(trained.run)
    x = calibration_set(Dataset.open(trained.data), card, count=32, seed=1)
    int16 = LiteRTPredictor(out, n_mfcc=card.features.n_mfcc, window=card.model.window)(x)
    assert np.mean(np.abs(int16 - keras_probabilities(trained.run, card, x))) < 0.005
    assert report.calibration_windows == 64 and abs(report.accuracy.f1_change) <= 0.05


def test_calibration_windows_come_from_the_training_files(trained):
    card = read_card(trained.run)
    data = Dataset.open(trained.data)
    train = training_entries(data, card)
    assert train and {e.source for e in train} == set(card.training["files"])
    assert not {e.source for e in train} & set(card.validation["files"])
    x = calibration_set(data, card, count=10_000, seed=0)  # more than there are: all of them
    per_file = [len(range(0, e.frames - card.model.window + 1, card.training["config"]["stride"])) for e in train]
    assert len(x) >= sum(per_file) and np.isfinite(x).all()
    assert abs(float(x[..., : card.features.n_mfcc].mean())) < 0.5  # normalised with the card's statistics


def test_accuracy_is_measured_on_trainings_validation_files_after_tuning_on_other_audio(trained):
    card = read_card(trained.run)
    data = Dataset.open(trained.data)
    held_out = validation_entries(data, card)
    assert held_out and {e.source for e in held_out} == set(card.validation["files"])
    tuned = dataclasses.replace(card, validation={"files": {"elsewhere.wav": {}}, "training_validation": card.validation})
    assert validation_entries(data, tuned) == held_out


def test_detect_runtime_onnx_gives_the_keras_events(trained, tmp_path):
    run = run_copy(trained, tmp_path)
    ok(cli("export", run, "--format", "onnx", "--out", run / "model.onnx"))
    clip = trained.test / "clip_01.wav"
    outputs = {}
    for runtime in ("keras", "onnx"):
        frames = tmp_path / f"{runtime}.npy"
        outputs[runtime] = ok(
            cli("detect", clip, "--model", run, "--runtime", runtime, "--format", "tsv", "--frames", frames)
        ).stdout
        outputs[runtime + "_frames"] = np.load(frames)
    assert outputs["onnx"] == outputs["keras"] and len(outputs["keras"].splitlines()) >= 2  # a header and events
    np.testing.assert_allclose(outputs["onnx_frames"], outputs["keras_frames"], atol=1e-5)


def test_detect_runtime_onnx_refuses_another_runs_network(trained, tmp_path):
    run = run_copy(trained, tmp_path)
    ok(cli("export", run, "--format", "onnx", "--out", run / "model.onnx"))
    import onnx

    graph = onnx.load(str(run / "model.onnx"))
    for entry in graph.metadata_props:
        if entry.key == SOURCE_KEY:
            entry.value = "0" * 64
    onnx.save(graph, str(run / "model.onnx"))
    clip = trained.test / "clip_01.wav"
    fails(
        cli("detect", clip, "--model", run, "--runtime", "onnx"),
        f"{run / 'model.onnx'}: not exported from this run's model.keras",
    )


def test_detect_runtime_onnx_without_the_file(trained, tmp_path):
    fails(
        cli("detect", trained.test / "clip_01.wav", "--model", trained.run, "--runtime", "onnx"),
        f"{trained.run}: no model.onnx for the ONNX runtime",
        "soundnet export",
    )


def test_export_errors_are_one_line(trained, tmp_path):
    (tmp_path / "empty").mkdir()
    fails(
        cli("export", tmp_path / "empty", "--format", "onnx", "--out", tmp_path / "x.onnx"),
        "not a soundnet model folder (no card.json)",
    )
    fails(cli("export", trained.run, "--format", "tflite16", "--out", tmp_path / "x"), "'tflite16' is not one of", code=2)
    run = run_copy(trained, tmp_path)
    before = (run / "model.tflite").read_bytes()
    fails(cli("export", run, "--format", "tflite", "--out", run / "model.tflite"), "is the run's own model.tflite")
    assert (run / "model.tflite").read_bytes() == before
    card = json.loads((run / "card.json").read_text())
    card["training"]["dataset"] = str(tmp_path / "gone")
    (run / "card.json").write_text(json.dumps(card))
    fails(
        cli("export", run, "--format", "tflite-int8", "--out", tmp_path / "q.tflite"),
        "tflite-int8 calibration needs the run's training windows",
        "give --dataset",
    )
    assert not (tmp_path / "q.tflite").exists()
    # the dataset given by hand, and a float export without it (no accuracy, said so)
    ok(
        cli(
            "export",
            run,
            "--format",
            "tflite-int8",
            "--out",
            tmp_path / "q.tflite",
            "--dataset",
            trained.data,
            "--calibration-windows",
            8,
        )
    )
    result = ok(cli("export", run, "--format", "tflite", "--out", tmp_path / "f.tflite"))
    assert "accuracy not measured" in result.stdout and (tmp_path / "f.tflite").is_file()


def test_library_refuses_an_unknown_format(trained, tmp_path):
    from soundnet.errors import UsageError

    with pytest.raises(
        UsageError, match="format must be one of onnx, tflite, tflite-int8, tflite-int16x8. Received: format='tf'"
    ):
        export_model(trained.run, format="tf", out=tmp_path / "x")
