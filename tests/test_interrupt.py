"""Interrupted runs (issue 6): ``kill -9`` in the middle of extract and train.

Nothing half-written may be trusted afterwards, and running the command again (with
``--resume`` for train) finishes the work without redoing what was complete.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import sed_eval
from clirun import child_env, cli, fails, ok, soundnet
from planted import planted_set

from soundnet.formats import read_events


# a real process running this checkout's soundnet (after any path already given)
def kill_when(command: list[str], ready, *, log: Path, timeout: float) -> None:
    """Start ``command``, SIGKILL it as soon as ``ready()`` holds."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=log.parent)
        try:
            limit = time.monotonic() + timeout
            while not ready():
                if process.poll() is not None:
                    raise AssertionError(f"ended (exit {process.returncode}) before it could be killed:\n{log.read_text()}")
                if time.monotonic() > limit:
                    raise AssertionError(f"not ready after {timeout} s:\n{log.read_text()}")
                time.sleep(0.01)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == -signal.SIGKILL


# ---------------------------------------------------------------------------------
# extract


def trusted_entries(dataset: Path) -> dict[str, dict]:
    """Entry JSONs of a dataset's recordings, each (and each augmented copy's) checked
    complete against its arrays."""
    entries = {}
    # final names only: pathlib's * also matches a killed writer's ".part-..." temporary, which is never trusted
    for meta_path in sorted(p for p in (dataset / "files").glob("*.json") if not p.name.startswith(".")):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        entry = meta["entry"]
        features = np.load(dataset / "files" / f"{entry['id']}.features.npy")
        labels = np.load(dataset / "files" / f"{entry['id']}.labels.npy")
        assert features.shape == (entry["frames"], 129) and features.dtype == np.float32, meta_path
        assert labels.shape == (entry["frames"],) and int(labels.sum()) == entry["positive_frames"], meta_path
        assert np.isfinite(features).all(), meta_path
        assert {"fingerprint", "events"} <= set(meta), meta_path
        if not entry.get("copy"):
            entries[entry["id"]] = meta
    return entries


