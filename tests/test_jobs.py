"""detect and extract over worker processes (--jobs): the same bytes as one job, in
input order, failures reported the same, and a resumed detect skipping finished files.

The bundled default detector runs here (no training); a low threshold gives events, so
the event outputs are compared on something.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from clirun import cli, fails, ok
from planted import planted_set

from soundnet import parallel, pieces
from soundnet.batch import run_batch
from soundnet.config import FeatureConfig
from soundnet.dataset import MANIFEST, Dataset, extract
from soundnet.detection import Detector, FileWork, _pieces, detect
from soundnet.errors import SoundnetError
from soundnet.outputs import OUTPUT_FORMATS, RESUME_FILE
from soundnet.parallel import Workers, check_jobs, usable_cores

LOW = "0.02"  # the default detector's probability on planted tones: events to compare


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    """Five planted files (one in a subfolder, one at 22.05 kHz) and one corrupt file."""
    root = tmp_path_factory.mktemp("jobs")
    planted_set(root / "audio", files=4, seconds=6.0, seed=11)
    folder = root / "audio"
    (folder / "sub").mkdir()
    y, sr = sf.read(folder / sorted(p.name for p in folder.glob("*.wav"))[0])
    sf.write(folder / "sub" / "resampled.wav", y[: 4 * sr], 22050)
    (folder / "broken.wav").write_text("not audio\n")
    return folder


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_detect(audio: Path, out: Path, jobs: int, fmt: str, *extra):
    combined = [] if fmt == "audacity" else ["--output", out / f"all.{fmt}"]  # a label track holds one file
    result = cli(
        "detect",
        audio,
        "--jobs",
        jobs,
        "--threshold",
        LOW,
        "--format",
        fmt,
        *combined,
        "--output-dir",
        out / "each",
        "--frames",
        out / "frames.npy",
        *extra,
    )
    return fails(result, "1 of 6 file(s) failed")


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_two_jobs_write_the_same_bytes_as_one(tmp_path, audio, fmt):
    one = run_detect(audio, tmp_path / "one", 1, fmt, *(["--json-frames"] if fmt == "json" else []))
    two = run_detect(audio, tmp_path / "two", 2, fmt, *(["--json-frames"] if fmt == "json" else []))
    assert one.stderr == two.stderr  # the same lines in the same order: progress, the failure, the summary
    a, b = outputs(tmp_path / "one"), outputs(tmp_path / "two")
    assert list(a) == list(b) and len(a) == (fmt != "audacity") + 5 + 5
    assert a == b
    if fmt == "tsv":
        rows = a["all.tsv"].decode().splitlines()[1:]
        assert len({row.split("\t")[0] for row in rows}) >= 2  # events of several files to compare


def test_text_on_stdout_and_the_report_keep_input_order(audio):
    # the planted tones are no alarm to the card's verifier: the first stage's events, to compare
    one = detect([audio], jobs=1, post={"threshold": float(LOW)}, verify=False)
    two = detect([audio], jobs=2, post={"threshold": float(LOW)}, verify=False)
    assert [d.name for d in two.detections] == [d.name for d in one.detections]
    assert [d.name for d in one.detections] == sorted(d.name for d in one.detections)
    for a, b in zip(one.detections, two.detections, strict=True):
        assert a.probabilities.tobytes() == b.probabilities.tobytes() and a.events == b.events
    assert one.failures == two.failures and [f.item.name for f in two.failures] == ["broken.wav"]
    assert one.text == two.text and sum(len(d.events) for d in one.detections) > 0
    assert ok(cli("detect", audio / "sub", "--jobs", 2)).stdout.startswith("resampled.wav: ")


def test_spawned_workers_give_the_same_bytes(audio, monkeypatch):
    """Workers are spawned, not forked, when the network runs on TensorFlow (a fork would
    leave its threads broken) or this process runs other threads: the same results."""
    files = sorted(audio.glob("clip_0[01].wav"))
    one = detect(files, jobs=1)
    monkeypatch.setattr(parallel, "_fork_is_safe", lambda: False)
    two = detect(files, jobs=2)
    assert [d.probabilities.tobytes() for d in one.detections] == [d.probabilities.tobytes() for d in two.detections]


def test_fail_fast_stops_at_the_first_failure(tmp_path, audio):
    result = fails(cli("detect", audio, "--jobs", 2, "--fail-fast", "--output-dir", tmp_path / "out"), "broken.wav")
    assert "file(s) failed" not in result.stderr
    assert not (tmp_path / "out").exists()  # broken.wav comes first: nothing after it was written


def test_resume_skips_the_files_done_and_refuses_other_settings(tmp_path, audio):
    out = tmp_path / "out"
    args = ["detect", audio, "--jobs", 2, "--threshold", LOW, "--output-dir", out, "--frames", tmp_path / "f.csv", "--resume"]
    fails(cli(*args), "1 of 6 file(s) failed")
    first = outputs(out)
    assert RESUME_FILE in first and len(first) == 6
    (out / "clip_01.tsv").unlink()
    again = fails(cli(*args), "broken.wav")
    assert "4 file(s) already done" in again.stderr and "1 of 2 file(s) failed" in again.stderr
    assert outputs(out) == first
    report = detect([audio], jobs=1, post={"threshold": float(LOW)}, resume=True, outputs=_plan(out, tmp_path / "f.csv"))
    assert len(report.skipped) == 5 and [f.item.name for f in report.failures] == ["broken.wav"]
    fails(cli(*args[:5], "0.5", *args[6:]), str(out / RESUME_FILE), "post differ")
    fails(cli("detect", audio, "--resume"), "--resume", "--output-dir", code=2)
    fails(cli("detect", audio, "--resume", "--output-dir", out, "--output", tmp_path / "x.tsv"), "drop --output", code=2)


def _plan(output_dir: Path, frames: Path):
    from soundnet.outputs import OutputPlan

    return OutputPlan(output_dir=output_dir, frames=frames)


def test_extract_two_jobs_with_augmented_copies_match_one(tmp_path):
    table, _ = planted_set(tmp_path / "audio", files=3, seconds=4.0, seed=5)
    datasets = {}
    for jobs in (1, 2):
        out = tmp_path / f"ds{jobs}"
        result = ok(cli("extract", tmp_path / "audio", "-a", table, "-o", out, "--augment", 1, "--jobs", jobs))
        datasets[jobs] = out
        assert "3 file(s) extracted" in result.stderr and "3 augmented" in result.stderr
    one, two = (Dataset.open(datasets[j]) for j in (1, 2))
    assert len(one.entries) == len(two.entries) == 6
    for a, b in zip(one.entries, two.entries, strict=True):
        assert a == b
        assert a.features_path(one.root).read_bytes() == b.features_path(two.root).read_bytes()
        assert a.labels_path(one.root).read_bytes() == b.labels_path(two.root).read_bytes()
    assert (datasets[1] / MANIFEST).read_bytes() == (datasets[2] / MANIFEST).read_bytes()
    again = extract([tmp_path / "audio"], out=datasets[2], annotations=table, jobs=2)
    assert len(again.reused) == 3 and again.extracted == []


# ----------------------------------------------------------------------------------
# soundnet.parallel itself


def slow_square(x: int) -> int:
    """Later items finish first; every item logs a warning."""
    time.sleep(0.02 * (5 - x))
    logging.getLogger("soundnet.test").warning("square of %d", x)
    return x * x


def test_workers_keep_order_and_send_log_records_back(caplog):
    with caplog.at_level(logging.INFO, logger="soundnet"), Workers(2, tasks=5) as workers:
        assert workers.remote and workers.processes == 2
        results = list(workers.mapper()(slow_square, range(5)))
    assert results == [0, 1, 4, 9, 16]
    assert [r.getMessage() for r in caplog.records if r.name == "soundnet.test"] == [f"square of {x}" for x in range(5)]


def die_on_two(task: tuple) -> int:
    """A worker that is killed on the file of item 2 (os._exit: no exception, no cleanup)."""
    import os

    path, x = task
    if x == 2:
        os._exit(9)
    return x


def test_a_dead_worker_gives_one_line_naming_a_file_not_handle_is_closed():
    items = [(Path(f"rec{x}.wav"), x) for x in range(4)]
    with Workers(2, tasks=4) as workers, pytest.raises(SoundnetError) as error:
        list(workers.mapper()(die_on_two, items))
    message = str(error.value)
    assert "\n" not in message and "a worker process died" in message and "--jobs 1" in message
    assert message.split(":")[0] in {f"rec{x}.wav" for x in range(4)}


def test_item_names_come_from_a_path_attribute_or_the_first_path_of_a_tuple():
    assert parallel.item_name((Path("a.wav"), [], "dog")) == "a.wav"
    assert parallel.item_name(FileWork(Path("/abs/b.wav"), "b.wav")) == "b.wav"
    assert parallel.item_name(7) == "7"


def test_one_job_or_one_task_runs_here():
    with Workers(1, tasks=10) as workers:
        assert not workers.remote
    with Workers(4, tasks=1) as workers:
        assert not workers.remote and list(workers.mapper()(slow_square, [3])) == [9]


def test_jobs_default_to_the_usable_cores_and_refuse_zero():
    assert check_jobs(None) == usable_cores() >= 1
    with pytest.raises(Exception, match="jobs"):
        check_jobs(0)
    fails(cli("detect", "--jobs", 0, "x.wav"), "--jobs", code=2)


def test_probabilities_are_float32_in_input_order(audio):
    report = detect(sorted(audio.glob("clip_*.wav")), jobs=2)
    assert all(d.probabilities.dtype == np.float32 for d in report.detections)
    assert [d.name for d in report.detections] == sorted(p.name for p in audio.glob("clip_*.wav"))


# ----------------------------------------------------------------------------------
# a long file cut into pieces (soundnet.pieces)


def long_file(path: Path, seconds: float, *, sr: int = 16000) -> Path:
    """Noise with 3.1 kHz beeps, and two seconds of digital silence."""
    rng = np.random.default_rng(4)
    y = (rng.standard_normal(int(seconds * sr) + 77) * 0.05).astype(np.float32)
    t = np.arange(sr) / sr
    for k in range(0, int(seconds) - 1, 7):
        y[k * sr : (k + 1) * sr] += 0.4 * np.sin(2 * np.pi * 3100 * t) * (t * 4 % 1 < 0.5)
    y[30 * sr : 32 * sr] = 0
    sf.write(path, y, sr)
    return path


@pytest.fixture
def short_pieces(monkeypatch):
    """Files longer than 60 s are cut into pieces of 20 s (planning happens in this process)."""
    monkeypatch.setattr(pieces, "SPLIT_SECONDS", 60.0)
    monkeypatch.setattr(pieces, "PIECE_SECONDS", 20.0)


def test_a_long_file_in_pieces_is_the_whole_file_and_the_same_bytes_with_any_jobs(tmp_path, short_pieces):
    path = long_file(tmp_path / "long.wav", 75.0)
    assert len(_pieces(path, Detector().card)) == 4
    whole, seconds = Detector().probabilities(path)
    one = detect([path], jobs=1, post={"threshold": 0.01}).detections[0]
    two = detect([path], jobs=2, post={"threshold": 0.01}).detections[0]
    assert one.probabilities.tobytes() == two.probabilities.tobytes() and one.events == two.events
    assert one.duration == seconds and len(one.probabilities) == len(whole) == 7501
    np.testing.assert_allclose(one.probabilities, whole, atol=1e-6)  # the pieces' context is exact
    assert (one.probabilities[3002:3198] == 0).all()  # the silence, in the second piece
    assert one.events  # something to compare


def test_a_long_file_gone_before_its_verifier_reads_it_fails_alone(tmp_path, short_pieces, monkeypatch):
    """The bundled card's verifier reads each event's audio once the pieces are joined:
    a file removed in between is that file's one-line failure; the batch goes on."""
    gone, kept = long_file(tmp_path / "gone.wav", 75.0), long_file(tmp_path / "kept.wav", 75.0)
    assert Detector().card.verifier is not None
    piece_sums = Detector.piece_sums

    def then_remove(self, path, piece):
        sums = piece_sums(self, path, piece)
        if Path(path).name == "gone.wav" and piece.last:
            Path(path).unlink()
        return sums

    monkeypatch.setattr(Detector, "piece_sums", then_remove)
    report = detect([gone, kept], jobs=1, post={"threshold": 0.01})
    assert [(f.item, f.message.split(":")[0]) for f in report.failures] == [(gone, str(gone))]
    assert [d.path for d in report.detections] == [kept] and report.detections[0].events


