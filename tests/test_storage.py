"""Tests of soundnet.storage: all-or-nothing writes and checked row reads of .npy files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from soundnet.errors import SoundnetError
from soundnet.storage import NpyRows, save_npy, save_npy_chunks, write_atomic, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "old\n")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(SoundnetError, match="out.txt: cannot write \\(No space left on device\\)"):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_written_files_get_the_usual_permissions(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_a_device_is_written_to_not_replaced():
    write_text(Path(os.devnull), "nothing\n")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_npy_chunks_round_trip_and_leave_no_temporary(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal((n, 3)).astype(np.float32) for n in (5, 0, 17, 1)]
    rows = save_npy_chunks(tmp_path / "x.npy", iter(chunks), columns=3, dtype=np.float32)
    assert rows == 23
    assert np.array_equal(np.load(tmp_path / "x.npy"), np.concatenate(chunks))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    assert np.array_equal(NpyRows(tmp_path / "x.npy").read(4, 7), np.concatenate(chunks)[4:7])


def test_npy_rows_refuse_object_arrays_and_truncation(tmp_path):
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(SoundnetError, match="objects.npy: expected a numeric array"):
        NpyRows(objects)
    whole = tmp_path / "whole.npy"
    save_npy(whole, np.ones((10, 4), np.float32))
    whole.write_bytes(whole.read_bytes()[:-5])
    with pytest.raises(SoundnetError, match="whole.npy: truncated or damaged"):
        NpyRows(whole)


def test_a_symlink_keeps_pointing_at_the_rewritten_file(tmp_path):
    real = tmp_path / "real.tsv"
    real.write_text("old\n")
    link = tmp_path / "link.tsv"
    link.symlink_to(real)
    write_text(link, "new\n")
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert real.read_text() == "new\n"
