"""Bounded inputs, labels that cannot forge outputs, unreadable folders and files,
stale temporary files, audio on stdin, and full or read-only disks (issue 10).

Each case goes through the real command line and asserts what a user sees: the exit
status, one stderr line naming the path and the reason, no traceback, and nothing
half-written. Filesystem conditions use a small tmpfs (mounted here, as root) and a
process without root's override of permissions (``os.seteuid`` to nobody); where the
test cannot make them it is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from clirun import child_env, cli, explain, fails, no_traceback, ok
from clirun import soundnet as command_line
from planted import planted_set

import soundnet.cli
import soundnet.config
import soundnet.errors
import soundnet.formats
from soundnet.errors import SoundnetError
from soundnet.storage import remove_stale_temporaries, write_text

SR = 16000
BUNDLED_CARD = Path(soundnet.cli.__file__).parent / "models" / "default" / "card.json"


def _wav(path: Path, seconds: float = 1.0) -> Path:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.05 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
    return path


def _wav_bytes(seconds: float = 1.0) -> bytes:
    buffer = io.BytesIO()
    y = (0.05 * np.random.default_rng(0).standard_normal(int(seconds * SR))).astype(np.float32)
    sf.write(buffer, y, SR, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture
def labelled(tmp_path):
    """A folder with one 1-s WAV and its Audacity labels."""
    folder = tmp_path / "audio"
    _wav(folder / "a.wav")
    (folder / "a.txt").write_text("0.1\t0.4\tbeep\n")
    return folder


# ---------------------------------------------------------------------------------
# 1. Bounded inputs: configs, JSON, tables, option values

BILLION_LAUGHS = "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n" + "".join(
    f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)

BAD_CONFIGS = {
    "alias_bomb": (BILLION_LAUGHS.encode(), "line 2: YAML aliases (*name) are not accepted"),
    "one_alias": (b"training: &t {epochs: 2}\nmodel: *t\n", "line 2: YAML aliases"),
    "too_large": (b"# " + b"x" * (2**20) + b"\n", "config larger than 1 MB"),
    "too_deep": (b"features: " + b"[" * 50000 + b"]" * 50000 + b"\n", "nested too deeply"),
    "latin1": ("# réglages\ntraining: {epochs: 2}\n".encode("latin-1"), "not a UTF-8 text file"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_read_with_limits(labelled, tmp_path, case):
    text, problem = BAD_CONFIGS[case]
    config = tmp_path / "config.yaml"
    config.write_bytes(text)
    fails(cli("extract", labelled, "--out", tmp_path / "data", "--config", config), str(config), problem)
    assert not (tmp_path / "data").exists()


def test_deep_json_card_is_one_line(labelled, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "card.json").write_text("[" * 100_000 + "]" * 100_000)
    fails(cli("detect", labelled / "a.wav", "--model", run), f"{run / 'card.json'}: not a readable JSON file (nested too deeply)")


def test_deep_json_manifest_is_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    result = fails(cli("train", data, "--out", tmp_path / "run"), "manifest.json: not a readable JSON file (nested too deeply)")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists(), explain(result)


def test_deep_json_event_list_is_one_line(tmp_path):
    path = tmp_path / "events.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SoundnetError, match="nested too deeply"):
        soundnet.formats.read_events(path, "json")


def test_table_larger_than_the_cap_is_refused(labelled, tmp_path, monkeypatch):
    monkeypatch.setattr(soundnet.formats, "MAX_TEXT_BYTES", 1000)
    table = tmp_path / "gt.tsv"
    table.write_text("filename\tonset\toffset\tevent_label\n" + "a.wav\t0.1\t0.4\tbeep\n" * 100)
    fails(cli("extract", labelled, "-a", table, "--out", tmp_path / "data"), str(table), "table larger than")


OPTION_VALUES = [
    ("detect", "--median", "nan", "is not a finite number"),
    ("detect", "--threshold", "nan", "is not a finite number"),
    ("detect", "--min-duration", "inf", "is not in the range"),
    ("detect", "--merge-gap", "1e308", "is not in the range"),
    ("evaluate", "--median", "-inf", "is not in the range"),
    ("synth", "--duration", "inf", "is not in the range"),
    ("synth", "--presence", "nan", "is not a finite number"),
    ("synth", "--ebr", "nan,0", "dB values in [-60, 60]"),
    ("tune", "--max-false-alarms-per-hour", "nan", "is not a finite number"),
    ("tune", "--max-false-alarms-per-hour", "inf", "is not a finite number"),
]


@pytest.mark.parametrize("command, option, value, problem", OPTION_VALUES)
def test_non_finite_or_absurd_option_values_are_usage_errors(labelled, tmp_path, command, option, value, problem):
    wav = labelled / "a.wav"
    args = {
        "detect": ["detect", wav],
        "evaluate": ["evaluate", wav],
        "synth": ["synth", "--events", labelled, "--backgrounds", labelled, "--out", tmp_path / "mix"],
        "tune": ["tune", tmp_path, wav],
    }[command]
    fails(cli(*args, option, value), option, problem, code=2)


def test_cli_and_config_share_the_longest_post_processing_time():
    assert soundnet.cli.MAX_SECONDS == soundnet.config.MAX_SECONDS


@pytest.mark.parametrize("name", ["median_seconds", "min_duration", "merge_gap"])
def test_post_config_refuses_absurd_times(name):
    with pytest.raises(SoundnetError, match=f"{name} must be >= 0 and at most 86400 seconds"):
        soundnet.config.PostConfig(**{name: 1e308})


# ---------------------------------------------------------------------------------
# 2. Labels: short and printable wherever they come from


def _card_with_target(tmp_path: Path, target: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    card = json.loads(BUNDLED_CARD.read_text())
    card["target"] = target
    (run / "card.json").write_text(json.dumps(card))
    return run


@pytest.mark.parametrize(
    "target, problem",
    [
        ("x" * 10_000, "10000 characters long"),
        ("beep\tfake", "control character"),
        ("be\nep", "control character"),
        ("", "empty"),
    ],
)
def test_card_label_that_is_not_short_and_printable_is_refused(labelled, tmp_path, target, problem):
    run = _card_with_target(tmp_path, target)
    result = fails(cli("detect", labelled / "a.wav", "--model", run), f"{run / 'card.json'} target", problem)
    assert len(result.stderr.splitlines()) == 1, explain(result)


@pytest.mark.parametrize(
    "row, problem",
    [
        ('a.wav,0.1,0.4,"be\nep"', "line 2: the label 'be\\\\nep' holds a tab, line break"),
        ("a.wav,0.1,0.4,be\x07ep", "line 2: the label 'be\\x07ep' holds"),
        ("a.wav,0.1,0.4," + "x" * 10_000, "line 2: the label"),
    ],
)
def test_table_label_that_could_forge_an_output_is_refused(labelled, tmp_path, row, problem):
    table = tmp_path / "gt.csv"
    table.write_text("filename,onset,offset,label\n" + row + "\n")
    result = fails(cli("extract", labelled, "-a", table, "--out", tmp_path / "data"), str(table))
    assert "the label" in result.stderr and len(result.stderr.strip().splitlines()) == 1, explain(result)


@pytest.mark.parametrize("command", ["extract", "evaluate"])
def test_target_option_that_is_not_a_short_printable_label_is_a_usage_error(labelled, tmp_path, command):
    args = ["--out", tmp_path / "data"] if command == "extract" else []
    fails(cli(command, labelled, *args, "--target", "be\nep"), "--target", "holds a tab, line break", code=2)
    fails(cli(command, labelled, *args, "--target", "x" * 101), "--target", "101 characters long", code=2)


def test_audacity_label_with_a_control_character_is_refused(tmp_path):
    folder = tmp_path / "audio"
    _wav(folder / "a.wav")
    (folder / "a.txt").write_text("0.1\t0.4\tbe\x1bep\n")
    fails(cli("extract", folder, "--out", tmp_path / "data"), str(folder / "a.txt"), "line 1: the label", "control character")


def test_synth_folder_label_with_a_control_character_is_refused(tmp_path):
    events = tmp_path / "be\x07ep"
    _wav(events / "clip.wav", 0.3)
    _wav(tmp_path / "bg" / "bg.wav", 2.0)
    fails(
        cli("synth", "--events", events, "--backgrounds", tmp_path / "bg", "--out", tmp_path / "mix", "-n", 1),
        "the folder names the label",
        "control character",
    )
    assert not (tmp_path / "mix").exists()


# ---------------------------------------------------------------------------------
# 3 and 4. Unreadable folders and files, as a user without root's override

NOBODY = 65534


@contextlib.contextmanager
def as_nobody():
    """This process without root's override of permissions (effective uid nobody), for
    the block; skipped where it cannot be made (not root)."""
    if os.geteuid() != 0:
        yield  # permissions already apply
        return
    try:
        os.seteuid(NOBODY)
    except OSError as error:
        pytest.skip(f"cannot drop root's override of permissions ({error})")
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def shared_dir():
    """A folder anyone may use (pytest's tmp_path is root's alone), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="soundnet-limits-"))
    folder.chmod(0o777)
    yield folder
    for root, dirs, _ in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(folder)


