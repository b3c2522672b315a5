"""Outputs never destroy inputs: every such case is refused before any work, exit 2,
one line naming the output and the input, and the input byte-identical afterwards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from clirun import cli, fails

SR = 16000


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def recordings(tmp_path):
    """A folder with two 1-s WAVs, an Audacity label file beside one, and a DCASE table."""
    folder = tmp_path / "rec"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.wav", "b.wav"):
        sf.write(folder / name, (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)
    (folder / "a.txt").write_text("0.1\t0.4\tbeep\n")
    table = tmp_path / "gt.tsv"
    table.write_text("filename\tonset\toffset\tevent_label\na.wav\t0.1\t0.4\tbeep\nb.wav\n")
    return folder, table


@pytest.mark.parametrize(
    "given, option, target, kind",
    [
        ("rec/a.wav", "--output", "rec/a.wav", "is"),
        ("rec/a.wav", "--frames", "rec/a.wav", "is"),
        ("rec/a.wav", "--plot", "rec/a.wav", "is"),
        ("rec/a.wav", "--output", "rec/a.txt", "is"),
        ("rec", "--output", "rec/b.txt", "is"),  # the label file b.wav may have, even before it exists
    ],
)
def test_detect_output_replacing_an_input_is_refused(recordings, tmp_path, given, option, target, kind):
    folder, _ = recordings
    files = sorted(folder.iterdir())
    before = {p: _digest(p) for p in files}
    args = ["detect", tmp_path / given, option, tmp_path / target]
    fails(cli(*args), str(tmp_path / target), option, kind, "which this command reads", code=2)
    assert {p: _digest(p) for p in sorted(folder.iterdir())} == before


def test_detect_output_dir_onto_the_audio_folder_keeps_the_users_labels(recordings):
    folder, _ = recordings
    labels = _digest(folder / "a.txt")
    fails(cli("detect", folder, "--format", "audacity", "--output-dir", folder), "a.txt", "--output-dir", code=2)
    assert _digest(folder / "a.txt") == labels


def test_evaluate_output_replacing_the_reference_is_refused(recordings):
    folder, table = recordings
    reference = _digest(table)
    fails(cli("evaluate", folder, "-a", table, "--target", "beep", "--output", table), str(table), "--output", code=2)
    assert _digest(table) == reference


def test_evaluate_table_output_replacing_the_estimate_is_refused(recordings, tmp_path):
    folder, table = recordings
    estimated = tmp_path / "est.tsv"
    estimated.write_text("filename\tonset\toffset\tevent_label\na.wav\t0.1\t0.4\tbeep\n")
    mine = _digest(estimated)
    fails(
        cli("evaluate", folder, "--annotations", table, "--estimated", estimated, "--output", estimated),
        str(estimated),
        code=2,
    )
    assert _digest(estimated) == mine


def test_extract_into_the_audio_folder_is_refused(recordings):
    folder, table = recordings
    fails(cli("extract", folder, "--annotations", table, "--out", folder), str(folder), "--out", "holds", code=2)
    assert not (folder / "manifest.json").exists() and not (folder / "files").exists()


def test_train_out_holding_the_dataset_or_a_project_is_refused(recordings, tmp_path):
    folder, table = recordings
    project = tmp_path / "project"
    data = project / "data"
    ok_extract = cli("extract", folder, "--annotations", table, "--out", data)
    assert ok_extract.exit_code == 0, ok_extract.stderr
    (project / "notes.txt").write_text("my notes\n")
    fails(cli("train", data, "--out", project), str(project), "holds", "--out")
    fails(cli("train", data, "--out", data), str(data), "--out")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("keep\n")
    fails(cli("train", data, "--out", other), str(other), "not a soundnet run")
    assert (project / "notes.txt").read_text() == "my notes\n" and (other / "keep.txt").is_file()
    assert (data / "manifest.json").is_file()


def test_synth_out_inside_or_holding_a_clip_folder_is_refused(tmp_path):
    clips, noise = tmp_path / "clips" / "beep", tmp_path / "noise"
    for folder in (clips, noise):
        folder.mkdir(parents=True)
        sf.write(folder / "x.wav", np.zeros(SR, np.float32) + 0.01, SR)
    base = ["synth", "--events", clips, "--backgrounds", noise, "-n", 1, "--duration", 2.0]
    fails(cli(*base, "--out", clips / "mix"), "inside", str(clips), code=2)
    fails(cli(*base, "--out", tmp_path), "--out", "holds", code=2)
    assert sorted(p.name for p in clips.iterdir()) == ["x.wav"]


@pytest.mark.parametrize("names", [("x.wav", "x.flac"), ("sub/a.wav", "sub__a.wav")])
def test_per_file_outputs_that_would_collide_are_refused_before_work(tmp_path, names):
    folder = tmp_path / "in"
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / name, np.zeros(SR, np.float32), SR)
    out = tmp_path / "labels"
    fails(cli("detect", folder, "--format", "audacity", "--output-dir", out), *names, code=2)
    assert not out.exists()


def test_a_fifo_never_hangs_detect(recordings, tmp_path):
    """Inside a folder a FIFO is skipped with a note and the good files are done; named
    explicitly it is refused at once (a reader would wait on it for ever)."""
    import os
    import subprocess

    from clirun import child_env, soundnet

    folder, _ = recordings
    os.mkfifo(folder / "stream.wav")
    done = subprocess.run(soundnet("detect", folder), env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "a.wav: 0 event(s)" in done.stdout and "b.wav" in done.stdout
    assert "stream.wav: skipped (named pipe (FIFO), not an audio file)" in done.stderr
    done = subprocess.run(soundnet("detect", folder / "stream.wav"), env=child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "stream.wav: a named pipe (FIFO), not an audio file" in done.stderr
    assert "Traceback" not in done.stderr


def test_file_names_that_are_not_utf8_are_processed_and_printed_escaped(tmp_path):
    """A name with a Latin-1 byte (and one with a tab) is read, extracted and reported
    with escapes; the good files beside it are done too; no traceback."""
    import os

    from clirun import ok

    folder = tmp_path / "in"
    folder.mkdir()
    latin = os.fsdecode(b"caf\xe9.wav")
    for name in (latin, "tab\there.wav", "plain.wav"):
        sf.write(os.fsencode(folder / name), np.full(SR, 0.01, np.float32), SR)
        (folder / name).with_suffix(".txt").write_text("0.1\t0.3\tbeep\n")
    detected = ok(cli("detect", folder, "--format", "tsv"))
    lines = detected.stdout.splitlines()
    assert lines == ["filename\tonset\toffset\tevent_label", "caf\\xe9.wav", "plain.wav", "tab\\there.wav"]
    extracted = ok(cli("extract", folder, "--out", tmp_path / "data"))
    assert "3 file(s) extracted" in extracted.stderr
    assert '"source"' in (tmp_path / "data" / "manifest.json").read_text(encoding="utf-8")


def test_train_out_on_a_run_holding_the_users_files_is_refused(recordings, tmp_path):
    """A run folder is replaced whole by a new training: one that also holds the user's
    files (a detections table, a reviewed table) is refused before any work, untouched."""
    import shutil

    from soundnet.run import RUN_FILES

    folder, table = recordings
    data = tmp_path / "data"
    assert cli("extract", folder, "--annotations", table, "--out", data).exit_code == 0
    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parents[1] / "soundnet" / "models" / "default", run)
    assert {p.name for p in run.iterdir()} <= RUN_FILES
    (run / "reviewed.tsv").write_text("filename\tonset\toffset\tdecision\n")
    (run / "notes").mkdir()
    before = {p.name: _digest(p) for p in run.iterdir() if p.is_file()}
    fails(cli("train", data, "--out", run), str(run), "notes, reviewed.tsv", "--out", code=1)
    assert {p.name: _digest(p) for p in run.iterdir() if p.is_file()} == before and (run / "notes").is_dir()
    assert not (tmp_path / "run.partial").exists()


def test_a_file_put_into_the_run_during_training_stops_the_replacement(tmp_path):
    """Files that came into the old run while training ran: the new run waits beside it."""
    import shutil

    from soundnet.errors import SoundnetError
    from soundnet.run import replace_run

    default = Path(__file__).parents[1] / "soundnet" / "models" / "default"
    run, partial = tmp_path / "run", tmp_path / "run.partial"
    shutil.copytree(default, run)
    shutil.copytree(default, partial)
    (run / "detections.csv").write_text("filename,onset,offset\n")
    with pytest.raises(SoundnetError, match=r"detections\.csv.*the finished new run is .*run\.partial: once .* rename it"):
        replace_run(partial, run)
    assert (run / "detections.csv").is_file() and (partial / "card.json").is_file()
    (run / "detections.csv").unlink()
    old = tmp_path / "run.old"  # a stopped replacement's leftover holding the user's file is never deleted
    shutil.copytree(default, old)
    (old / "mine.txt").write_text("mine\n")
    with pytest.raises(SoundnetError, match="run.old: in the way of replacing .*a soundnet run that also holds mine.txt"):
        replace_run(partial, run)
    assert (old / "mine.txt").is_file()
    shutil.rmtree(old)
    (run / ".DS_Store").write_bytes(b"\0")  # a file browser's clutter and a killed writer's temporary are no one's data
    (run / ".part-4194000-abcdefgh-card.json").write_text("{")
    replace_run(partial, run)
    assert (run / "card.json").is_file() and not partial.exists() and not old.exists()


def test_tensorboard_logs_inside_the_run_are_refused_before_work(recordings, tmp_path):
    folder, table = recordings
    data = tmp_path / "data"
    assert cli("extract", folder, "--annotations", table, "--out", data).exit_code == 0
    run = tmp_path / "run"
    fails(cli("train", data, "--out", run, "--tensorboard", run / "tb"), str(run / "tb"), "inside --out", code=1)
    assert not run.exists() and not (tmp_path / "run.partial").exists()
