"""Detection outputs: every format round trips, and outside readers accept them."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.formats import (
    FORMATS,
    RAVEN_HEADER,
    read_events,
    read_frames,
    render_events,
    write_frames,
    write_text_atomic,
)

SPACES = "field recording 01.wav"
COMMAS = 'site A, day 2, "dawn".wav'
UNICODE = "Käfer – 鳥の声 ÿ.flac"
EMPTY = "silence only.wav"
FILES = [SPACES, EMPTY, COMMAS, UNICODE]

EVENTS = [
    Event(SPACES, 0.5, 1.25, "bird", 0.9),
    Event(SPACES, 10.123456, 12.987654, "bird", 0.61234),
    Event(SPACES, 3.0, 3.0004, "bird", None),
    Event(COMMAS, 0.0, 0.01, "bird", 1.0),
    Event(UNICODE, 1234.5678, 1240.0, "bird", 0.0),
]

# printed decimals of the times and confidence in each format (None: not stored)
PRECISION = {"tsv": (3, None), "csv": (3, 4), "json": (3, 4), "audacity": (6, None), "raven": (6, 4)}


def _key(event: Event) -> tuple:
    return (event.filename, event.onset, event.offset)


def assert_same_events(got: list[Event], expected: list[Event], fmt: str) -> None:
    decimals, conf_decimals = PRECISION[fmt]
    tol = 0.5 * 10**-decimals + 1e-9
    assert len(got) == len(expected)
    for g, e in zip(sorted(got, key=_key), sorted(expected, key=_key), strict=True):
        assert g.filename == e.filename
        assert g.label == e.label
        assert math.isclose(g.onset, e.onset, abs_tol=tol)
        assert math.isclose(g.offset, e.offset, abs_tol=tol)
        assert g.onset <= g.offset
        if conf_decimals is None or e.confidence is None:
            assert g.confidence is None
        else:
            assert math.isclose(g.confidence, e.confidence, abs_tol=0.5 * 10**-conf_decimals + 1e-9)


def write(tmp_path: Path, fmt: str, events=EVENTS, name: str | None = None, **options) -> Path:
    path = tmp_path / (name or f"out.{fmt}")
    write_text_atomic(path, render_events(events, fmt, **options))
    return path


@pytest.mark.parametrize("fmt", ["tsv", "csv", "json", "raven"])
def test_multi_file_formats_round_trip(tmp_path, fmt):
    path = write(tmp_path, fmt, files=FILES)
    assert_same_events(read_events(path, fmt), EVENTS, fmt)


def test_audacity_round_trips_one_file_each(tmp_path):
    for i, name in enumerate(FILES):
        mine = [e for e in EVENTS if e.filename == name]
        path = write(tmp_path, "audacity", mine, name=f"labels{i}.txt")
        assert_same_events(read_events(path, "audacity", filename=name), mine, "audacity")
    empty = tmp_path / "labels1.txt"
    assert empty.read_text(encoding="utf-8") == ""


def test_files_without_events_are_listed(tmp_path):
    path = write(tmp_path, "tsv", files=FILES)
    assert path.read_text(encoding="utf-8").splitlines()[0] == "filename\tonset\toffset\tevent_label"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert [EMPTY] in rows  # a row holding only the file name
    names = list(dict.fromkeys(row[0] for row in rows[1:]))
    assert names == FILES

    with open(write(tmp_path, "csv", files=FILES), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["filename", "onset", "offset", "label", "confidence"]
    assert [r["filename"] for r in rows if not r["onset"]] == [EMPTY]
    assert {r["filename"] for r in rows} == set(FILES)

    data = json.loads(write(tmp_path, "json", files=FILES).read_text(encoding="utf-8"))
    assert [entry["filename"] for entry in data] == FILES
    assert data[1] == {"filename": EMPTY, "events": []}


def test_files_only_named_by_events_follow_the_listed_files(tmp_path):
    data = json.loads(render_events(EVENTS, "json", files=[UNICODE]))
    assert [entry["filename"] for entry in data] == [UNICODE, SPACES, COMMAS]
    assert json.loads(render_events([], "json")) == []


def test_csv_quotes_names_and_writes_confidence(tmp_path):
    text = render_events(EVENTS, "csv")
    assert '"site A, day 2, ""dawn"".wav"' in text
    with open(write(tmp_path, "csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_onset = {r["onset"]: r for r in rows}
    assert by_onset["10.123"]["confidence"] == "0.6123"
    assert by_onset["3.000"]["confidence"] == ""
    assert by_onset["3.000"]["offset"] == "3.000"


def test_json_layout_and_frames(tmp_path):
    times = np.arange(5) * 0.01
    probabilities = np.array([0.1, 0.25, 0.123456, 0.9, 1.0])
    path = write(tmp_path, "json", files=FILES, frames={EMPTY: (times, probabilities)})
    text = path.read_text(encoding="utf-8")
    assert UNICODE in text  # written as UTF-8, not \u escapes
    data = json.loads(text)
    entry = {e["filename"]: e for e in data}
    assert set(entry[EMPTY]) == {"filename", "events", "frames"}
    assert "frames" not in entry[SPACES]
    np.testing.assert_allclose(entry[EMPTY]["frames"]["time"], times, atol=5e-4)
    np.testing.assert_allclose(entry[EMPTY]["frames"]["probability"], probabilities, atol=5e-5)
    first = entry[SPACES]["events"][0]
    assert first == {"onset": 0.5, "offset": 1.25, "label": "bird", "confidence": 0.9}
    assert [e["confidence"] for e in entry[SPACES]["events"]] == [0.9, None, 0.6123]


def test_audacity_published_layout(tmp_path):
    mine = [e for e in EVENTS if e.filename == SPACES]
    lines = write(tmp_path, "audacity", mine).read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # ends with a newline
    rows = [line.split("\t") for line in lines[:-1]]
    assert len(rows) == len(mine)
    for row in rows:
        assert len(row) == 3
        onset, offset, label = row
        assert len(onset.split(".")[1]) == 6 and len(offset.split(".")[1]) == 6
        assert float(onset) <= float(offset)
        assert label == "bird"
    assert [float(r[0]) for r in rows] == sorted(float(r[0]) for r in rows)
    assert rows[-1][:2] == ["10.123456", "12.987654"]


def test_audacity_refuses_several_files():
    with pytest.raises(SoundnetError, match="one audio file"):
        render_events(EVENTS, "audacity")


def test_audacity_reader_skips_spectral_selection_lines(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("1.5\t2.5\tbird\n\\\t100.0\t4000.0\n3\t4\t\n", encoding="utf-8")
    got = read_events(path, "audacity", filename="x.wav")
    assert got == [Event("x.wav", 1.5, 2.5, "bird"), Event("x.wav", 3.0, 4.0, "")]


def test_raven_table_by_its_header(tmp_path):
    path = write(tmp_path, "raven", files=FILES, high_freq=22050.0)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        rows = list(reader)
    assert reader.fieldnames == [
        "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
        "Low Freq (Hz)", "High Freq (Hz)", "Begin File", "Label", "Confidence",
    ]  # fmt: skip
    assert tuple(reader.fieldnames) == RAVEN_HEADER
    assert [r["Selection"] for r in rows] == [str(i) for i in range(1, len(EVENTS) + 1)]
    assert {r["View"] for r in rows} == {"Spectrogram 1"}
    assert {r["Channel"] for r in rows} == {"1"}
    assert {float(r["Low Freq (Hz)"]) for r in rows} == {0.0}
    assert {float(r["High Freq (Hz)"]) for r in rows} == {22050.0}
    assert {r["Begin File"] for r in rows} == {SPACES, COMMAS, UNICODE}
    assert all(float(r["Begin Time (s)"]) <= float(r["End Time (s)"]) for r in rows)
    assert {r["Confidence"] for r in rows if r["Begin File"] == COMMAS} == {"1.0000"}


def test_raven_default_high_freq_and_waveform_rows(tmp_path):
    text = render_events(EVENTS[:1], "raven")
    assert text.splitlines()[1].split("\t")[6] == "8000"
    # Raven repeats a selection per view; the waveform copy is not another event
    lines = text.splitlines()
    waveform = lines[1].replace("Spectrogram 1", "Waveform 1")
    path = tmp_path / "table.txt"
    path.write_text("\n".join([lines[0], waveform, lines[1]]) + "\n", encoding="utf-8")
    assert_same_events(read_events(path, "raven"), EVENTS[:1], "raven")


def test_tabs_in_names_are_refused_where_they_cannot_be_quoted():
    bad = Event("a\tb.wav", 0.0, 1.0, "bird")
    with pytest.raises(SoundnetError, match="tab"):
        render_events([bad], "raven")
    with pytest.raises(SoundnetError, match="tab"):
        render_events([Event("a.wav", 0.0, 1.0, "two\nlines")], "audacity")


def test_tsv_loads_in_sed_eval(tmp_path):
    sed_eval = pytest.importorskip("sed_eval")
    dcase_util = pytest.importorskip("dcase_util")
    path = write(tmp_path, "tsv", files=FILES)
    # dcase_util detects formats by extension and does not know ".tsv": name the format.
    loaded = dcase_util.containers.MetaDataContainer().load(filename=str(path), file_format="CSV", delimiter="\t")
    assert sorted(loaded.unique_files) == sorted(FILES)
    got = [Event(item.filename, item.onset, item.offset, item.event_label) for item in loaded if item.event_label]
    assert_same_events(got, EVENTS, "tsv")
    # and the event-based metric runs on it
    metric = sed_eval.sound_event.EventBasedMetrics(event_label_list=["bird"], t_collar=0.2)
    for name in FILES:
        metric.evaluate(reference_event_list=loaded.filter(filename=name), estimated_event_list=loaded.filter(filename=name))
    assert metric.results_overall_metrics()["f_measure"]["f_measure"] == 1.0


def test_sed_eval_default_loader_reads_plain_names(tmp_path):
    dcase_util = pytest.importorskip("dcase_util")
    events = [Event("a.wav", 0.5, 1.5, "bird"), Event("b.wav", 2.0, 3.0, "bird")]
    path = write(tmp_path, "tsv", events, name="out.csv", files=["a.wav", "b.wav", "c.wav"])
    loaded = dcase_util.containers.MetaDataContainer().load(filename=str(path))
    assert sorted(loaded.unique_files) == ["a.wav", "b.wav", "c.wav"]
    assert [(i.filename, i.onset, i.offset, i.event_label) for i in loaded if i.event_label] == [
        ("a.wav", 0.5, 1.5, "bird"),
        ("b.wav", 2.0, 3.0, "bird"),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_frames_round_trip(tmp_path, suffix):
    times = np.arange(1000) * 0.01 + 3600.0
    probabilities = np.random.default_rng(0).random(1000)
    path = tmp_path / f"frames{suffix}"
    write_frames(path, times, probabilities)
    got_times, got_probabilities = read_frames(path)
    assert got_times.shape == got_probabilities.shape == (1000,)
    if suffix == ".npy":
        raw = np.load(path)
        assert raw.dtype == np.float32 and raw.shape == (1000, 2)
        np.testing.assert_allclose(got_times, times, rtol=1e-7)
        np.testing.assert_allclose(got_probabilities, probabilities, atol=1e-7)
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "time,probability"
        assert lines[1] == f"3600.000,{probabilities[0]:.4f}"
        np.testing.assert_allclose(got_times, times, atol=5e-4)
        np.testing.assert_allclose(got_probabilities, probabilities, atol=5e-5)


def test_empty_frames_round_trip(tmp_path):
    for suffix in (".csv", ".npy"):
        path = tmp_path / f"frames{suffix}"
        write_frames(path, np.zeros(0), np.zeros(0))
        times, probabilities = read_frames(path)
        assert times.shape == probabilities.shape == (0,)


def test_read_frames_names_the_bad_line(tmp_path):
    path = tmp_path / "frames.csv"
    path.write_text("time,probability\n0.000,0.1\n0.010,oops\n", encoding="utf-8")
    with pytest.raises(SoundnetError, match=r"frames.csv line 3: probability is not a number"):
        read_frames(path)
    path.write_text("t,p\n0,0\n", encoding="utf-8")
    with pytest.raises(SoundnetError, match="line 1: expected the header"):
        read_frames(path)
    bad = tmp_path / "frames.npy"
    np.save(bad, np.zeros((3, 3), np.float32))
    with pytest.raises(SoundnetError, match=r"shape \(n, 2\)"):
        read_frames(bad)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "sub" / "out.tsv"
    write_text_atomic(target, "one\n")
    write_text_atomic(target, "two\n")
    write_frames(tmp_path / "sub" / "f.npy", np.zeros(3), np.zeros(3))
    write_frames(tmp_path / "sub" / "f.csv", np.zeros(3), np.zeros(3))
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.csv", "f.npy", "out.tsv"]
    assert target.read_bytes() == b"two\n"
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    write_text_atomic(target, "old\n")

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(SoundnetError, match="out.csv: cannot write"):
        write_text_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_unwritable_destination(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SoundnetError, match="cannot write"):
        write_text_atomic(blocker / "out.tsv", "text")


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("tsv", "filename\tonset\toffset\tevent_label\na.wav\t1.0\tx\tbird\n", "line 2: offset is not a number"),
        ("tsv", "filename\tonset\toffset\tevent_label\na.wav\t2.0\t1.0\tbird\n", "line 2: offset 1.0 is before onset"),
        ("tsv", "filename\tonset\tevent_label\n", "line 1: header has no offset column"),
        ("tsv", "filename\tonset\toffset\tevent_label\n\na.wav\t1.0\n", "line 3: missing offset"),
        ("tsv", "filename\tonset\toffset\tevent_label\n\t1.0\t2.0\tbird\n", "line 2: no filename"),
        ("csv", "filename,onset,offset,label,confidence\na.wav,1,2,bird,high\n", "line 2: confidence is not a number"),
        ("csv", 'filename,onset,offset,label,confidence\n"a.wav,1,2,bird,\n', "line 2"),
        ("audacity", "1.0\t2.0\tbird\n1.0 2.0 bird\n", "line 2: expected onset<TAB>offset<TAB>label"),
        ("audacity", "-1\t2\tbird\n", "line 1: negative onset"),
        ("raven", "Selection\tBegin Time (s)\tLabel\n", "line 1: header has no offset column (expected one of End Time (s))"),
        ("raven", "\t".join(RAVEN_HEADER) + "\n1\tSpectrogram 1\t1\tnan\t2\t0\t8000\ta.wav\tbird\t\n", "line 2"),
        ("json", '[{"filename": "a.wav",\n "events": [}]', "line 2: not valid JSON"),
        ("json", '{"filename": "a.wav"}', "expected a JSON array"),
        ("json", '[{"filename": "a.wav", "events": [{"onset": "1", "offset": 2, "label": "b"}]}]', "event 1"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, fmt, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SoundnetError, match="bad.txt") as info:
        read_events(path, fmt)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(SoundnetError, match="unknown output format 'xml'"):
        render_events(EVENTS, "xml")
    with pytest.raises(SoundnetError, match="missing.tsv: cannot read"):
        read_events(tmp_path / "missing.tsv", "tsv")
    assert set(FORMATS) == {"tsv", "csv", "json", "audacity", "raven"}


def test_reading_tolerates_byte_order_mark_and_crlf(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefffilename,onset,offset,label,confidence\r\nä.wav,1.000,2.000,bird,0.5000\r\n".encode())
    assert read_events(path, "csv") == [Event("ä.wav", 1.0, 2.0, "bird", 0.5)]


# ---------------------------------------------------------------------------------
# One reader per format: annotations (soundnet.annotations) and read_events agree


def _annotated(rows) -> list[Event]:
    return [row.event for row in rows if row.event is not None]


# One table of each kind; the format is the name's extension.
AGREEING = {
    "dcase.tsv": "filename\tevent_onset\tevent_offset\tevent_label\na.wav\t1.0\t2.5\tdog\nb.wav\n",
    "aliases.tsv": "Event_Label\tscene\tFile\tEnd\tStart\na\tpark\ta.wav\t2.5\t1\nb\thome\tb.wav\t0.25\t0\n",
    "plain.tsv": "a.wav\t1.0\t2.5\tdog\nb.wav\t0\t0.25\tcat\nc.wav\n",
    "dcase.csv": 'filename,onset,offset,event_label\n"a, b.wav",1,2,dog\nc.wav,,,\n',
    "classes.csv": "audio_filename,start_time,end_time,class_label\na.wav,1,2,dog\n",
    "soundnet.csv": render_events(EVENTS, "csv", files=FILES),
    "soundnet.tsv": render_events(EVENTS, "tsv", files=FILES),
}


@pytest.mark.parametrize("name", list(AGREEING))
def test_annotations_and_read_events_agree_on_tables(tmp_path, name):
    from soundnet.annotations import read_event_table

    path = tmp_path / name
    path.write_text(AGREEING[name], encoding="utf-8")
    got = read_events(path, path.suffix[1:])
    assert got
    # references carry no confidence; otherwise the very same events
    assert _annotated(read_event_table(path)) == [Event(e.filename, e.onset, e.offset, e.label) for e in got]


def test_annotations_and_read_events_agree_on_audacity_labels(tmp_path):
    from soundnet.annotations import read_audacity_labels

    path = tmp_path / "x.txt"
    path.write_text("1.5\t2.5\tbird\n\\\t100.0\t4000.0\n3\t4\tbird song\textra\n", encoding="utf-8")
    got = read_events(path, "audacity", filename="x.wav")
    assert got == [Event("x.wav", 1.5, 2.5, "bird"), Event("x.wav", 3.0, 4.0, "bird song")]
    assert _annotated(read_audacity_labels(path, filename="x.wav")) == got
    # a line of two fields: an event without a label, kept by read_events, refused as a reference
    path.write_text("1.5\t2.5\tbird\n3\t4\n", encoding="utf-8")
    assert read_events(path, "audacity", filename="x.wav")[1] == Event("x.wav", 3.0, 4.0, "")
    with pytest.raises(SoundnetError, match=rf"{path} line 2: event without a label"):
        read_audacity_labels(path, filename="x.wav")


def test_read_events_takes_tables_without_a_header_or_with_other_column_names(tmp_path):
    """Rule change: read_events used to need the exact header soundnet writes."""
    path = tmp_path / "t.tsv"
    path.write_text("a.wav\t1\t2\tbird\nc.wav\n", encoding="utf-8")
    assert read_events(path, "tsv") == [Event("a.wav", 1.0, 2.0, "bird")]
    path.write_text("FILENAME\tStart\tEnd\tClass\tConfidence\na.wav\t1\t2\tbird\t0.5\n", encoding="utf-8")
    assert read_events(path, "tsv") == [Event("a.wav", 1.0, 2.0, "bird", 0.5)]


def test_read_events_strips_edge_spaces_and_pads_short_rows(tmp_path):
    """Rule change: fields lose their edge spaces, and a short row is read as its
    missing fields empty (before: "expected N fields")."""
    path = tmp_path / "t.csv"
    path.write_text("filename,onset,offset,label,confidence\n a.wav , 1 , 2 , bird \nb.wav\n", encoding="utf-8")
    assert read_events(path, "csv") == [Event("a.wav", 1.0, 2.0, "bird")]


@pytest.mark.parametrize("fmt", ["tsv", "csv", "raven", "audacity"])
def test_an_empty_file_holds_no_events(tmp_path, fmt):
    """Rule change: an empty tsv, csv or raven file is no events (before: "empty file, expected a header")."""
    path = tmp_path / "empty.txt"
    path.write_text("\n", encoding="utf-8")
    assert read_events(path, fmt) == []


def test_raven_header_in_any_case_and_annotation_column(tmp_path):
    path = tmp_path / "t.selections.txt"
    path.write_text("selection\tbegin time (s)\tEND TIME (S)\tAnnotation\n1\t1.5\t2\tbird\n", encoding="utf-8")
    assert read_events(path, "raven", filename="x.wav") == [Event("x.wav", 1.5, 2.0, "bird")]