def _unreadable_subfolder(shared_dir: Path) -> tuple[Path, Path]:
    audio = shared_dir / "audio"
    _wav(audio / "a.wav")
    (audio / "a.txt").write_text("0.1\t0.4\tbeep\n")
    _wav(audio / "locked" / "b.wav")
    (audio / "locked").chmod(0)
    return audio, audio / "locked"


@pytest.mark.parametrize("command", ["detect", "extract", "evaluate"])
def test_unreadable_subfolder_is_a_failure_naming_it(shared_dir, command):
    audio, locked = _unreadable_subfolder(shared_dir)
    args = {"detect": [], "extract": ["--out", shared_dir / "data"], "evaluate": []}[command]
    with as_nobody():
        result = cli(command, audio, *args)
    fails(result, f"{locked}: cannot read folder (Permission denied)")
    assert not (shared_dir / "data").exists()


def test_unreadable_audio_file_says_permission_denied(shared_dir):
    audio = shared_dir / "audio"
    _wav(audio / "a.wav").chmod(0)
    with as_nobody():
        result = cli("detect", audio / "a.wav")
    fails(result, f"{audio / 'a.wav'}: cannot read audio (Permission denied)")


def test_unreadable_file_in_a_batch_fails_alone(shared_dir):
    audio = shared_dir / "audio"
    _wav(audio / "a.wav").chmod(0)
    _wav(audio / "b.wav").chmod(0o644)
    ok(cli("detect", audio / "b.wav"))  # imports done as root: nobody cannot read root's Python
    with as_nobody():
        # --jobs 1: worker processes started as nobody would import modules from root's
        # unreadable Python (an artefact of this test; a real user's Python is readable)
        result = cli("detect", audio, "--jobs", "1")
    fails(result, "a.wav: cannot read audio (Permission denied)")
    assert "b.wav: 0 event(s)" in result.stdout and "1 of 2 file(s) failed" in result.stderr, explain(result)


