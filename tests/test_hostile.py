"""Hostile inputs through the real command line (issue 6).

Every bad audio file, annotation table, config and model must give one line on stderr
naming the file (and line, for tables) and the problem, exit 1 (2 for usage errors)
and no traceback; odd but valid inputs work, and a batch goes on past bad files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from clirun import child_env, cli, explain, fails, no_traceback, ok
from planted import SR, planted_set, tone

# ---------------------------------------------------------------------------------
# Helpers


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def signal_1s(seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    """Quiet noise with a 2 kHz beep in the middle half."""
    rng = np.random.default_rng(0)
    y = 0.02 * rng.standard_normal(int(round(seconds * sr)))
    beep = tone(2000.0, seconds / 2, sr=sr)
    start = int(seconds * sr / 4)
    y[start : start + len(beep)] += beep
    return y.astype(np.float32)


def wav_bytes(y: np.ndarray, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, y, SR, format="WAV", subtype=subtype)
    return buffer.getvalue()


def with_sample(path: Path, value: float) -> None:
    y = signal_1s()
    y[100] = value
    sf.write(path, y, SR, subtype="FLOAT")


def frames_of(seconds: float) -> int:
    return 1 + int(round(seconds * SR)) // 160


# name -> (writer, fragment of the error)
BAD_AUDIO = {
    "empty.wav": (lambda p: p.write_bytes(b""), "cannot read audio (empty file, 0 bytes)"),
    "truncated_header.wav": (lambda p: p.write_bytes(wav_bytes(signal_1s())[:20]), "cannot read audio"),
    "text.wav": (lambda p: p.write_text("this is not audio, just text\n"), "cannot read audio"),
    "nan.wav": (lambda p: with_sample(p, np.nan), "NaN or infinite"),
    "inf.wav": (lambda p: with_sample(p, np.inf), "NaN or infinite"),
    "minus_inf.wav": (lambda p: with_sample(p, -np.inf), "NaN or infinite"),
}

# name -> (writer, duration in seconds)
GOOD_AUDIO = {
    "one_sample.wav": (lambda p: sf.write(p, signal_1s()[:1], SR), 1 / SR),
    "pcm_u8.wav": (lambda p: sf.write(p, signal_1s(), SR, subtype="PCM_U8"), 1.0),
    "pcm_24.wav": (lambda p: sf.write(p, signal_1s(), SR, subtype="PCM_24"), 1.0),
    "float32.wav": (lambda p: sf.write(p, signal_1s(), SR, subtype="FLOAT"), 1.0),
    "float64.wav": (lambda p: sf.write(p, signal_1s(), SR, subtype="DOUBLE"), 1.0),
    "six_channels.wav": (lambda p: sf.write(p, np.tile(signal_1s()[:, None], (1, 6)) / 2, SR), 1.0),
    "rate_8k.wav": (lambda p: sf.write(p, soxr.resample(signal_1s(), SR, 8000), 8000), 1.0),
    "rate_96k.wav": (lambda p: sf.write(p, soxr.resample(signal_1s(), SR, 96000), 96000), 1.0),
    "clip.flac": (lambda p: sf.write(p, signal_1s(), SR), 1.0),
    "clip.ogg": (lambda p: sf.write(p, signal_1s(), SR), 1.0),
    "name with spaces.wav": (lambda p: sf.write(p, signal_1s(), SR), 1.0),
    "ünïcödé_名前.wav": (lambda p: sf.write(p, signal_1s(), SR), 1.0),
}


def make(folder: Path, name: str, writer) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    writer(path)
    return path


# ---------------------------------------------------------------------------------
# The trained run and dataset are the session's (conftest.py ``trained``): never
# changed here, a test that damages a run or a dataset damages a copy.


def run_copy(trained, tmp_path: Path, *, tflite: bool = True) -> Path:
    copy = tmp_path / "run_copy"
    shutil.copytree(trained.run, copy)
    if not tflite:
        (copy / "model.tflite").unlink()
    return copy


def edit_card(run: Path, **changes) -> None:
    card = json.loads((run / "card.json").read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            card[key] = {**card[key], **value}
        else:
            card[key] = value
    (run / "card.json").write_text(json.dumps(card))


# ---------------------------------------------------------------------------------
# Audio through detect


@pytest.mark.parametrize("name", sorted(BAD_AUDIO))
def test_detect_refuses_bad_audio(trained, tmp_path, name):
    writer, problem = BAD_AUDIO[name]
    path = make(tmp_path, name, writer)
    fails(cli("detect", path, "--model", trained.run), str(path), problem)


@pytest.mark.parametrize("name", sorted(GOOD_AUDIO))
def test_detect_reads_odd_but_valid_audio(trained, tmp_path, name):
    writer, seconds = GOOD_AUDIO[name]
    path = make(tmp_path, name, writer)
    result = ok(cli("detect", path, "--model", trained.run))
    assert f"{name}: " in result.stdout and f"event(s) in {seconds:.2f} s" in result.stdout, result.stdout


def test_detect_cut_data_is_read_as_far_as_it_goes(trained, tmp_path):
    """A WAV cut in the middle of its data (the header promises 1 s) is what it holds:
    the samples that are there, detected like any file, not an error."""
    data = wav_bytes(signal_1s())
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: len(data) // 2])
    samples = (len(data) // 2 - 44) // 2  # after the 44-byte header, 16-bit samples
    result = ok(cli("detect", path, "--model", trained.run))
    assert "cut.wav: " in result.stdout and f"event(s) in {samples / SR:.2f} s" in result.stdout, result.stdout


def test_detect_silent_file_has_no_events(trained, tmp_path):
    path = tmp_path / "zeros.wav"
    sf.write(path, np.zeros(3 * SR, np.float32), SR)
    result = ok(cli("detect", path, "--model", trained.run))
    assert "zeros.wav: 0 event(s) in 3.00 s" in result.stdout
    # whatever the threshold: frames of digital silence cannot hold the target sound
    result = ok(cli("detect", path, "--model", trained.run, "--threshold", "0.001"))
    assert "zeros.wav: 0 event(s) in 3.00 s" in result.stdout


def test_detect_silent_file_in_a_batch_is_a_processed_file(trained, tmp_path):
    """Beside a file with sound, a silent one is neither a failure nor left out of the
    results: it appears in the event table as a file without events."""
    sf.write(tmp_path / "zeros.wav", np.zeros(3 * SR, np.float32), SR)
    sf.write(tmp_path / "sound.wav", signal_1s(), SR)
    out = tmp_path / "events.tsv"
    ok(cli("detect", tmp_path / "zeros.wav", tmp_path / "sound.wav", "--model", trained.run, "--format", "tsv", "--output", out))
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    assert ["zeros.wav"] in [row[:1] for row in rows if not any(row[1:])], rows
    assert any(row[0] == "sound.wav" and row[1] for row in rows), rows


def test_detect_stderr_holds_only_soundnet_lines(trained, tmp_path):
    """As a user sees it (a real process): the failure named on its line, and no library chatter."""
    good = make(tmp_path, "good.wav", lambda p: sf.write(p, signal_1s(), SR))
    bad = make(tmp_path, "bad.wav", BAD_AUDIO["text.wav"][0])
    command = [sys.executable, "-m", "soundnet.cli", "detect", str(good), str(bad), "--model", str(trained.run)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=child_env())
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{bad}: cannot read audio" in result.stderr
    foreign = [
        line
        for line in result.stderr.splitlines()
        if line.strip()
        and "good.wav: " not in line
        and str(bad) not in line
        and line != "soundnet: 1 of 2 file(s) failed:"
        # a note, once: the tiny run has too few validation events to fit a calibration
        and line != f"{trained.run}: the model card has no calibration: event confidences are the network's raw values"
    ]
    assert result.stderr.count("has no calibration") <= 1, result.stderr
    assert not foreign, result.stderr


def test_extract_error_line_is_not_glued_to_the_progress_bar(tmp_path):
    path, result = extract_one(tmp_path, "text.wav", BAD_AUDIO["text.wav"][0])
    fails(result, str(path), "cannot read audio")
    glued = [piece for piece in re.split(r"[\r\n]", result.stderr) if str(path) in piece and "file/s]" in piece]
    assert not glued, result.stderr


def test_detect_folder_without_audio(trained, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("no audio here\n")
    fails(cli("detect", folder, "--model", trained.run), str(folder), "no audio files")


def test_detect_symlink_loops_do_not_hang(trained, tmp_path):
    folder = tmp_path / "loops"
    make(folder, "good.wav", lambda p: sf.write(p, signal_1s(), SR))
    os.symlink("..", folder / "up")  # folder loop: loops/up/loops/up/...
    (folder / "sub").mkdir()
    os.symlink(folder, folder / "sub" / "back")
    os.symlink("self.wav", folder / "self.wav")  # a file link to itself
    with deadline(120):
        result = cli("detect", folder, "--model", trained.run)
    # the file link that loops is a file that cannot be read: named, and the batch goes on
    fails(result, str(folder / "self.wav"), "cannot read audio (broken or looping symbolic link)")
    assert "soundnet: 1 of 2 file(s) failed:" in result.stderr
    assert result.stdout.count("good.wav: ") == 1  # found once, not once per loop turn
    assert [line.split(":")[0] for line in result.stdout.splitlines() if "event(s) in" in line] == ["good.wav"]


# ---------------------------------------------------------------------------------
# Audio through extract


def extract_one(tmp_path: Path, name: str, writer):
    """Extract a folder holding ``name`` (no events) and a good file with one event."""
    folder = tmp_path / "audio"
    path = make(folder, name, writer)
    sf.write(folder / "good.wav", signal_1s(), SR)
    table = tmp_path / "table.tsv"
    table.write_text(f"filename\tonset\toffset\tevent_label\n{name}\t\t\t\ngood.wav\t0.25\t0.75\tbeep\n", encoding="utf-8")
    return path, cli("extract", folder, "--annotations", table, "--out", tmp_path / "data")


def manifest(dataset: Path) -> dict:
    return json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(BAD_AUDIO))
def test_extract_refuses_bad_audio(tmp_path, name):
    writer, problem = BAD_AUDIO[name]
    path, result = extract_one(tmp_path, name, writer)
    fails(result, str(path), problem)
    files = manifest(tmp_path / "data")["files"]
    assert [Path(f["source"]).name for f in files] == ["good.wav"]  # the batch went on


@pytest.mark.parametrize("name", sorted(GOOD_AUDIO) + ["zeros.wav"])
def test_extract_reads_odd_but_valid_audio(tmp_path, name):
    writer, seconds = GOOD_AUDIO.get(name, (lambda p: sf.write(p, np.zeros(3 * SR, np.float32), SR), 3.0))
    path, result = extract_one(tmp_path, name, writer)
    ok(result)
    entries = {Path(f["source"]).name: f for f in manifest(tmp_path / "data")["files"]}
    assert set(entries) == {name, "good.wav"}
    assert abs(entries[name]["frames"] - frames_of(seconds)) <= 1
    features = np.load(tmp_path / "data" / "files" / f"{entries[name]['id']}.features.npy")
    assert features.shape[1] == 129 and np.isfinite(features).all()


def test_extract_folder_without_audio(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("no audio here\n")
    table = tmp_path / "t.tsv"
    table.write_text("x.wav\t0\t1\tbeep\n")
    fails(cli("extract", folder, "--annotations", table, "--out", tmp_path / "data"), str(folder), "no audio files")


def test_extract_symlink_loops_do_not_hang(tmp_path):
    folder = tmp_path / "loops"
    folder.mkdir()
    sf.write(folder / "good.wav", signal_1s(), SR)
    os.symlink("..", folder / "up")
    os.symlink("self.wav", folder / "self.wav")
    table = tmp_path / "t.tsv"
    table.write_text("good.wav\t0.25\t0.75\tbeep\n")
    with deadline(120):
        result = cli("extract", folder, "--annotations", table, "--out", tmp_path / "data")
    ok(result)
    assert [Path(f["source"]).name for f in manifest(tmp_path / "data")["files"]] == ["good.wav"]


# ---------------------------------------------------------------------------------
# Annotations through extract


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """Two planted 3 s files: clip_00.wav and clip_01.wav."""
    root = tmp_path_factory.mktemp("annotated")
    _, truth = planted_set(root / "audio", files=2, seconds=3.0, seed=0, empty_every=0)
    return root / "audio", truth


HEADER = "filename\tonset\toffset\tevent_label\n"

BAD_TABLES = {
    "header_missing_offset": ("filename\tonset\tevent_label\nclip_00.wav\t0.5\tbeep\n", 1, "header has no offset column"),
    "row_missing_columns": ("clip_00.wav\t0.5\n", 1, "missing offset, label"),
    "row_missing_label": (HEADER + "clip_00.wav\t0.5\t1.0\t\n", 2, "missing label"),
    "non_numeric_onset": (HEADER + "clip_00.wav\tsoon\t1.0\tbeep\n", 2, "onset is not a number: 'soon'"),
    "non_numeric_offset": (HEADER + "clip_00.wav\t0.5\t1,0\tbeep\n", 2, "offset is not a number: '1,0'"),
    "nan_time": (HEADER + "clip_00.wav\tnan\t1.0\tbeep\n", 2, "not a finite number"),
    "offset_before_onset": (HEADER + "clip_00.wav\t1.0\t0.5\tbeep\n", 2, "offset 0.5 is before onset 1.0"),
    "negative_onset": (HEADER + "clip_00.wav\t-0.5\t1.0\tbeep\n", 2, "negative onset"),
    "negative_offset": (HEADER + "clip_00.wav\t-2\t-1\tbeep\n", 2, "negative onset"),
    "unknown_file": (HEADER + "clip_00.wav\t0.5\t1.0\tbeep\nnosuch.wav\t0.5\t1.0\tbeep\n", 3, "unknown file 'nosuch.wav'"),
    "no_filename": (HEADER + "\t0.5\t1.0\tbeep\n", 2, "no filename"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_extract_refuses_bad_table(annotated, tmp_path, case):
    audio, _ = annotated
    text, line, problem = BAD_TABLES[case]
    table = tmp_path / "table.tsv"
    table.write_text(text, encoding="utf-8")
    fails(cli("extract", audio, "--annotations", table, "--out", tmp_path / "data"), f"{table} line {line}", problem)
    assert not (tmp_path / "data" / "manifest.json").exists()


@pytest.mark.parametrize("onset, offset", [(2.5, 9.0), (5.0, 6.0)])
def test_extract_event_past_the_end_fails_that_file_only(annotated, tmp_path, onset, offset):
    audio, _ = annotated
    table = tmp_path / "table.tsv"
    table.write_text(HEADER + f"clip_00.wav\t0.5\t1.0\tbeep\nclip_01.wav\t{onset}\t{offset}\tbeep\n")
    fails(cli("extract", audio, "--annotations", table, "--out", tmp_path / "data"), f"{table} line 3", "past the end")
    assert [Path(f["source"]).name for f in manifest(tmp_path / "data")["files"]] == ["clip_00.wav"]


def test_extract_table_that_is_not_text(annotated, tmp_path):
    audio, _ = annotated
    table = tmp_path / "table.tsv"
    table.write_bytes(wav_bytes(signal_1s()))
    fails(cli("extract", audio, "--annotations", table, "--out", tmp_path / "data"), f"{table}: not a UTF-8 text file")


def test_extract_empty_table_asks_for_a_target(annotated, tmp_path):
    audio, _ = annotated
    table = tmp_path / "table.tsv"
    table.write_text("")
    fails(cli("extract", audio, "--annotations", table, "--out", tmp_path / "data"), str(table), "hold no event", "--target")


def test_extract_bad_audacity_sidecar_names_file_and_line(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "x.wav", signal_1s(), SR)
    (folder / "x.txt").write_text("0.25\t0.75\tbeep\nlater\t0.9\tbeep\n")
    fails(cli("extract", folder, "--out", tmp_path / "data"), f"{folder / 'x.txt'} line 2", "onset is not a number")


def table_rows(truth: dict) -> list[str]:
    return [f"{name}\t{on}\t{off}\tbeep" for name, spans in truth.items() for on, off in spans]


@pytest.mark.parametrize("variant", ["bom", "crlf", "bom_crlf_csv", "duplicates"])
def test_extract_accepts_table_variants(annotated, tmp_path, variant):
    audio, truth = annotated
    rows = table_rows(truth)
    if variant == "bom":
        text = "\ufeff" + HEADER + "\n".join(rows) + "\n"
    elif variant == "crlf":
        text = (HEADER + "\n".join(rows) + "\n").replace("\n", "\r\n")
    elif variant == "bom_crlf_csv":
        text = "\ufefffilename,onset,offset,event_label\r\n" + "".join(r.replace("\t", ",") + "\r\n" for r in rows)
    else:
        text = HEADER + "\n".join(rows + rows + rows[:1]) + "\n"
    table = tmp_path / "table.tsv"
    table.write_bytes(text.encode("utf-8"))
    ok(cli("extract", audio, "--annotations", table, "--out", tmp_path / "data"))
    data = manifest(tmp_path / "data")
    assert data["target"] == "beep"
    assert data["counts"]["files"] == 2
    assert data["counts"]["events"] == sum(len(spans) for spans in truth.values())  # duplicates counted once


def test_extract_unknown_target_label(annotated, tmp_path):
    audio, truth = annotated
    table = tmp_path / "table.tsv"
    table.write_text(HEADER + "\n".join(table_rows(truth)) + "\n")
    fails(
        cli("extract", audio, "--annotations", table, "--out", tmp_path / "data", "--target", "dog"), "unknown target label 'dog'"
    )


@pytest.fixture
def opened(monkeypatch):
    """Every path soundfile is asked to open, resolved."""
    seen: list[Path] = []
    real_info, real_soundfile = sf.info, sf.SoundFile

    def info(file, *args, **kwargs):
        seen.append(Path(file).resolve())
        return real_info(file, *args, **kwargs)

    class Spy(real_soundfile):
        def __init__(self, file, *args, **kwargs):
            seen.append(Path(file).resolve())
            super().__init__(file, *args, **kwargs)

    monkeypatch.setattr(sf, "info", info)
    monkeypatch.setattr(sf, "SoundFile", Spy)
    return seen


@pytest.mark.parametrize("style", ["relative", "backslashes", "absolute", "dot_segments"])
def test_extract_refuses_paths_outside_the_audio(tmp_path, opened, style):
    audio = tmp_path / "deep" / "audio"
    audio.mkdir(parents=True)
    sf.write(audio / "inside.wav", signal_1s(), SR)
    outside = tmp_path / "somewhere.wav"  # a real audio file outside the given folder
    sf.write(outside, signal_1s(), SR)
    name = {
        "relative": "../../somewhere.wav",
        "backslashes": "..\\..\\somewhere.wav",
        "absolute": str(outside),
        "dot_segments": "./sub/../../../somewhere.wav",
    }[style]
    table = tmp_path / "table.tsv"
    table.write_text(HEADER + f"inside.wav\t0.25\t0.75\tbeep\n{name}\t0.25\t0.75\tbeep\n", encoding="utf-8")
    opened.clear()  # writing the files above opened them
    fails(cli("extract", audio, "--annotations", table, "--out", tmp_path / "data"), f"{table} line 3", "unknown file")
    assert outside.resolve() not in opened
    assert not (tmp_path / "data" / "manifest.json").exists()


# ---------------------------------------------------------------------------------
# Configs through train


BAD_CONFIGS = {
    "unknown_section": ("optimizer:\n  lr: 0.1\n", "unknown key(s) optimizer"),
    "unknown_key": ("training:\n  epochs: 2\n  bogus: 1\n", "unknown key(s) bogus"),
    "int_as_text": ("training:\n  epochs: two\n", "expected int, got 'two'"),
    "int_as_float": ("training:\n  epochs: 2.5\n", "expected int, got 2.5"),
    "int_as_bool": ("training:\n  batch_size: true\n", "expected int, got True"),
    "float_as_text": ("model:\n  dropout: high\n", "expected float, got 'high'"),
    "section_not_mapping": ("features: 5\n", "expected a mapping"),
    "negative_hop": ("features:\n  hop_length: -160\n", "hop_length must be > 0"),
    "zero_epochs": ("training:\n  epochs: 0\n", "epochs must be > 0"),
    "dropout_above_one": ("model:\n  dropout: 1.5\n", "dropout must be in [0, 1]"),
    "threshold_above_one": ("postprocessing:\n  threshold: 2\n", "threshold must be in [0, 1]"),
    "odd_n_fft": ("features:\n  n_fft: 511\n", "n_fft must be even"),
    "negative_learning_rate": ("training:\n  learning_rate: -0.1\n", "learning_rate must be > 0"),
    "nan_learning_rate": ("training:\n  learning_rate: .nan\n", "learning_rate must be > 0"),
    "fraction_above_one": ("training:\n  validation_fraction: 2\n", "validation_fraction must be in [0, 1]"),
    "fmax_past_nyquist": ("features:\n  fmax: 1000000\n", "fmax"),
    "negative_median": ("postprocessing:\n  median_seconds: -1\n", "median_seconds must be >= 0"),
    "not_a_mapping": ("- a\n- b\n", "expected a mapping"),
    "yaml_syntax": ("training: [1, 2\n", "not valid YAML"),
    "python_object_tag": ("training: !!python/object/apply:os.system ['touch PWNED']\n", "python/object"),
    "python_name_tag": ("training:\n  epochs: !!python/name:os.system\n", "python/name"),
    "other_features_than_dataset": ("features:\n  hop_length: 320\n", "feature config differs"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_train_refuses_bad_config(trained, tmp_path, monkeypatch, case):
    text, problem = BAD_CONFIGS[case]
    monkeypatch.chdir(tmp_path)
    config = tmp_path / f"{case}.yaml"
    config.write_text(text)
    where = "data" if case == "other_features_than_dataset" else str(config)
    fails(cli("train", trained.data, "--out", tmp_path / "run", "--config", config), where, problem)
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "run").exists()


def test_extract_refuses_python_tags_in_config(annotated, tmp_path, monkeypatch):
    audio, truth = annotated
    monkeypatch.chdir(tmp_path)
    table = tmp_path / "table.tsv"
    table.write_text(HEADER + "\n".join(table_rows(truth)) + "\n")
    config = tmp_path / "evil.yaml"
    config.write_text("features: !!python/object/apply:os.system ['touch PWNED']\n")
    fails(
        cli("extract", audio, "--annotations", table, "--out", tmp_path / "data", "--config", config),
        str(config),
        "python/object",
    )
    assert not (tmp_path / "PWNED").exists()


def test_train_refuses_infinite_learning_rate(trained, tmp_path):
    config = tmp_path / "inf.yaml"
    config.write_text("training:\n  learning_rate: .inf\n  epochs: 1\n")
    fails(
        cli("train", trained.data, "--out", tmp_path / "run", "--config", config),
        str(config),
        "learning_rate must be > 0 and finite",
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_train_diverging_to_nan_is_a_one_line_error(trained, tmp_path):
    config = tmp_path / "huge.yaml"
    config.write_text("training:\n  learning_rate: 1.0e+30\n  epochs: 1\n")
    result = cli("train", trained.data, "--out", tmp_path / "run", "--config", config)
    fails(result, "training diverged in epoch 1", "lower training.learning_rate")
    assert not (tmp_path / "run").exists()


def short_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """Three planted clips of 0.6 s (61 frames), extracted: (audio folder, dataset)."""
    from planted import planted_file

    folder = tmp_path / "short"
    folder.mkdir()
    rng = np.random.default_rng(5)
    rows = []
    for i in range(3):
        planted_file(folder / f"s{i}.wav", seconds=0.6, events=[(0.1, 0.4)], rng=rng, distractors=0)
        rows.append(f"s{i}.wav\t0.1\t0.4\tbeep")
    table = tmp_path / "short.tsv"
    table.write_text(HEADER + "\n".join(rows) + "\n")
    ok(cli("extract", folder, "--annotations", table, "--out", tmp_path / "data"))
    return folder, tmp_path / "data"


def test_train_window_longer_than_every_file(tmp_path):
    """The default 1 s window and clips of 0.6 s: a clear one-line error naming the
    window and the longest file, nothing left behind, and a retry can train."""
    _, data = short_dataset(tmp_path)
    config = tmp_path / "one.yaml"
    config.write_text("training:\n  epochs: 1\n  batch_size: 4\n")
    fails(cli("train", data, "--out", tmp_path / "run", "--config", config), "model.window (100 frames)", "61 frames")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "one.yaml", "short", "short.tsv"]


def test_train_window_shorter_than_the_files(tmp_path, monkeypatch):
    """A 0.5 s window trains on the 0.6 s clips, into a relative --out, and detects."""
    folder, _ = short_dataset(tmp_path)
    config = tmp_path / "half.yaml"
    config.write_text("training:\n  epochs: 1\n  batch_size: 4\n  stride: 10\nmodel:\n  window: 50\n")
    monkeypatch.chdir(tmp_path)  # a relative --out, as users type it
    ok(cli("train", "data", "--out", "run", "--config", config))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "card.json",
        "history.csv",
        "model.keras",
        "model.tflite",
        "train.log",
    ]
    assert not (tmp_path / "run.partial").exists()
    assert "s0.wav: " in ok(cli("detect", folder / "s0.wav", "--model", tmp_path / "run")).stdout


# ---------------------------------------------------------------------------------
# Models through detect


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, signal_1s(), SR)
    return path


def test_detect_missing_model_folder_is_a_usage_error(clip, tmp_path):
    missing = tmp_path / "no_such_run"
    fails(cli("detect", clip, "--model", missing), "no_such_run", "does not exist", code=2)


def test_detect_folder_that_is_not_a_run(clip, tmp_path):
    (tmp_path / "empty").mkdir()
    fails(cli("detect", clip, "--model", tmp_path / "empty"), str(tmp_path / "empty"), "no card.json")


def reseal(run: Path, *names: str) -> None:
    """Record in the card the SHA-256 of these network files as they now are (what a
    tampered run shipped whole, card included, would hold)."""
    card = json.loads((run / "card.json").read_text())
    card["checksums"] = {**card["checksums"], **{name: hashlib.sha256((run / name).read_bytes()).hexdigest() for name in names}}
    (run / "card.json").write_text(json.dumps(card))


def unseal(run: Path) -> None:
    """A card without checksums, as soundnet wrote them before it recorded any."""
    card = json.loads((run / "card.json").read_text())
    del card["checksums"]
    (run / "card.json").write_text(json.dumps(card))


CHECKSUM_DIFFERS = "does not match the run's card (checksum differs: replaced, damaged or from another run); retrain"


@pytest.mark.parametrize("card", ["sealed", "without_checksums"])
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_detect_corrupted_keras_model(trained, tmp_path, clip, damage, card):
    """Damaged after training: the card's checksum tells; with a card that records
    none (older runs), loading the file does."""
    run = run_copy(trained, tmp_path, tflite=False)
    model = run / "model.keras"
    data = model.read_bytes()
    model.write_bytes({"garbage": b"PK\x03\x04 not really a zip", "truncated": data[: len(data) // 2], "empty": b""}[damage])
    if card == "sealed":
        fails(cli("detect", clip, "--model", run), f"{model}: {CHECKSUM_DIFFERS}")
    else:
        unseal(run)
        fails(cli("detect", clip, "--model", run), f"{model}: cannot load the model")


def test_detect_missing_keras_model(trained, tmp_path, clip):
    run = run_copy(trained, tmp_path, tflite=False)
    (run / "model.keras").unlink()
    fails(cli("detect", clip, "--model", run), f"{run}: not a soundnet model folder (no model.keras)")


@pytest.mark.parametrize("card", ["sealed", "without_checksums"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_detect_corrupted_tflite_model(trained, tmp_path, clip, damage, card):
    run = run_copy(trained, tmp_path)
    model = run / "model.tflite"
    data = model.read_bytes()
    model.write_bytes(os.urandom(100) if damage == "garbage" else data[: len(data) // 3])
    if card == "sealed":
        fails(cli("detect", clip, "--model", run, "--runtime", "litert"), f"{model}: {CHECKSUM_DIFFERS}")
    else:
        unseal(run)
        fails(cli("detect", clip, "--model", run, "--runtime", "litert"), f"{model}: cannot load the LiteRT model")


@pytest.mark.parametrize("runtime", ["auto", "keras"])
def test_detect_card_from_another_feature_config(trained, tmp_path, clip, runtime):
    run = run_copy(trained, tmp_path)
    edit_card(run, features={"n_mfcc": 40})
    problem = "normalisation statistics do not match the feature config (81 features)"
    fails(cli("detect", clip, "--model", run, "--runtime", runtime), str(run / "card.json"), problem)


@pytest.mark.parametrize("runtime, network", [("auto", "model.tflite"), ("keras", "model.keras")])
def test_detect_card_consistent_with_another_feature_config(trained, tmp_path, clip, runtime, network):
    """n_mfcc 40 with matching (81-value) statistics: only the network itself can tell
    (the one the runtime loads: LiteRT's when the run has it)."""
    run = run_copy(trained, tmp_path)
    edit_card(run, features={"n_mfcc": 40}, normalisation={"mean": [0.0] * 81, "std": [1.0] * 81})
    fails(cli("detect", clip, "--model", run, "--runtime", runtime), str(run / network), "the card's feature config")


def test_detect_card_from_a_newer_soundnet(trained, tmp_path, clip):
    run = run_copy(trained, tmp_path)
    edit_card(run, soundnet_version="99.0.0")
    fails(cli("detect", clip, "--model", run), str(run / "card.json"), "99.0.0", "upgrade")


DAMAGED_CARDS = {
    "not_json": ("{ half a card", "not a readable JSON file"),
    "not_an_object": ("[1, 2]", "expected a JSON object"),
    "missing_keys": ('{"target": "beep"}', "not a soundnet model card"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_CARDS))
def test_detect_damaged_card(trained, tmp_path, clip, damage):
    run = run_copy(trained, tmp_path)
    card = run / "card.json"
    text, problem = DAMAGED_CARDS[damage]
    card.write_text(text)
    fails(cli("detect", clip, "--model", run), f"{card}: {problem}")


# ---------------------------------------------------------------------------------
# Untrusted files


def lambda_model(path: Path) -> None:
    import keras

    inputs = keras.Input((100, 64), name="mfcc")
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    keras.Model(inputs, outputs).save(path)


@pytest.mark.parametrize("tflite", [False, True])
def test_detect_refuses_a_keras_file_carrying_code(trained, tmp_path, clip, tflite):
    """Even when the card vouches for it (a tampered run shipped whole)."""
    run = run_copy(trained, tmp_path, tflite=tflite)
    lambda_model(run / "model.keras")
    reseal(run, "model.keras")
    fails(cli("detect", clip, "--model", run, "--runtime", "keras"), str(run / "model.keras"), "Lambda")


class _Touch:
    """Unpickling this touches a file: proof that a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(
    "padded",
    [
        False,
        True,
    ],
)
def test_train_refuses_pickled_arrays_in_a_dataset(trained, tmp_path, padded):
    data = tmp_path / "data"
    shutil.copytree(trained.data, data)
    entry = manifest(data)["files"][0]
    marker = tmp_path / "PICKLE_RAN"
    evil = np.empty((entry["frames"], 129), dtype=object)
    evil[0, 0] = _Touch(marker)
    features = data / "files" / f"{entry['id']}.features.npy"
    np.save(features, evil, allow_pickle=True)
    if padded:  # to the byte size a (frames, 129) array of 8-byte items has, so a size check passes
        with open(features, "rb") as f:
            np.lib.format.read_magic(f)
            np.lib.format.read_array_header_1_0(f)
            size = f.tell() + 8 * 129 * entry["frames"]
        with open(features, "ab") as f:
            f.write(bytes(size - features.stat().st_size))
    config = tmp_path / "tiny.yaml"
    config.write_text("training:\n  epochs: 1\n")
    fails(cli("train", data, "--out", tmp_path / "run", "--config", config), str(features))
    assert not marker.exists()


# ---------------------------------------------------------------------------------
# Batches go on


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """40 files, good (1 s) and hostile alternating in sorted order: f00 good, f01 bad, ..."""
    folder = tmp_path_factory.mktemp("mixed")
    bad = [BAD_AUDIO[name][0] for name in sorted(BAD_AUDIO)]
    good, hostile = [], []
    for i in range(40):
        path = folder / f"f{i:02d}_{'good' if i % 2 == 0 else 'bad'}.wav"
        if i % 2 == 0:
            sf.write(path, signal_1s(), SR)
            good.append(path)
        else:
            bad[(i // 2) % len(bad)](path)
            hostile.append(path)
    return folder, good, hostile


def test_detect_batch_reports_every_failure_and_every_result(trained, mixed):
    folder, good, hostile = mixed
    result = cli("detect", folder, "--model", trained.run)
    no_traceback(result)
    assert result.exit_code == 1, explain(result)
    results = [line for line in result.stdout.splitlines() if "event(s) in" in line]
    assert sorted(line.split(":")[0] for line in results) == sorted(p.name for p in good)
    for path in hostile:
        assert any(str(path) in line for line in result.stderr.splitlines()), f"{path} not named\n" + explain(result)
    assert "20 of 40 file(s) failed" in result.stderr


def test_detect_fail_fast_stops_at_the_first_failure(trained, mixed):
    folder, good, hostile = mixed
    result = cli("detect", folder, "--model", trained.run, "--fail-fast")
    no_traceback(result)
    assert result.exit_code == 1, explain(result)
    assert [line.split(":")[0] for line in result.stdout.splitlines() if "event(s) in" in line] == [good[0].name]
    assert str(hostile[0]) in result.stderr
    assert not any(str(path) in result.stderr for path in hostile[1:] + good[1:])
