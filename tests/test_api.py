"""The Python API alone, as a notebook user drives it: synth -> extract -> train ->
detect -> evaluate -> tune, with typed results, and nothing from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import soundnet

SR = 16000


def _write_clips(root: Path) -> tuple[Path, Path]:
    """Isolated 2 kHz beeps (the target) and noise backgrounds, as a user's clip folders."""
    rng = np.random.default_rng(0)
    beeps, backgrounds = root / "clips" / "beep", root / "clips" / "noise"
    beeps.mkdir(parents=True)
    backgrounds.mkdir(parents=True)
    for i in range(4):
        seconds = 0.4 + 0.1 * i
        t = np.arange(int(seconds * SR)) / SR
        ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
        sf.write(beeps / f"beep_{i}.wav", (0.5 * ramp * np.sin(2 * np.pi * (1900 + 50 * i) * t)).astype(np.float32), SR)
    for i in range(3):
        sf.write(backgrounds / f"noise_{i}.wav", (0.05 * rng.standard_normal(12 * SR)).astype(np.float32), SR)
    return beeps, backgrounds


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    beeps, backgrounds = _write_clips(root)
    events = soundnet.synthesize(beeps, backgrounds, root / "synth", n=16, duration=4.0, presence=0.9, ebrs=(6.0,), seed=1)
    report = soundnet.extract([root / "synth"], out=root / "data", annotations=root / "synth" / "annotations.tsv")
    config = soundnet.load_config(epochs=6, batch_size=16, seed=2)
    result = soundnet.train(root / "data", out=root / "run", config=config)
    soundnet.synthesize(beeps, backgrounds, root / "test", n=6, duration=4.0, presence=1.0, ebrs=(6.0,), seed=9)
    return root, events, report, result


def test_synthesize_and_extract_return_typed_results(pipeline):
    root, events, report, _ = pipeline
    assert events and all(isinstance(e, soundnet.Event) and e.label == "beep" for e in events)
    assert isinstance(report, soundnet.ExtractReport)
    assert report.target == "beep" and len(report.extracted) == 16 and not report.failures


def test_train_writes_a_run_whose_card_tells_its_validation(pipeline):
    root, _, _, result = pipeline
    assert isinstance(result, soundnet.TrainResult)
    assert result.run == root / "run" and 1 <= result.epochs <= 6
    card = soundnet.read_card(result.run)
    assert card.to_json() == result.card.to_json()
    assert set(card.checksums) == {"model.keras", "model.tflite"}
    assert 0 <= card.validation["event_onset"]["f_measure"] <= 1
    assert soundnet.load_model(result.run).count_params() == 38788


def test_detect_finds_the_planted_events(pipeline):
    root, *_ = pipeline
    report = soundnet.detect(root / "test", model=root / "run")
    assert isinstance(report, soundnet.DetectReport) and not report.failures
    assert [d.name for d in report.detections] == [f"mixture_{i:04d}.wav" for i in range(6)]
    detection = report.detections[0]
    assert isinstance(detection, soundnet.Detection)
    assert detection.probabilities.dtype == np.float32 and len(detection.probabilities) == 1 + 4 * SR // 160
    assert report.text.startswith("mixture_0000.wav: ")  # the readable report, as detect prints it
    found = sum(len(d.events) for d in report.detections)
    assert found >= 3, [d.events for d in report.detections]


def test_detect_writes_what_an_output_plan_asks_for(pipeline, tmp_path):
    root, *_ = pipeline
    plan = soundnet.OutputPlan(fmt="raven", output_dir=tmp_path / "tables", frames=tmp_path / "frames.npy")
    report = soundnet.detect([root / "test" / "mixture_0000.wav", root / "test" / "mixture_0001.wav"], model=root / "run", outputs=plan)
    assert report.text is None
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["mixture_0000.selections.txt", "mixture_0001.selections.txt"]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["mixture_0000.npy", "mixture_0001.npy"]
    header, *rows = (tmp_path / "tables" / "mixture_0000.selections.txt").read_text().splitlines()
    high = header.split("\t").index("High Freq (Hz)")
    assert all(row.split("\t")[high] == "8000" for row in rows)


def test_evaluate_scores_match_the_table_scored_directly(pipeline, tmp_path):
    root, *_ = pipeline
    table = root / "test" / "annotations.tsv"
    evaluation = soundnet.evaluate(root / "test", annotations=table, model=root / "run")
    assert isinstance(evaluation, soundnet.Evaluation) and evaluation.target == "beep"
    assert evaluation.frame is not None and evaluation.frame.average_precision > 0.5
    assert set(evaluation.scores.files) == {f"mixture_{i:04d}.wav" for i in range(6)}
    estimated = tmp_path / "estimated.tsv"
    report = soundnet.detect(root / "test", model=root / "run", outputs=soundnet.OutputPlan(fmt="tsv", output=estimated))
    assert report.detections
    again = soundnet.evaluate_table(root / "test", estimated, annotations=table)
    assert again.scores == evaluation.scores
    assert json.loads(json.dumps(evaluation.to_json()))["event_onset"]["f_measure"] == evaluation.scores.event_onset.f_measure


def test_tune_searches_and_writes_the_card(pipeline, tmp_path):
    import dataclasses
    import shutil

    root, *_ = pipeline
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    card = soundnet.read_card(run)
    bad = dataclasses.replace(card, postprocessing=soundnet.PostConfig(threshold=0.99, median_seconds=0.0))
    from soundnet.run import write_card

    write_card(run, bad)
    tuning = soundnet.tune(run, root / "test", annotations=root / "test" / "annotations.tsv")
    assert isinstance(tuning, soundnet.Tuning)
    assert soundnet.read_card(run).postprocessing == tuning.post != bad.postprocessing
    after = soundnet.evaluate(root / "test", annotations=root / "test" / "annotations.tsv", model=run)
    assert after.scores.event_onset == tuning.scores.event_onset
    assert tuning.scores.event_onset.f_measure >= (tuning.baseline.event_onset.f_measure or 0.0)


def test_errors_are_soundnet_errors(tmp_path):
    with pytest.raises(soundnet.SoundnetError, match="no such file or folder"):
        soundnet.detect(tmp_path / "missing.wav")
    with pytest.raises(AttributeError):
        soundnet.no_such_name  # noqa: B018


def test_import_is_light_and_registers_the_layer_for_keras(tmp_path):
    """``import soundnet`` loads neither TensorFlow nor librosa, yet a run's model.keras
    then loads with plain Keras (the custom layer registers when Keras is imported)."""
    model = Path(soundnet.__file__).parent / "models" / "default" / "model.keras"
    code = (
        "import sys, soundnet\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'librosa', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import keras\n"
        f"print(keras.saving.load_model({str(model)!r}).count_params())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("38788")


def test_every_public_name_resolves():
    assert set(soundnet.__all__) == {"__version__", "load_model", *soundnet._EXPORTS}
    for name in soundnet.__all__:
        assert getattr(soundnet, name) is not None, name


def test_cli_output_formats_are_the_library_formats():
    from soundnet.cli import OUTPUT_FORMATS
    from soundnet.outputs import OUTPUT_FORMATS as LIBRARY_FORMATS

    assert OUTPUT_FORMATS == LIBRARY_FORMATS