def test_unreadable_table_and_config_say_permission_denied(shared_dir):
    audio = shared_dir / "audio"
    _wav(audio / "a.wav")
    table, config = shared_dir / "gt.tsv", shared_dir / "config.yaml"
    table.write_text("a.wav\t0.1\t0.4\tbeep\n")
    config.write_text("training: {epochs: 2}\n")
    table.chmod(0)
    config.chmod(0)
    with as_nobody():
        by_table = cli("extract", audio, "-a", table, "--out", shared_dir / "d1")
        by_config = cli("extract", audio, "--config", config, "--out", shared_dir / "d2")
    fails(by_table, f"{table}: cannot read table (Permission denied)")
    fails(by_config, f"{config}: cannot read config (Permission denied)")


# ---------------------------------------------------------------------------------
# 5. Stale temporary files


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _stale(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(b"half")
    os.utime(path, (time.time() - 3600, time.time() - 3600))  # written by an earlier, killed run
    return path


def test_stale_temporaries_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    dead = _dead_pid()
    gone = [_stale(tmp_path, f".part-{dead}-abcd1234-events.tsv"), _stale(tmp_path, f".part-{dead}-a_b0c9d8-x.npy")]
    kept = [
        _stale(tmp_path, f".part-{os.getpid()}-abcd1234-events.tsv"),  # this process is writing it
        _stale(tmp_path, ".part-1-abcd1234-events.tsv"),  # its writer (pid 1) still runs
        _stale(tmp_path, f".part-{dead}-short-notes.txt"),  # not soundnet's naming
        _stale(tmp_path, ".part-notes.txt"),
        _stale(tmp_path, "events.tsv.part"),
        _stale(tmp_path, f"part-{dead}-abcd1234-visible.tsv"),
    ]
    fresh = tmp_path / f".part-{dead}-fedc4321-new.tsv"
    fresh.write_bytes(b"")  # modified within the minute: a writer elsewhere may be at work
    kept.append(fresh)
    (tmp_path / f".part-{dead}-abcd9999-folder").mkdir()
    write_text(tmp_path / "events.tsv", "filename\n")
    assert not any(p.exists() for p in gone)
    assert all(p.exists() for p in kept) and (tmp_path / f".part-{dead}-abcd9999-folder").is_dir()
    assert remove_stale_temporaries(tmp_path) == []  # once per folder and process


def test_extract_removes_what_a_killed_extract_left(labelled, tmp_path):
    data = tmp_path / "data"
    (data / "files").mkdir(parents=True)
    dead = _dead_pid()
    left = [_stale(data, f".part-{dead}-k1ll3d00-manifest.json"), _stale(data / "files", f".part-{dead}-k1ll3d00-a.npy")]
    mine = _stale(data, "notes.part")
    ok(cli("extract", labelled, "--out", data))
    assert not any(p.exists() for p in left) and mine.exists()
    assert not [p for p in data.rglob(".part-*")]


def test_a_rerun_right_after_a_kill_removes_what_it_left(labelled, tmp_path):
    """A new soundnet process removes a dead writer's temporary file at once (it was last
    modified before that process started), without waiting for it to go quiet."""
    data = tmp_path / "data"
    (data / "files").mkdir(parents=True)
    left = data / "files" / f".part-{_dead_pid()}-k1ll3d00-a.features.npy"
    left.write_bytes(b"half")
    time.sleep(0.05)
    done = subprocess.run(command_line("extract", labelled, "--out", data), env=child_env(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert not left.exists() and not list(data.rglob(".part-*"))


def test_temporary_name_of_a_longest_legal_name_is_legal(tmp_path):
    name = "x" * 251 + ".tsv"  # 255 bytes, the longest name
    write_text(tmp_path / name, "filename\n")
    assert (tmp_path / name).read_text() == "filename\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


# ---------------------------------------------------------------------------------
# 6. Audio on stdin


def test_detect_reads_a_wav_on_stdin():
    result = CliRunner().invoke(soundnet.cli.main, ["detect", "-", "--format", "tsv"], input=_wav_bytes())
    ok(result)
    assert result.stdout.splitlines()[1:] == ["<stdin>"], explain(result)


def test_detect_names_stdin_beside_files(labelled):
    result = CliRunner().invoke(soundnet.cli.main, ["detect", str(labelled / "a.wav"), "-"], input=_wav_bytes(2.0))
    ok(result)
    assert "a.wav: 0 event(s) in 1.00 s" in result.stdout and "<stdin>: 0 event(s) in 2.00 s" in result.stdout, explain(result)


def test_detect_non_audio_on_stdin_is_one_line():
    result = CliRunner().invoke(soundnet.cli.main, ["detect", "-"], input=b"this is not audio\n" * 10)
    fails(result, "<stdin>: cannot read audio")
    assert "soundnet-stdin-" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, explain(result)


def _pcm(seconds: float, channels: int, dtype: str) -> bytes:
    y = 0.05 * np.random.default_rng(0).standard_normal((int(seconds * SR), channels))
    return (y * 2**15).astype("<i2").tobytes() if dtype == "s16le" else y.astype("<f4").tobytes()


@pytest.mark.parametrize("fmt, channels", [("s16le", 1), ("f32le", 2)])
def test_detect_reads_raw_pcm_on_stdin(fmt, channels):
    args = ["detect", "-", "--raw-format", fmt, "--rate", str(SR), "--channels", str(channels)]
    result = ok(CliRunner().invoke(soundnet.cli.main, args, input=_pcm(1.5, channels, fmt)))
    assert result.stdout.startswith("<stdin>: 0 event(s) in 1.50 s"), explain(result)


def test_raw_pcm_options_need_stdin_and_a_rate(labelled):
    wav = str(labelled / "a.wav")
    fails(
        CliRunner().invoke(soundnet.cli.main, ["detect", wav, "--raw-format", "s16le", "--rate", "16000"]), "give - among", code=2
    )
    fails(CliRunner().invoke(soundnet.cli.main, ["detect", "-", "--raw-format", "s16le"], input=b"\0\0"), "--rate", code=2)


def test_raw_pcm_that_ends_inside_a_frame_is_one_line():
    args = ["detect", "-", "--raw-format", "s16le", "--rate", "16000", "--channels", "2"]
    fails(CliRunner().invoke(soundnet.cli.main, args, input=bytes(4001)), "<stdin>: ends inside a frame (1 byte(s) left of 4)")


def test_detect_wav_piped_to_a_real_process(tmp_path):
    done = subprocess.run(command_line("detect", "-"), input=_wav_bytes(), env=child_env(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().startswith("<stdin>: 0 event(s) in 1.00 s"), done.stdout
    assert "Traceback" not in done.stderr.decode()


# ---------------------------------------------------------------------------------
# 7. Full disk and read-only outputs


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "256k"):
    """A tmpfs of ``size`` mounted at ``folder`` for the block (skipped if it cannot be)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip() or 'mount failed'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder``: one file takes every free byte."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, bytes(4096))
    finally:
        os.close(fd)
    return filler


def read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


DETECT_OUTPUTS = {
    "events": (["--output", "{d}/events.tsv"], "{d}/events.tsv"),
    "frames_csv": (["--frames", "{d}/frames.csv"], "{d}/frames.csv"),
    "frames_npy": (["--frames", "{d}/frames.npy"], "{d}/frames.npy"),
    "plot": (["--plot", "{d}/plot.png"], "{d}/plot.png"),
    "output_dir": (["--format", "tsv", "--output-dir", "{d}/labels"], "{d}/labels"),  # audacity's 0 events: 0 bytes
}


@pytest.mark.parametrize("condition, reason", [("full", "No space left on device"), ("ro", "Read-only file system")])
@pytest.mark.parametrize("kind", sorted(DETECT_OUTPUTS))
def test_detect_output_on_a_full_or_read_only_disk(labelled, tmp_path, kind, condition, reason):
    args, named = DETECT_OUTPUTS[kind]
    disk = tmp_path / "disk"
    with small_disk(disk):
        if kind == "output_dir" and condition == "full":
            (disk / "labels").mkdir()
        filler = fill(disk) if condition == "full" else None
        if condition == "ro":
            read_only(disk)
        result = cli("detect", labelled / "a.wav", *(a.format(d=disk) for a in args))
        left = sorted(p.name for p in disk.rglob("*") if p != filler and p != disk / "labels")
    fails(result, named.format(d=disk), reason)
    assert left == [], left


@pytest.mark.parametrize("option", ["--output", "--frames", "--plot", "--output-dir"])
def test_detect_output_under_a_regular_file_names_it(labelled, option):
    wav = labelled / "a.wav"
    target = wav / "sub" / ("out.png" if option == "--plot" else "out.csv")
    fails(cli("detect", wav, option, target), str(target if option != "--output-dir" else target / "a.tsv"), f"{wav} is a file")


def test_extract_and_train_out_under_a_regular_file(labelled, tmp_path):
    wav = labelled / "a.wav"
    fails(cli("extract", labelled, "--out", wav / "data"), str(wav / "data"), "Not a directory")
    data = tmp_path / "data"
    ok(cli("extract", labelled, "--out", data, "--augment", 0))
    fails(cli("train", data, "--out", wav / "run"), str(wav))


@pytest.mark.parametrize("option", ["--output", "--frames", "--plot", "--output-dir"])
def test_empty_output_path_is_a_usage_error(labelled, option):
    fails(cli("detect", labelled / "a.wav", option, ""), option, "an empty path", code=2)


@pytest.mark.parametrize("condition, reason", [("full", "No space left on device"), ("ro", "Read-only file system")])
def test_extract_out_on_a_full_or_read_only_disk(labelled, tmp_path, condition, reason):
    disk = tmp_path / "disk"
    with small_disk(disk):
        filler = fill(disk) if condition == "full" else None
        if condition == "ro":
            read_only(disk)
        result = cli("extract", labelled, "--out", disk / "data")
        files = [p for p in disk.rglob("*") if p.is_file() and p != filler]
    fails(result, str(disk / "data"), reason)
    assert files == [], files


@pytest.mark.parametrize("condition, reason", [("full", "No space left on device"), ("ro", "Read-only file system")])
def test_train_out_on_a_full_or_read_only_disk(tmp_path, condition, reason):
    table, _ = planted_set(tmp_path / "train", files=4, seconds=4.0, seed=1)
    ok(cli("extract", tmp_path / "train", "-a", table, "--out", tmp_path / "data", "--augment", 0))
    disk = tmp_path / "disk"
    with small_disk(disk):
        filler = fill(disk) if condition == "full" else None
        if condition == "ro":
            read_only(disk)
        result = cli("train", tmp_path / "data", "--out", disk / "run")
        files = [p for p in disk.rglob("*") if p.is_file() and p != filler]
    fails(result, str(disk / "run"), reason)
    assert files == [], files


def test_training_that_fills_the_disk_stops_in_one_line_and_resumes(tmp_path):
    """The disk fills at the second epoch's checkpoint: one line, exit 1, and a
    ``.partial`` holding the first epoch, which ``--resume`` finishes once there is room."""
    table, _ = planted_set(tmp_path / "train", files=6, seconds=8.0, seed=1)
    ok(cli("extract", tmp_path / "train", "-a", table, "--out", tmp_path / "data", "--augment", 0))
    config = tmp_path / "fast.yaml"
    config.write_text("training:\n  epochs: 3\n  patience: 3\n  batch_size: 16\n")
    disk = tmp_path / "disk"
    with small_disk(disk, "2000k"):
        result = cli("train", tmp_path / "data", "--out", disk / "run", "--config", config)
        no_traceback(result)
        assert result.exit_code == 1, explain(result)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "No space left on device" in errors[0] and str(disk / "run.partial") in errors[0]
        progress = json.loads((disk / "run.partial" / "progress.json").read_text())
        assert progress["epochs_done"] >= 1, progress
        assert not [p for p in (disk / "run.partial").iterdir() if p.name.startswith(".part-")]
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        resumed = ok(cli("train", tmp_path / "data", "--out", disk / "run", "--config", config, "--resume"))
        assert "trained 3 epoch(s)" in resumed.stdout and (disk / "run" / "card.json").is_file()
        assert not (disk / "run.partial").exists()


# ---------------------------------------------------------------------------------
# The readers, fuzzed: any bytes give a value or one SoundnetError line, never another
# exception (a RecursionError, a UnicodeDecodeError, a YAML or JSON library error)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import soundnet.run  # noqa: E402
import soundnet.storage  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NASTY = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200).map(str.encode),
    st.sampled_from(
        [b"[" * 5000, b"{" * 5000, b"&a [*a]", b"a: &x 1\nb: *x\n", b"\xff\xfe", b'"\t\n', b"- !!python/object:os.system\n"]
    ),
)


def _one_line_or_value(read, data: bytes, folder: Path, name: str) -> None:
    path = Path(folder) / name
    path.write_bytes(data)
    try:
        read(path)
    except SoundnetError as error:
        assert "\n" not in soundnet.errors.printable(str(error)) and str(error).strip()


@FUZZ
@given(data=NASTY)
def test_fuzzed_configs_give_a_config_or_one_line(data):
    with tempfile.TemporaryDirectory() as folder:
        _one_line_or_value(soundnet.config.load_config, data, Path(folder), "c.yaml")


@FUZZ
@given(data=NASTY)
def test_fuzzed_tables_give_rows_or_one_line(data):
    with tempfile.TemporaryDirectory() as folder:
        _one_line_or_value(soundnet.formats.read_table, data, Path(folder), "t.tsv")
        _one_line_or_value(lambda p: soundnet.formats.read_events(p, "json"), data, Path(folder), "e.json")


@FUZZ
@given(data=NASTY)
def test_fuzzed_cards_give_a_card_or_one_line(data):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "card.json").write_bytes(data)
        with contextlib.suppress(SoundnetError):
            soundnet.run.read_card(Path(folder))