def test_only_long_files_at_the_model_rate_in_exact_length_formats_are_cut(tmp_path, short_pieces):
    card = Detector().card
    assert _pieces(long_file(tmp_path / "short.wav", 50.0), card) == [None]
    assert _pieces(long_file(tmp_path / "other_rate.wav", 70.0, sr=22050), card) == [None]
    y, sr = sf.read(long_file(tmp_path / "long.wav", 70.0))
    sf.write(tmp_path / "long.ogg", y, sr)
    assert _pieces(tmp_path / "long.ogg", card) == [None]
    sf.write(tmp_path / "long.flac", y, sr)
    assert len(_pieces(tmp_path / "long.flac", card)) == 4
    assert _pieces(tmp_path / "missing.wav", card) == [None]  # its worker reports it


@pytest.mark.parametrize("frames", [100, 101, 149, 150, 151, 6000, 6049, 6050, 6099, 12345])
def test_pieces_own_every_window_once(frames):
    window, hop = 100, 50
    config = FeatureConfig()
    samples = (frames - 1) * config.hop_length + 37
    monkey = pytest.MonkeyPatch()
    monkey.setattr(pieces, "SPLIT_SECONDS", 1.0)
    monkey.setattr(pieces, "PIECE_SECONDS", 10.0)
    try:
        plan = pieces.plan(samples, config=config, window=window, hop=hop)
    finally:
        monkey.undo()
    grid = pieces.window_grid(frames, window=window, hop=hop)
    owned = np.concatenate([pieces.piece_starts(p, window=window, hop=hop) for p in plan])
    assert owned.tolist() == grid.tolist() and plan[-1].stop == frames == plan[0].frames
    assert [p.first for p in plan] == sorted({p.first for p in plan}) and plan[0].first == 0


def test_a_failing_piece_fails_its_file_once():
    seen = []
    batch = run_batch(
        _fail_odd,
        [("a", 0), ("a", 1), ("a", 3), ("b", 0)],
        key=lambda item: item[0],
        on_result=lambda item, _: seen.append(item),
        on_failure=lambda item: seen.append(("failed", item)),
    )
    assert [f.item for f in batch.failures] == [("a", 1)] and seen == [("a", 0), ("failed", ("a", 1)), ("b", 0)]


def _fail_odd(item):
    if item[1] % 2:
        raise SoundnetError(f"{item}: odd")
    return item