def test_killed_extract_leaves_nothing_half_written_and_resumes(tmp_path):
    table, _ = planted_set(tmp_path / "audio", files=12, seconds=20.0, seed=3)
    data = tmp_path / "data"
    files = data / "files"

    def two_entries() -> bool:
        return files.is_dir() and len([p for p in files.glob("*.json") if not p.name.startswith(".")]) >= 2

    command = soundnet("extract", tmp_path / "audio", "--annotations", table, "--out", data, "--jobs", "1")
    kill_when(command, two_entries, log=tmp_path / "extract.log", timeout=300)

    finished = trusted_entries(data)
    assert 2 <= len(finished) < 12, "the kill came too late to interrupt anything"
    for path in files.iterdir():  # whatever carries a final name is whole; temporaries start with "."
        if path.name.startswith("."):
            assert path.name.startswith(".part-"), path
        elif path.suffix == ".npy":
            np.load(path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    assert not (data / "manifest.json").exists()
    # an unfinished dataset is not trained on
    fails(cli("train", data, "--out", tmp_path / "run"), "manifest.json")

    written = {
        path: path.stat().st_mtime_ns
        for entry_id in finished
        for path in (files / f"{entry_id}.features.npy", files / f"{entry_id}.labels.npy", files / f"{entry_id}.json")
    }
    result = ok(cli("extract", tmp_path / "audio", "--annotations", table, "--out", data, "--jobs", "1"))
    assert f"{12 - len(finished)} file(s) extracted, {len(finished)} unchanged" in result.stderr, result.stderr
    assert {path: path.stat().st_mtime_ns for path in written} == written
    assert len(trusted_entries(data)) == 12
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["files"] == 12


# ---------------------------------------------------------------------------------
# train


CONFIG = "training:\n  batch_size: 16\n  learning_rate: 0.003\n  patience: 10\n"
TRAIN_OPTIONS = ("--epochs", 6, "--seed", 3)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """Train for 6 epochs, kill -9 after the 2nd, resume; returns what was seen."""
    root = tmp_path_factory.mktemp("interrupted")
    # as small as keeps the test meaningful: an epoch takes about a second, the two
    # process starts, the first epoch's compilation and the export take the rest
    table, truth = planted_set(root / "audio", files=4, seconds=6.0, seed=2, empty_every=0)
    ok(cli("extract", root / "audio", "--annotations", table, "--out", root / "data"))
    config = root / "fast.yaml"
    config.write_text(CONFIG)
    run, partial = root / "run", root / "run.partial"
    history = partial / "history.csv"

    def two_epochs() -> bool:
        return history.is_file() and len(history.read_text().splitlines()) >= 3

    command = soundnet("train", root / "data", "--out", run, "--config", config, *TRAIN_OPTIONS)
    kill_when(command, two_epochs, log=root / "killed.log", timeout=400)
    seen = {
        "run_existed": run.exists(),
        "partial": sorted(p.name for p in partial.iterdir()),
        "epochs_done": json.loads((partial / "progress.json").read_text())["epochs_done"],
    }
    shutil.copytree(partial, root / "spare.partial")  # for the damaged-checkpoint tests
    # A kill between the history row of an epoch and its checkpoint leaves one row too
    # many: make sure that case is in (resume must drop the row and redo the epoch).
    with open(history, "a") as f:
        f.write(f"{seen['epochs_done']},9.999,0.0,9.999\n")
    resumed = subprocess.run(
        soundnet("train", root / "data", "--out", run, "--config", config, *TRAIN_OPTIONS, "--resume"),
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=root,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    return {"root": root, "run": run, "config": config, "truth": truth, "resumed": resumed, **seen}


def test_killed_training_leaves_only_a_partial_folder(interrupted):
    assert not interrupted["run_existed"]
    assert interrupted["epochs_done"] >= 1
    assert "card.json" not in interrupted["partial"]
    assert {"state.json", "history.csv", "progress.json"} <= set(interrupted["partial"])


def test_resume_continues_from_the_last_completed_epoch(interrupted):
    done = interrupted["epochs_done"]
    log = interrupted["resumed"].stderr
    assert f"resuming after epoch {done}" in log, log
    assert "epoch 1/6" not in log, log  # nothing redone
    assert f"epoch {done + 1}/6" in log and "epoch 6/6" in log, log
    with open(interrupted["run"] / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == list(range(6))
    assert all(float(row["loss"]) != 9.999 for row in rows)


def test_resumed_run_folder_is_complete(interrupted):
    run = interrupted["run"]
    names = {p.name for p in run.iterdir()}
    assert {"model.keras", "model.tflite", "card.json", "history.csv", "train.log"} <= names
    assert not names & {"state.json", "progress.json", "last.keras"}
    assert not [name for name in names if name.startswith(("best-", ".tmp-"))], names
    assert not (run.parent / "run.partial").exists()
    card = json.loads((run / "card.json").read_text())
    assert card["training"]["epochs_run"] == 6


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


def test_resumed_model_detects_the_planted_events(interrupted, tmp_path):
    out = tmp_path / "events.tsv"
    ok(cli("detect", interrupted["root"] / "audio", "--model", interrupted["run"], "--format", "tsv", "--output", out))
    assert onset_f1(interrupted["truth"], read_events(out, "tsv")) >= 0.8


def test_resume_without_an_interrupted_run(interrupted, tmp_path):
    root = interrupted["root"]
    fails(cli("train", root / "data", "--out", tmp_path / "never", "--resume"), "nothing to resume")
    # a finished run has nothing to resume either
    args = ("train", root / "data", "--out", interrupted["run"], "--config", interrupted["config"], *TRAIN_OPTIONS, "--resume")
    fails(cli(*args), "nothing to resume")
    assert (interrupted["run"] / "card.json").is_file()


def spare(interrupted, tmp_path: Path) -> Path:
    partial = tmp_path / "again.partial"
    shutil.copytree(interrupted["root"] / "spare.partial", partial)
    return partial


def resume(interrupted, out: Path, *extra):
    root = interrupted["root"]
    return cli("train", root / "data", "--out", out, "--config", interrupted["config"], *TRAIN_OPTIONS, *extra, "--resume")


def test_resume_with_other_options_is_refused(interrupted, tmp_path):
    partial = spare(interrupted, tmp_path)
    root = interrupted["root"]
    result = cli(
        "train",
        root / "data",
        "--out",
        tmp_path / "again",
        "--config",
        interrupted["config"],
        "--epochs",
        7,
        "--seed",
        3,
        "--resume",
    )
    fails(result, str(partial), "another config")


@pytest.mark.parametrize(
    "damaged",
    [
        "progress.json",
        "state.json",
        "last.keras",
    ],
)
def test_resume_with_a_damaged_checkpoint(interrupted, tmp_path, damaged):
    """A checkpoint damaged after the fact (not by a kill: writes are atomic) is a one-line error."""
    partial = spare(interrupted, tmp_path)
    target = partial / damaged
    target.write_bytes(target.read_bytes()[: max(1, target.stat().st_size // 2)])
    fails(resume(interrupted, tmp_path / "again"), str(target))


def test_resume_after_the_last_epoch_finishes_the_run(interrupted, tmp_path):
    """Killed after the last epoch's checkpoint, while tuning or exporting, with a checkpoint
    temporary half-written by an earlier kill: resume finishes a clean run folder."""
    partial = spare(interrupted, tmp_path)
    progress = json.loads((partial / "progress.json").read_text())
    progress["epochs_done"] = 6
    (partial / "progress.json").write_text(json.dumps(progress))
    (partial / ".tmp-best.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(88))  # what a kill in save_weights leaves
    ok(resume(interrupted, tmp_path / "again"))
    names = {p.name for p in (tmp_path / "again").iterdir()}
    assert {"model.keras", "model.tflite", "card.json", "history.csv"} <= names
    assert not [name for name in names if name.startswith(".")], names
    assert not partial.exists()
