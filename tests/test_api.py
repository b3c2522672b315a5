"""The Python API alone, as a notebook user drives it: synth -> extract -> train ->
detect -> evaluate -> tune, with typed results, and nothing from the command line.

The walk-through is docs/api.md itself: its Python blocks run in order, in this
process, in a fresh folder (so the document cannot go stale), and the tests below
check what each step returned and wrote, then call the API again on its run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import soundnet

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
SR = 16000


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The namespace of docs/api.md's examples, run in a fresh folder; and that folder."""
    blocks = re.findall(r"```python\n(.*?)```", API_DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 8, "docs/api.md lost its examples"
    root = tmp_path_factory.mktemp("api")
    namespace: dict = {"__name__": "api_doc"}
    here = os.getcwd()
    os.chdir(root)  # contextlib.chdir needs Python 3.11
    try:
        exec(compile("\n".join(blocks), str(API_DOC), "exec"), namespace)
    finally:
        os.chdir(here)
    return root, namespace


def test_synthesize_and_extract_return_typed_results(demo):
    _, ns = demo
    assert ns["events"] and all(isinstance(e, soundnet.Event) and e.label == "beep" for e in ns["events"])
    extracted = ns["extracted"]
    assert isinstance(extracted, soundnet.ExtractReport)
    assert extracted.target == "beep" and len(extracted.extracted) == 16 and not extracted.failures


def test_train_writes_a_run_whose_card_tells_its_validation(demo):
    root, ns = demo
    result = ns["result"]
    assert isinstance(result, soundnet.TrainResult)
    assert result.run == Path("soundnet-demo") / "runs" / "beep" and 1 <= result.epochs <= 6
    card = soundnet.read_card(root / result.run)
    assert card.to_json()["training"] == result.card.to_json()["training"]
    assert set(card.checksums) == {"model.keras", "model.tflite"}
    assert 0 <= card.validation["event_onset"]["f_measure"] <= 1
    assert soundnet.load_model(root / result.run).count_params() == 38788
    log = (root / result.run / "train.log").read_text(encoding="utf-8")
    assert "training files" in log and "epoch 1/6" in log and "validation: event F1" in log  # whatever the caller's logging


def test_detect_finds_the_planted_events(demo):
    _, ns = demo
    report = ns["report"]
    assert isinstance(report, soundnet.DetectReport) and not report.failures
    assert [d.name for d in report.detections] == [f"mixture_{i:04d}.wav" for i in range(6)]
    detection = report.detections[0]
    assert isinstance(detection, soundnet.Detection)
    assert detection.probabilities.dtype == np.float32 and len(detection.probabilities) == 1 + 4 * SR // 160
    assert report.text.startswith("mixture_0000.wav: ")  # the readable report, as detect prints it
    assert sum(len(d.events) for d in report.detections) >= 3, [d.events for d in report.detections]


def test_detect_writes_what_an_output_plan_asks_for(demo):
    root, ns = demo
    assert ns["written"].text is None  # everything went to files
    tables = root / "soundnet-demo" / "tables"
    assert sorted(p.name for p in tables.iterdir()) == [f"mixture_{i:04d}.selections.txt" for i in range(6)]
    assert sorted(p.name for p in (root / "soundnet-demo" / "frames").iterdir()) == [f"mixture_{i:04d}.npy" for i in range(6)]
    header, *rows = (tables / "mixture_0000.selections.txt").read_text().splitlines()
    high = header.split("\t").index("High Freq (Hz)")
    assert rows and all(row.split("\t")[high] == "8000" for row in rows)


def test_evaluate_scores_match_the_table_scored_directly(demo, tmp_path):
    root, ns = demo
    work = root / "soundnet-demo"
    table, run = work / "test" / "annotations.tsv", work / "runs" / "beep"
    evaluation = soundnet.evaluate(work / "test", annotations=table, model=run)
    assert isinstance(evaluation, soundnet.Evaluation) and evaluation.target == "beep"
    assert evaluation.frame is not None and evaluation.frame.average_precision > 0.5
    assert set(evaluation.scores.files) == {f"mixture_{i:04d}.wav" for i in range(6)}
    estimated = tmp_path / "estimated.tsv"
    report = soundnet.detect(work / "test", model=run, outputs=soundnet.OutputPlan(fmt="tsv", output=estimated))
    assert report.detections and report.text is None
    again = soundnet.evaluate_table(work / "test", estimated, annotations=table)
    assert again.scores == evaluation.scores
    assert json.loads(json.dumps(evaluation.to_json()))["event_onset"]["f_measure"] == evaluation.scores.event_onset.f_measure


def test_tune_searches_and_writes_the_card(demo, tmp_path):
    root, ns = demo
    assert isinstance(ns["tuning"], soundnet.Tuning)
    work = root / "soundnet-demo"
    run = tmp_path / "run"
    shutil.copytree(work / "runs" / "beep", run)
    card = soundnet.read_card(run)
    bad = dataclasses.replace(card, postprocessing=soundnet.PostConfig(threshold=0.99, min_duration=2.0))
    from soundnet.run import write_card

    write_card(run, bad)
    table = work / "test" / "annotations.tsv"
    tuning = soundnet.tune(run, work / "test", annotations=table)
    assert soundnet.read_card(run).postprocessing == tuning.post != bad.postprocessing
    after = soundnet.evaluate(work / "test", annotations=table, model=run)
    assert after.scores.event_onset == tuning.scores.event_onset
    assert tuning.scores.event_onset.f_measure >= (tuning.baseline.event_onset.f_measure or 0.0)


def test_errors_are_soundnet_errors(tmp_path):
    with pytest.raises(soundnet.SoundnetError, match="no such file or folder"):
        soundnet.detect(tmp_path / "missing.wav")
    with pytest.raises(AttributeError):
        soundnet.no_such_name  # noqa: B018


def test_import_is_light_and_registers_the_layer_for_keras():
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
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("38788")


def test_modules_are_reachable_as_attributes_and_cards_print_short(demo):
    root, ns = demo
    assert soundnet.tuning.GRID["threshold"] and soundnet.scoring.Scores and soundnet.batch.Failure
    shown = repr(ns["tuning"]) + repr(ns["result"].card)
    assert "mean=" not in shown and "std=" not in shown and len(repr(ns["tuning"])) < 2500


def test_export_model_writes_an_onnx_network_detect_runs(demo):
    _, ns = demo
    exported = ns["exported"]
    assert isinstance(exported, soundnet.ExportReport) and exported.format == "onnx"
    assert exported.accuracy.max_abs_difference <= 1e-5 and exported.accuracy.f1_change == 0
    assert len(ns["onnx_detection"].probabilities) == 401  # 4 s at 10 ms frames


def test_every_public_name_resolves():
    assert set(soundnet.__all__) == {"__version__", "load_model", *soundnet._EXPORTS}
    for name in soundnet.__all__:
        assert getattr(soundnet, name) is not None, name


def test_cli_output_formats_are_the_library_formats():
    from soundnet.cli import OUTPUT_FORMATS
    from soundnet.outputs import OUTPUT_FORMATS as LIBRARY_FORMATS

    assert OUTPUT_FORMATS == LIBRARY_FORMATS
