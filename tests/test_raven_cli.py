"""Raven tables end to end: a detector trained from Raven Pro tables finds its planted
events; detect's Raven output read back as annotations gives the same events; evaluate
scores the files given when the reference table covers more."""

from __future__ import annotations

import json
import shutil

import pytest
from clirun import cli, ok
from planted import planted_set
from test_cli import onset_f1
from test_raven import as_raven_sidecars, labels_by_file

from soundnet.annotations import read_annotations
from soundnet.formats import read_events


def test_a_detector_trained_from_raven_tables_finds_its_planted_events(trained, tmp_path):
    _, truth = planted_set(tmp_path / "train", files=4, seconds=6.0, seed=1)
    as_raven_sidecars(tmp_path / "train", truth)
    ok(cli("extract", tmp_path / "train", "--out", tmp_path / "data"))
    assert sum(int(labels.sum()) for labels in labels_by_file(tmp_path / "data").values()) > 0
    config = tmp_path / "fast.yaml"
    config.write_text("training:\n  epochs: 8\n  patience: 3\n  batch_size: 16\n")
    ok(cli("train", tmp_path / "data", "--out", tmp_path / "run", "--config", config, "--seed", 3))
    out = tmp_path / "events.tsv"
    ok(cli("detect", trained.test, "--model", tmp_path / "run", "--format", "tsv", "--output", out))
    f1 = onset_f1(trained.truth, read_events(out, "tsv"))
    assert f1 >= 0.9, f1


def test_detects_raven_table_read_back_as_annotations_gives_the_same_events(trained, tmp_path):
    raven, tsv = tmp_path / "events.selections.txt", tmp_path / "events.tsv"
    ok(cli("detect", trained.test, "--model", trained.run, "--format", "raven", "--output", raven))
    ok(cli("detect", trained.test, "--model", trained.run, "--format", "tsv", "--output", tsv))
    detected = read_events(tsv, "tsv")
    assert detected
    back = [row.event for row in read_annotations(raven)]
    assert [(e.filename, e.label) for e in back] == [(e.filename, e.label) for e in detected]
    for got, expected in zip(back, detected, strict=True):
        assert (got.onset, got.offset) == pytest.approx((expected.onset, expected.offset), abs=5e-4)  # tsv: 3 decimals
    # scored as the reference, detect's own events are perfect
    report = tmp_path / "self.json"
    ok(cli("evaluate", trained.test, "--annotations", raven, "--model", trained.run, "--output", report))
    assert json.loads(report.read_text())["event_onset"]["f_measure"] == pytest.approx(1.0)
    # as an estimated table, the Raven table scores as the tsv does
    scores = {}
    for name, table in (("raven", raven), ("tsv", tsv)):
        out = tmp_path / f"{name}.json"
        ok(cli("evaluate", trained.test, "--annotations", trained.test_table, "--estimated", table, "--output", out))
        scores[name] = json.loads(out.read_text())
    assert scores["raven"] == scores["tsv"]


def test_evaluate_scores_the_files_given_and_says_how_many_were_left_out(trained, tmp_path):
    subset = tmp_path / "subset"
    subset.mkdir()
    for name in ("clip_00.wav", "clip_01.wav"):
        shutil.copy(trained.test / name, subset / name)
    own = tmp_path / "own.tsv"
    lines = trained.test_table.read_text().splitlines()
    own.write_text("\n".join(line for line in lines if not line.startswith(("clip_02", "clip_03"))) + "\n")
    whole, alone = tmp_path / "whole.json", tmp_path / "alone.json"
    result = ok(cli("evaluate", subset, "--annotations", trained.test_table, "--model", trained.run, "--output", whole))
    notes = [line for line in result.stderr.splitlines() if "left out" in line]
    assert len(notes) == 1 and notes[0].startswith(f"{trained.test_table}: 2 file(s)"), result.stderr
    ok(cli("evaluate", subset, "--annotations", own, "--model", trained.run, "--output", alone))
    scored, expected = json.loads(whole.read_text()), json.loads(alone.read_text())
    assert sorted(scored["files"]) == ["clip_00.wav", "clip_01.wav"]
    assert scored == expected
    # a ready table of every file, scored on the subset: its other files are left out too
    everything, table_scores = tmp_path / "all.tsv", tmp_path / "table.json"
    ok(cli("detect", trained.test, "--model", trained.run, "--format", "tsv", "--output", everything))
    args = ("--annotations", trained.test_table, "--estimated", everything, "--output", table_scores)
    result = ok(cli("evaluate", subset, *args))
    assert sum("left out" in line for line in result.stderr.splitlines()) == 2  # one note per table
    assert json.loads(table_scores.read_text())["event_onset"] == expected["event_onset"]
