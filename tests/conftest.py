"""Shared test set-up: the helpers in this folder (planted.py, clirun.py) importable, and
ONE trained run for the whole pytest session.

Train once, use everywhere a test only needs *a* trained detector: ``trained`` gives the
planted training audio and its table, the extracted dataset, the run folder and unseen
planted test files with their truth. No test may change any of it (copy the run first,
``shutil.copytree(trained.run, tmp_path / "run")``): every test using ``trained`` fails
if a file under it was added, removed or rewritten.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from clirun import cli, ok  # noqa: E402
from planted import planted_set  # noqa: E402


@dataclass(frozen=True)
class TrainedRun:
    root: Path
    audio: Path  # 10 planted training files, 8 s each
    table: Path  # their annotations (DCASE TSV)
    data: Path  # the dataset extracted from them
    run: Path  # the run folder trained on it
    test: Path  # 4 unseen planted files, 8 s each (clip_03.wav holds no event)
    test_table: Path
    truth: dict[str, list[tuple[float, float]]]  # test file name -> planted (onset, offset)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root: (size, modification time)."""
    seen = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            stat = path.lstat()
            seen[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return seen


@pytest.fixture(scope="session")
def trained_session(tmp_path_factory) -> TrainedRun:
    root = tmp_path_factory.mktemp("trained")
    table, _ = planted_set(root / "train", files=10, seconds=8.0, seed=1)
    config = root / "fast.yaml"
    config.write_text("training:\n  epochs: 12\n  patience: 4\n  batch_size: 16\n")
    ok(cli("extract", root / "train", "--annotations", table, "--out", root / "data"))
    ok(cli("train", root / "data", "--out", root / "run", "--config", config, "--seed", 3))
    test_table, truth = planted_set(root / "test", files=4, seconds=8.0, seed=7)
    return TrainedRun(root, root / "train", table, root / "data", root / "run", root / "test", test_table, truth)


@pytest.fixture
def trained(trained_session: TrainedRun) -> TrainedRun:
    """The session's trained run; the test fails if it changed anything under it."""
    before = _snapshot(trained_session.root)
    yield trained_session
    after = _snapshot(trained_session.root)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"the test changed the shared trained run (copy it first): {changed}"
