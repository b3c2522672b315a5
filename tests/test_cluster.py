"""detect and extract on a Dask cluster (--scheduler): a real LocalCluster of two worker
processes on 127.0.0.1, started here. Same outputs as a local run, the same failure
reports, the model sent to the workers as bytes, and a rerun resuming."""

from __future__ import annotations

import shutil
from pathlib import Path

import dask
import numpy as np
import pytest
import soundfile as sf
from clirun import cli, fails, ok
from distributed import Client, LocalCluster
from planted import planted_set

from soundnet import pieces
from soundnet.dataset import MANIFEST, Dataset
from soundnet.detection import BUNDLED_MODEL
from soundnet.outputs import RESUME_FILE
from soundnet.run import RunFiles


@pytest.fixture(scope="module")
def scheduler():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> tuple[Path, Path]:
    """Four planted files, a 22.05 kHz one, a corrupt one, and the annotation table."""
    root = tmp_path_factory.mktemp("cluster")
    table, _ = planted_set(root / "audio", files=4, seconds=5.0, seed=21)
    y, sr = sf.read(root / "audio" / "clip_00.wav")
    sf.write(root / "audio" / "resampled.wav", y, 22050)
    (root / "audio" / "broken.wav").write_text("not audio\n")
    table.write_text(table.read_text() + "resampled.wav\t1.0\t1.5\tbeep\nbroken.wav\t0.5\t1.0\tbeep\n")
    return root / "audio", table


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_detect_on_the_cluster_matches_a_local_run(tmp_path, audio, scheduler, monkeypatch):
    folder, _ = audio
    model = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL, model)
    monkeypatch.setattr(pieces, "SPLIT_SECONDS", 20.0)  # the long file goes in 3 pieces
    monkeypatch.setattr(pieces, "PIECE_SECONDS", 10.0)
    long = tmp_path / "long" / "long.wav"
    long.parent.mkdir()
    y, sr = sf.read(folder / "clip_01.wav")
    sf.write(long, np.tile(y, 5), sr)
    results = {}
    for where, option in (("local", ["--jobs", 1]), ("cluster", ["--scheduler", scheduler])):
        out = tmp_path / where
        args = ["--model", model, "--threshold", "0.02", "--format", "json", "--json-frames", "--output", out / "all.json"]
        results[where] = fails(
            cli("detect", folder, long, *args, "--output-dir", out / "each", "--frames", out / "f.npy", *option),
            "1 of 7 file(s) failed",
        )
    assert results["local"].stderr == results["cluster"].stderr  # the failure, as it happened and in the summary
    assert outputs(tmp_path / "local") == outputs(tmp_path / "cluster")
    assert len(outputs(tmp_path / "cluster")) == 1 + 6 + 6
    # the workers ran the model from the bytes sent to them, not from the folder given
    with Client(scheduler) as client:
        folders = client.run(eval, "[str(p) for p in __import__('soundnet.run').run._FOLDERS.values()]")
    used = [Path(p) for ps in folders.values() for p in ps]
    assert used and all(outputs(p) == outputs(model) and p != model for p in used)


def test_detect_resumes_on_the_cluster(tmp_path, audio, scheduler):
    folder, _ = audio
    out = tmp_path / "out"
    args = ["detect", folder, "--scheduler", scheduler, "--output-dir", out, "--resume"]
    fails(cli(*args), "1 of 6 file(s) failed")
    first = outputs(out)
    assert RESUME_FILE in first and len(first) == 6
    (out / "clip_02.tsv").unlink()
    again = fails(cli(*args), "1 of 2 file(s) failed")
    assert "4 file(s) already done" in again.stderr
    assert outputs(out) == first


def test_extract_on_the_cluster_matches_a_local_run_and_resumes(tmp_path, audio, scheduler):
    folder, table = audio
    local, remote = tmp_path / "local", tmp_path / "remote"
    one = fails(cli("extract", folder, "-a", table, "-o", local, "--jobs", 1), "1 of 6 file(s) failed")
    two = fails(cli("extract", folder, "-a", table, "-o", remote, "--scheduler", scheduler), "1 of 6 file(s) failed")
    assert "5 file(s) extracted" in two.stderr
    assert [line for line in one.stderr.splitlines() if "broken.wav" in line] == [
        line for line in two.stderr.splitlines() if "broken.wav" in line
    ]
    a, b = Dataset.open(local), Dataset.open(remote)
    assert a.entries == b.entries and len(a.entries) == 5
    for entry in a.entries:
        assert entry.features_path(local).read_bytes() == entry.features_path(remote).read_bytes()
        assert entry.labels_path(local).read_bytes() == entry.labels_path(remote).read_bytes()
    assert (local / MANIFEST).read_bytes() == (remote / MANIFEST).read_bytes()
    again = fails(cli("extract", folder, "-a", table, "-o", remote, "--scheduler", scheduler), "broken.wav")
    assert "0 file(s) extracted, 5 unchanged" in again.stderr


def test_run_files_rebuild_the_folder_once():
    files = RunFiles.read(BUNDLED_MODEL)
    assert files.digest == RunFiles.read(BUNDLED_MODEL).digest and set(files.files) == {
        "card.json",
        "model.keras",
        "model.tflite",
    }
    folder = files.folder()
    assert folder == files.folder() and outputs(folder) == outputs(BUNDLED_MODEL)


def test_errors_name_the_scheduler_and_stdin(tmp_path, audio):
    folder, _ = audio
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        fails(cli("detect", folder / "clip_00.wav", "--scheduler", "tcp://127.0.0.1:9"), "tcp://127.0.0.1:9", "Dask scheduler")
    result = ok(cli("detect", "--help"))
    assert "--scheduler" in result.stdout and "--jobs" in result.stdout
    fails(cli("detect", "-", "--scheduler", "tcp://127.0.0.1:9"), "standard input", code=2)


def _mmapped_blocks_for_a_4mb_array(after_soundnet_task: bool) -> tuple[str | None, int]:
    """In a worker: Dask's MALLOC_TRIM_THRESHOLD_, and how many fresh mmap blocks holding
    a 4 MB array costs (glibc's mallinfo2().hblks), before or after soundnet's first task."""
    import ctypes
    import os

    from soundnet import parallel

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks")] + [
            (name, ctypes.c_size_t) for name in ("fsmblks", "uordblks", "fordblks", "keepcost")
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2
    if after_soundnet_task:
        parallel._unpack_shared(lambda item, shared: item, 0)
    before = libc.mallinfo2().hblks
    block = bytearray(4 * 2**20)
    grown = libc.mallinfo2().hblks - before
    del block
    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), grown


def test_a_soundnet_task_keeps_large_arrays_off_fresh_mmaps():
    """Dask's workers run with MALLOC_TRIM_THRESHOLD_ set, which pins glibc's mmap
    threshold at 128 KiB: every large array a fresh, zeroed mapping (1.4x the CPU per
    file, BENCHMARKS.md). soundnet's task raises it, so a 4 MB array comes from the heap."""
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's malloc only")
    # a worker of its own: nothing of soundnet has run in it yet
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        with Client(cluster, set_as_default=False) as client:
            ((trim, fresh),) = client.run(_mmapped_blocks_for_a_4mb_array, False).values()
            ((_, after),) = client.run(_mmapped_blocks_for_a_4mb_array, True).values()
    assert trim == "65536"  # Dask's setting, which the cluster's workers really have
    assert (fresh, after) == (1, 0)
