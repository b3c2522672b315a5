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

from soundnet import parallel
from soundnet.dataset import MANIFEST, Dataset, extract
from soundnet.detection import detect
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
    one = detect([audio], jobs=1, post={"threshold": float(LOW)})
    two = detect([audio], jobs=2, post={"threshold": float(LOW)})
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
