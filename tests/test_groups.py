"""Groups of recordings and honest validation: synth's folds, the group column,
--group-pattern, --negatives, and splits that never cut a group (no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from planted import planted_set

from soundnet.dataset import MANIFEST, Dataset, extract
from soundnet.errors import SoundnetError, UsageError
from soundnet.formats import read_table
from soundnet.groups import BY_COLUMN, BY_FILE, BY_PATTERN, file_groups, split_by_group
from soundnet.synth import synthesize

SR = 16000


def write(path: Path, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y.astype(np.float32), SR)


@given(
    st.lists(st.integers(0, 7), min_size=2, max_size=40),
    st.floats(0.05, 0.6),
    st.integers(0, 1000),
    st.lists(st.booleans(), min_size=40, max_size=40),
)
@settings(max_examples=150, deadline=None)
def test_a_split_never_cuts_a_group(groups, fraction, seed, negative):
    names = [f"g{g}" for g in groups]
    strata = negative[: len(names)]
    split = split_by_group(names, fraction=fraction, seed=seed, strata=strata)
    assert sorted(split.train + split.validation) == list(range(len(names)))
    for stratum in set(strata):
        items = [i for i in range(len(names)) if strata[i] == stratum]
        held = {names[i] for i in items if i in split.validation}
        kept = {names[i] for i in items if i in split.train}
        if len({names[i] for i in items}) >= 2:
            assert held and kept and not held & kept  # whole groups, at least one on each side
        elif len(items) >= 2:
            assert split.by == "file"  # one group only: split by file, and said so
    assert split == split_by_group(names, fraction=fraction, seed=seed, strata=strata)  # seeded


def test_split_holds_out_about_the_fraction_and_reports_groups():
    names = [f"site{i // 4}" for i in range(40)]  # 10 groups of 4 files
    split = split_by_group(names, fraction=0.2, seed=0)
    assert len(split.validation) == 8 and (split.train_groups, split.validation_groups) == (8, 2)
    assert split.by == "group"


def test_file_groups_by_pattern_column_or_file(tmp_path):
    a, b = tmp_path / "siteA_rec1.wav", tmp_path / "siteB_rec1.wav"
    names = {a: "siteA_rec1.wav", b: "siteB_rec1.wav"}
    assert file_groups(names, {}, r"site(\w)_") == ({a: "A", b: "B"}, BY_PATTERN)
    assert file_groups(names, {}, r"site\w") == ({a: "siteA", b: "siteB"}, BY_PATTERN)  # no capture: the match
    assert file_groups(names, {a: "x", b: None}, None) == ({a: "x", b: "siteB_rec1.wav"}, BY_COLUMN)
    assert file_groups(names, {}, None) == (names, BY_FILE)
    with pytest.raises(SoundnetError, match=r"siteB_rec1.wav.*finds no group"):
        file_groups(names, {}, r"siteA")
    with pytest.raises(UsageError, match="not a regular expression"):
        file_groups(names, {}, r"site(")


def test_synth_folds_share_no_clip_and_no_background(tmp_path):
    """Five clips of distinct lengths and five backgrounds of distinct levels: each
    mixture's clip is known by its event's length, its background by its level."""
    lengths = (0.1, 0.2, 0.3, 0.4, 0.5)
    rng = np.random.default_rng(0)
    for k, seconds in enumerate(lengths):
        t = np.arange(int(seconds * SR)) / SR
        write(tmp_path / "clips" / f"c{k}.wav", 0.3 * np.sin(2 * np.pi * 1000 * t))
        write(tmp_path / "bg" / f"b{k}.wav", 0.01 * (k + 1) * rng.standard_normal(3 * SR))
    events = synthesize(tmp_path / "clips", tmp_path / "bg", tmp_path / "mix", n=40, duration=1.0, presence=1.0, groups=5)
    rows = read_table(tmp_path / "mix" / "annotations.tsv")
    group_of = {row.filename: row.group for row in rows}
    assert sorted(set(group_of.values())) == [f"fold{k}" for k in range(1, 6)]
    clips: dict[str, set] = {}
    levels: dict[str, set] = {}
    for event in events:
        clips.setdefault(group_of[event.filename], set()).add(round(event.offset - event.onset, 1))
        y, _ = sf.read(str(tmp_path / "mix" / event.filename))
        quiet = np.r_[y[: int(event.onset * SR)], y[int(event.offset * SR) + 1 :]]
        levels.setdefault(group_of[event.filename], set()).add(round(float(np.std(quiet)) * 100))
    assert all(len(c) == 1 for c in clips.values()) and len(set.union(*clips.values())) == 5
    assert all(len(v) == 1 for v in levels.values()) and len(set.union(*levels.values())) == 5


def test_extract_keeps_the_table_groups_and_training_holds_them_out(tmp_path):
    from soundnet.training import split_files

    audio = tmp_path / "audio"
    table, truth = planted_set(audio, files=6, seconds=2.0, seed=1)
    lines = table.read_text().splitlines()
    names = sorted(truth)
    grouped = ["filename\tonset\toffset\tevent_label\tgroup"]
    for line in lines[1:] if lines[0].startswith("filename") else lines:
        cells = line.split("\t")
        cells += [""] * (4 - len(cells))  # a file without events: empty time and label fields
        grouped.append("\t".join([*cells, f"site{names.index(cells[0]) // 2}"]))
    (tmp_path / "grouped.tsv").write_text("\n".join(grouped) + "\n")
    extract([audio], out=tmp_path / "ds", annotations=tmp_path / "grouped.tsv")
    dataset = Dataset.open(tmp_path / "ds")
    assert dataset.groups_by == BY_COLUMN
    assert {Path(e.source).name: e.group for e in dataset.entries} == {n: f"site{i // 2}" for i, n in enumerate(names)}
    for seed in range(10):
        train, validation, split = split_files(dataset.entries, fraction=0.3, seed=seed)
        assert split.by == "group" and not {e.group for e in train} & {e.group for e in validation}


def test_group_pattern_overrides_the_column(tmp_path):
    audio = tmp_path / "audio"
    table, _ = planted_set(audio, files=4, seconds=2.0, seed=2)
    extract([audio], out=tmp_path / "ds", annotations=table, group_pattern=r"(\d)\.wav$")
    manifest = json.loads((tmp_path / "ds" / MANIFEST).read_text())
    assert manifest["groups"] == {"by": BY_PATTERN, "pattern": r"(\d)\.wav$"}
    assert len({e["group"] for e in manifest["files"]}) == manifest["counts"]["groups"]


def test_negatives_are_all_negative_and_need_no_annotation(tmp_path):
    audio = tmp_path / "audio"
    table, _ = planted_set(audio, files=2, seconds=2.0, seed=4)
    write(tmp_path / "noise" / "street.wav", 0.05 * np.random.default_rng(1).standard_normal(5 * SR))
    write(tmp_path / "noise" / "sub" / "hum.wav", 0.05 * np.sin(np.arange(3 * SR) * 2 * np.pi * 50 / SR))
    report = extract([audio], out=tmp_path / "ds", annotations=table, negatives=[tmp_path / "noise"])
    assert len(report.extracted) == 4
    dataset = Dataset.open(tmp_path / "ds")
    negatives = [e for e in dataset.entries if e.negative]
    assert sorted(Path(e.source).name for e in negatives) == ["hum.wav", "street.wav"]
    for entry in negatives:
        labels = dataset.labels(entry)
        assert len(labels) == entry.frames > 0 and not labels.any() and entry.events == 0
        assert entry.group.startswith("negatives/")
    manifest = json.loads((tmp_path / "ds" / MANIFEST).read_text())
    assert manifest["counts"]["negative_files"] == 2


def test_a_file_given_as_audio_and_negative_is_refused(tmp_path):
    audio = tmp_path / "audio"
    table, truth = planted_set(audio, files=2, seconds=2.0, seed=4)
    with pytest.raises(UsageError, match="both as audio"):
        extract([audio], out=tmp_path / "ds", annotations=table, negatives=[audio / sorted(truth)[0]])
    assert not (tmp_path / "ds").exists()


def test_two_groups_for_one_file_is_an_error_naming_the_line(tmp_path):
    audio = tmp_path / "audio"
    _, truth = planted_set(audio, files=1, seconds=8.0, seed=5, empty_every=0)
    name = sorted(truth)[0]
    (on1, off1), (on2, off2) = truth[name][:2]
    text = f"filename\tonset\toffset\tevent_label\tgroup\n{name}\t{on1}\t{off1}\tbeep\ta\n{name}\t{on2}\t{off2}\tbeep\tb\n"
    (tmp_path / "t.tsv").write_text(text)
    with pytest.raises(SoundnetError, match=r"t.tsv line 3: group 'b' differs"):
        extract([audio], out=tmp_path / "ds", annotations=tmp_path / "t.tsv")


def test_augmented_copies_train_with_their_recording_and_never_validate(tmp_path):
    from soundnet.config import AugmentConfig
    from soundnet.training import split_files

    audio = tmp_path / "audio"
    table, truth = planted_set(audio, files=6, seconds=3.0, seed=6)
    write(tmp_path / "noise" / "n.wav", 0.05 * np.random.default_rng(2).standard_normal(4 * SR))
    report = extract(
        [audio], out=tmp_path / "ds", annotations=table, negatives=[tmp_path / "noise"], augmentation=AugmentConfig(copies=2)
    )
    assert report.augmented == 12  # annotated recordings only: the negatives are the noise mixed in
    dataset = Dataset.open(tmp_path / "ds")
    copies = [e for e in dataset.entries if e.copy]
    assert sorted({e.original_id for e in copies}) == sorted(e.id for e in dataset.entries if not e.copy and not e.negative)
    for copy in copies:  # the events moved with the audio: as many, labelled on the copy's own frames
        original = next(e for e in dataset.entries if e.id == copy.original_id)
        assert copy.events == original.events and copy.group == original.group
        assert (copy.positive_frames > 0) == (original.positive_frames > 0)
    for seed in range(5):
        train, validation, _ = split_files(dataset.entries, fraction=0.3, seed=seed)
        assert not any(e.copy for e in validation)
        assert {e.original_id for e in train if e.copy} == {e.id for e in train if not e.copy and not e.negative}
    again = extract(
        [audio], out=tmp_path / "ds", annotations=table, negatives=[tmp_path / "noise"], augmentation=AugmentConfig(copies=2)
    )
    assert again.augmented == 12 and again.extracted == []  # nothing redone
    assert json.loads((tmp_path / "ds" / MANIFEST).read_text())["counts"]["augmented_copies"] == 12
