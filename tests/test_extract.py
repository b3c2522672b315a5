"""Tests of soundnet.dataset.extract on planted audio (no TensorFlow)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose
from planted import planted_set

from soundnet.audio import load_audio
from soundnet.config import FeatureConfig
from soundnet.dataset import MANIFEST, Dataset, extract
from soundnet.errors import SoundnetError
from soundnet.features import compute_features

SECONDS = 3.0
FILES = 4
CONFIG = FeatureConfig()


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path, dict[str, list[tuple[float, float]]]]:
    table, truth = planted_set(tmp_path / "audio", files=FILES, seconds=SECONDS, seed=3)
    return tmp_path / "audio", table, truth


def arrays(dataset: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    ds = Dataset.open(dataset)
    return {Path(e.source).name: (np.load(e.features_path(dataset)), ds.labels(e)) for e in ds.entries}


def mtimes(dataset: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (dataset / "files").iterdir()}


def test_extract_counts_features_and_labels(tmp_path, planted):
    audio, table, truth = planted
    out = tmp_path / "ds"
    report = extract([audio], out=out, annotations=table)
    assert report.target == "beep"
    assert sorted(p.name for p in report.extracted) == sorted(truth)
    assert report.reused == [] and report.skipped == [] and report.failures == []

    manifest = json.loads((out / MANIFEST).read_text())
    frames = 1 + int(SECONDS * 16000) // 160
    assert manifest["target"] == "beep"
    assert manifest["counts"]["files"] == FILES
    assert manifest["counts"]["frames"] == FILES * frames
    assert manifest["counts"]["events"] == sum(len(v) for v in truth.values())
    assert manifest["features"]["n_mfcc"] == 64

    ds = Dataset.open(out)
    assert ds.target == "beep" and ds.feature_config == CONFIG
    assert [Path(e.source).name for e in ds.entries] == sorted(truth)
    positive = 0
    for entry in ds.entries:
        source = Path(entry.source)
        assert source == (audio / source.name).resolve()
        features = np.load(entry.features_path(out))
        assert features.shape == (frames, 129) and features.dtype == np.float32
        assert entry.frames == frames
        assert_allclose(features, compute_features(load_audio(source, sample_rate=16000), config=CONFIG), atol=1e-4, rtol=1e-5)
        rows = ds.feature_rows(entry)
        assert len(rows) == frames
        assert_allclose(rows.read(10, 20), features[10:20])

        labels = ds.labels(entry)
        assert labels.dtype == np.uint8 and labels.shape == (frames,)
        events = truth[source.name]
        centres = np.arange(frames) * 0.01
        expected = np.zeros(frames, np.uint8)
        for onset, offset in events:
            expected[(centres >= onset - 1e-9) & (centres < offset - 1e-9)] = 1
        assert np.array_equal(labels, expected)
        assert entry.positive_frames == int(labels.sum())
        assert entry.events == len(events)
        positive += entry.positive_frames
    assert manifest["counts"]["positive_frames"] == positive
    assert positive > 0
    assert any(not v for v in truth.values())  # a file without events is in the set too


def test_rerun_reuses_everything_and_rewrites_nothing(tmp_path, planted):
    audio, table, truth = planted
    out = tmp_path / "ds"
    extract([audio], out=out, annotations=table)
    before, data = mtimes(out), arrays(out)
    report = extract([audio], out=out, annotations=table)
    assert sorted(p.name for p in report.reused) == sorted(truth)
    assert report.extracted == [] and report.failures == []
    assert mtimes(out) == before
    again = arrays(out)
    for name, (features, labels) in data.items():
        assert np.array_equal(again[name][0], features) and np.array_equal(again[name][1], labels)


def test_touching_the_table_reuses_everything(tmp_path, planted):
    audio, table, _ = planted
    out = tmp_path / "ds"
    extract([audio], out=out, annotations=table)
    before = mtimes(out)
    os.utime(table, ns=(table.stat().st_atime_ns, table.stat().st_mtime_ns + 5_000_000_000))
    report = extract([audio], out=out, annotations=table)
    assert report.extracted == [] and len(report.reused) == FILES
    assert mtimes(out) == before


def test_changed_annotation_relabels_without_recomputing_features(tmp_path, planted):
    audio, table, truth = planted
    out = tmp_path / "ds"
    extract([audio], out=out, annotations=table)
    before = mtimes(out)
    changed = next(name for name, events in truth.items() if events)
    lines = [line for line in table.read_text().splitlines() if not line.startswith(changed)]
    lines.append(f"{changed}\t0.1\t0.2\tbeep")
    table.write_text("\n".join(lines) + "\n")

    report = extract([audio], out=out, annotations=table)
    assert [p.name for p in report.extracted] == [changed]
    assert len(report.reused) == FILES - 1
    after = mtimes(out)
    ds = Dataset.open(out)
    entry = next(e for e in ds.entries if Path(e.source).name == changed)
    assert after[entry.features_path(out).name] == before[entry.features_path(out).name]  # features not recomputed
    labels = ds.labels(entry)
    assert np.flatnonzero(labels).tolist() == list(range(10, 20))
    assert entry.events == 1 and entry.positive_frames == 10
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["counts"]["events"] == sum(len(v) for k, v in truth.items() if k != changed) + 1


def test_changed_annotation_past_the_end_is_refused_on_rerun(tmp_path, planted):
    audio, table, truth = planted
    out = tmp_path / "ds"
    extract([audio], out=out, annotations=table)
    name = sorted(truth)[0]
    table.write_text(table.read_text() + f"{name}\t2.5\t{SECONDS + 1}\tbeep\n")
    report = extract([audio], out=out, annotations=table)
    assert [f.item.name for f in report.failures] == [name]


def test_changed_audio_is_recomputed(tmp_path, planted):
    audio, table, truth = planted
    out = tmp_path / "ds"
    extract([audio], out=out, annotations=table)
    name = sorted(truth)[1]
    path = audio / name
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 7_000_000_000))
    report = extract([audio], out=out, annotations=table)
    assert [p.name for p in report.extracted] == [name]


def test_jobs_two_gives_the_same_arrays_and_reports_failures(tmp_path, planted):
    """One test for both (worker processes are slow to start): a corrupt file among good ones, with 1 and 2 jobs."""
    audio, table, _ = planted
    bad = audio / "zero.wav"
    bad.write_bytes(b"")
    table.write_text(table.read_text() + "zero.wav\n")
    one, two = tmp_path / "one", tmp_path / "two"
    report_one = extract([audio], out=one, annotations=table, jobs=1)
    report = extract([audio], out=two, annotations=table, jobs=2)
    assert len(report.extracted) == FILES
    assert [f.item for f in report.failures] == [bad] and "zero.wav" in report.failures[0].message
    assert report.failures == report_one.failures
    a, b = arrays(one), arrays(two)
    assert a.keys() == b.keys() and len(a) == FILES
    for name in a:
        assert np.array_equal(a[name][0], b[name][0]), name
        assert np.array_equal(a[name][1], b[name][1]), name
    m1, m2 = json.loads((one / MANIFEST).read_text()), json.loads((two / MANIFEST).read_text())
    assert m1 == m2


def test_corrupt_file_is_reported_and_others_extracted(tmp_path, planted):
    audio, table, truth = planted
    bad = audio / "broken clip.wav"
    bad.write_text("not a wav file\n" * 10)
    table.write_text(table.read_text() + "broken clip.wav\t0.5\t1.0\tbeep\n")
    out = tmp_path / "ds"
    report = extract([audio], out=out, annotations=table)
    assert [f.item for f in report.failures] == [bad]
    assert "broken clip.wav" in report.failures[0].message
    assert sorted(p.name for p in report.extracted) == sorted(truth)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["counts"]["files"] == FILES
    assert "broken clip.wav" not in json.dumps(manifest["files"])


def test_event_past_the_end_is_a_failure_naming_the_line(tmp_path, planted):
    audio, table, truth = planted
    name = sorted(truth)[0]
    text = table.read_text()
    table.write_text(text + f"{name}\t2.5\t{SECONDS + 1}\tbeep\n")
    report = extract([audio], out=tmp_path / "ds", annotations=table)
    assert [f.item.name for f in report.failures] == [name]
    assert f"line {len(text.splitlines()) + 1}" in report.failures[0].message
    assert len(report.extracted) == FILES - 1


def test_file_without_annotation_is_skipped(tmp_path, planted):
    audio, table, truth = planted
    extra = audio / "sub" / "unlisted.wav"
    extra.parent.mkdir()
    extra.write_bytes((audio / sorted(truth)[0]).read_bytes())
    out = tmp_path / "ds"
    report = extract([audio], out=out, annotations=table)
    assert report.skipped == [extra]
    assert len(report.extracted) == FILES
    assert json.loads((out / MANIFEST).read_text())["counts"]["files"] == FILES


def test_unknown_file_in_table_is_an_error(tmp_path, planted):
    audio, table, _ = planted
    table.write_text(table.read_text() + "ghost.wav\t0\t1\tbeep\n")
    with pytest.raises(SoundnetError, match="ghost.wav"):
        extract([audio], out=tmp_path / "ds", annotations=table)


def test_other_target_on_existing_dataset_is_refused(tmp_path, planted):
    audio, table, _ = planted
    out = tmp_path / "ds"
    extract([audio], out=out, annotations=table)
    table.write_text(table.read_text() + "clip_00.wav\t0.0\t0.1\tother\n")
    with pytest.raises(SoundnetError, match="beep"):
        extract([audio], out=out, annotations=table, target="other")


def test_target_label_filters_events(tmp_path, planted):
    audio, table, truth = planted
    table.write_text(table.read_text() + "clip_00.wav\t2.0\t2.2\tother\n")
    out = tmp_path / "ds"
    with pytest.raises(SoundnetError, match="other"):
        extract([audio], out=out, annotations=table)  # two labels, no --target
    report = extract([audio], out=out, annotations=table, target="beep")
    assert report.target == "beep"
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["counts"]["events"] == sum(len(v) for v in truth.values())


def test_audacity_sidecars(tmp_path, planted):
    audio, _, truth = planted
    for name, events in truth.items():
        (audio / name).with_suffix(".txt").write_text("".join(f"{a}\t{b}\tbeep\n" for a, b in events))
    out = tmp_path / "ds"
    report = extract([audio], out=out)
    assert len(report.extracted) == FILES and report.target == "beep"
    assert json.loads((out / MANIFEST).read_text())["counts"]["events"] == sum(len(v) for v in truth.values())


def test_bad_jobs(tmp_path, planted):
    audio, table, _ = planted
    with pytest.raises(SoundnetError, match="jobs"):
        extract([audio], out=tmp_path / "ds", annotations=table, jobs=0)
