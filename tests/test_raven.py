"""Raven Pro selection tables as annotations: the published table layout with its odd
cases (one row per view, empty annotation cells, Windows line ends, a byte order mark,
a table of a file sequence with File Offset), matched to recordings like DCASE tables,
and a table soundnet writes read back as the same events."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clirun import cli, fails, ok
from planted import planted_set

from soundnet.annotations import match_files, read_annotations, read_raven_table, read_sidecar, sidecar_tables
from soundnet.dataset import MANIFEST, Dataset, extract
from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.formats import read_events, render_events

#: The columns of a table saved by Raven Pro 1.6 with the default measurements, plus
#: the file columns of a multi-file table and one annotation column, in Raven's order.
RAVEN_COLUMNS = (
    "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
    "Begin File", "File Offset (s)", "Begin Path", "Delta Time (s)", "Annotation",
)  # fmt: skip


def raven_text(
    selections: list[dict],
    *,
    columns=RAVEN_COLUMNS,
    views=("Waveform 1", "Spectrogram 1"),
    crlf: bool = True,
    bom: bool = True,
) -> str:
    """A selection table as Raven Pro saves it: each selection once per view (the
    waveform's row with the full band), tab separated, CRLF line ends, a BOM."""
    lines = ["\t".join(columns)]
    for number, selection in enumerate(selections, start=1):
        for view in views:
            cells = {
                "Selection": str(number),
                "View": view,
                "Channel": "1",
                "Begin Time (s)": f"{selection['begin']:.6f}",
                "End Time (s)": f"{selection['end']:.6f}",
                "Low Freq (Hz)": "0.000" if view.startswith("Waveform") else f"{selection.get('low', 1500):.3f}",
                "High Freq (Hz)": "8000.000" if view.startswith("Waveform") else f"{selection.get('high', 2500):.3f}",
                "Begin File": selection.get("file", ""),
                "File Offset (s)": f"{selection.get('offset', selection['begin']):.6f}",
                "Begin Path": selection.get("path", ""),
                "Delta Time (s)": f"{selection['end'] - selection['begin']:.4f}",
                "Annotation": selection.get("label", "beep"),
                "Species": selection.get("species", ""),
            }
            lines.append("\t".join(cells[c] for c in columns))
    newline = "\r\n" if crlf else "\n"
    return ("\ufeff" if bom else "") + newline.join(lines) + newline


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def spans(rows) -> list[tuple]:
    return [(r.filename, r.event.onset, r.event.offset, r.event.label) for r in rows if r.event is not None]


# --- reading --------------------------------------------------------------------------------


def test_one_row_per_selection_from_the_spectrogram_view_with_its_band(tmp_path):
    text = raven_text([{"begin": 1.25, "end": 2.0, "low": 1800, "high": 2200}, {"begin": 3.5, "end": 4.125, "label": "beep"}])
    rows = read_raven_table(write(tmp_path / "rec.Table.1.selections.txt", text), filename="rec.wav")
    assert spans(rows) == [("rec.wav", 1.25, 2.0, "beep"), ("rec.wav", 3.5, 4.125, "beep")]
    assert [(r.low_freq, r.high_freq) for r in rows] == [(1800.0, 2200.0), (1500.0, 2500.0)]
    assert [r.line for r in rows] == [3, 5]  # the spectrogram rows: file lines count the header and the waveform rows


def test_a_second_spectrogram_view_does_not_repeat_a_selection(tmp_path):
    text = raven_text([{"begin": 1, "end": 2}], views=("Spectrogram 1", "Spectrogram 2", "Waveform 1"), crlf=False, bom=False)
    assert spans(read_raven_table(write(tmp_path / "t.txt", text), filename="a.wav")) == [("a.wav", 1.0, 2.0, "beep")]


def test_a_table_of_waveform_rows_only_is_refused(tmp_path):
    path = write(tmp_path / "t.txt", raven_text([{"begin": 1, "end": 2}], views=("Waveform 1",)))
    with pytest.raises(SoundnetError, match=r"t\.txt: no row of a Spectrogram view"):
        read_raven_table(path, filename="a.wav")


def test_label_column_default_order_and_choice(tmp_path):
    columns = (*RAVEN_COLUMNS[:-1], "Species")
    text = raven_text([{"begin": 1, "end": 2, "species": "Turdus merula"}], columns=columns)
    path = write(tmp_path / "t.txt", text)
    assert spans(read_raven_table(path, filename="a.wav")) == [("a.wav", 1.0, 2.0, "Turdus merula")]
    both = (*RAVEN_COLUMNS, "Species")
    path = write(tmp_path / "both.txt", raven_text([{"begin": 1, "end": 2, "label": "song", "species": "TUME"}], columns=both))
    assert spans(read_raven_table(path, filename="a.wav"))[0][3] == "song"  # Annotation before Species
    assert spans(read_raven_table(path, filename="a.wav", label_column="species"))[0][3] == "TUME"
    with pytest.raises(SoundnetError, match=r"both\.txt line 1: header has no 'Call Type' column"):
        read_raven_table(path, filename="a.wav", label_column="Call Type")
    bare = write(tmp_path / "bare.txt", raven_text([{"begin": 1, "end": 2}], columns=RAVEN_COLUMNS[:-1]))
    with pytest.raises(SoundnetError, match=r"bare\.txt line 1: header has no label column .*--label-column"):
        read_raven_table(bare, filename="a.wav")


def test_an_empty_annotation_cell_is_an_error_naming_file_and_line(tmp_path):
    text = raven_text([{"begin": 1, "end": 2}, {"begin": 3, "end": 4, "label": ""}])
    path = write(tmp_path / "t.txt", text)
    with pytest.raises(SoundnetError, match=r"t\.txt line 5: selection 2 has an empty 'Annotation' cell"):
        read_raven_table(path, filename="a.wav")


@pytest.mark.parametrize(
    ("begin", "end", "message"),
    [
        ("x", "2", "line 3: Begin Time (s) is not a number: 'x'"),
        ("3", "2", "line 3: End Time (s) 2.0 is before Begin Time (s) 3.0"),
        ("-1", "2", "line 3: negative Begin Time (s)"),
        ("", "2", "line 3: missing Begin Time (s)"),
    ],
)
def test_bad_times_name_file_and_line(tmp_path, begin, end, message):
    text = raven_text([{"begin": 0, "end": 0}]).replace("0.000000\t0.000000", f"{begin}\t{end}")
    with pytest.raises(SoundnetError) as info:
        read_raven_table(write(tmp_path / "t.txt", text), filename="a.wav")
    assert str(info.value).startswith(str(tmp_path / "t.txt")) and message in str(info.value)


def test_file_offset_places_a_selection_of_a_file_sequence_in_its_own_file(tmp_path):
    """A table over a sequence of files counts Begin Time from the first file's start;
    File Offset is where the selection starts in its own file."""
    text = raven_text(
        [
            {"begin": 2.0, "end": 2.5, "file": "a.wav", "offset": 2.0},
            {"begin": 61.0, "end": 61.75, "file": "b.wav", "offset": 1.0},
        ]
    )
    rows = read_annotations(write(tmp_path / "all.txt", text))
    assert spans(rows) == [("a.wav", 2.0, 2.5, "beep"), ("b.wav", 1.0, 1.75, "beep")]


def test_a_table_of_many_recordings_needs_their_names(tmp_path):
    text = raven_text([{"begin": 1, "end": 2}])
    with pytest.raises(SoundnetError, match=r"all\.txt line 3: no Begin File or Begin Path"):
        read_annotations(write(tmp_path / "all.txt", text))


def test_begin_path_tells_apart_recordings_of_one_name(tmp_path):
    """AudioMoth names recordings by time: two sites hold files of the same name. A Windows
    Begin Path recorded elsewhere still names the right one by its trailing folders."""
    sites = [tmp_path / "audio" / site / "20260501_050000.wav" for site in ("site_A", "site_B")]
    for path in sites:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    text = raven_text(
        [
            {"begin": 1, "end": 2, "file": "20260501_050000.wav", "path": r"D:\survey\site_B\20260501_050000.wav"},
            {"begin": 3, "end": 4, "file": "20260501_050000.wav", "path": r"D:\survey\site_A\20260501_050000.wav"},
        ]
    )
    rows = read_annotations(write(tmp_path / "all.txt", text))
    matched = match_files(rows, sites, [tmp_path / "audio"])
    assert {p.parent.name: [r.event.onset for r in rs] for p, rs in matched.items()} == {"site_A": [3.0], "site_B": [1.0]}
    bare = [r.__class__(r.source, r.line, r.filename, r.event) for r in rows]  # Begin File only: ambiguous
    with pytest.raises(SoundnetError, match="could name"):
        match_files(bare, sites, [tmp_path / "audio"])


def test_a_dcase_table_is_still_a_dcase_table(tmp_path):
    path = write(tmp_path / "t.tsv", "filename\tonset\toffset\tevent_label\na.wav\t1\t2\tbeep\n")
    assert spans(read_annotations(path)) == [("a.wav", 1.0, 2.0, "beep")]


def test_sidecar_tables_beside_a_recording(tmp_path):
    audio = tmp_path / "rec.wav"
    audio.write_bytes(b"")
    assert sidecar_tables(audio) == []
    for name in ("rec.Table.2.selections.txt", "rec.Table.1.selections.txt", "rec.txt", "other.Table.1.selections.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in sidecar_tables(audio)] == ["rec.txt", "rec.Table.1.selections.txt", "rec.Table.2.selections.txt"]


def test_a_sidecar_is_read_by_its_header_and_must_be_about_its_recording(tmp_path):
    raven = write(tmp_path / "rec.txt", raven_text([{"begin": 1, "end": 2, "file": "rec.wav"}]))
    assert spans(read_sidecar(raven, filename="rec.wav")) == [("rec.wav", 1.0, 2.0, "beep")]
    audacity = write(tmp_path / "rec2.txt", "1.0\t2.0\tbeep\n")
    assert spans(read_sidecar(audacity, filename="rec2.wav")) == [("rec2.wav", 1.0, 2.0, "beep")]
    empty = write(tmp_path / "quiet.Table.1.selections.txt", raven_text([]))
    assert [(r.filename, r.event) for r in read_sidecar(empty, filename="quiet.wav")] == [("quiet.wav", None)]
    with pytest.raises(SoundnetError, match=r"rec\.txt line 3: Begin File 'rec.wav' is not 'other.wav'"):
        read_sidecar(raven, filename="other.wav")


def test_soundnets_raven_output_reads_back_as_the_same_reference_events(tmp_path):
    events = [Event("a.wav", 1.25, 2.5, "beep", 0.9), Event("sub/b.wav", 0.5, 0.75, "beep", 0.6)]
    path = write(tmp_path / "out.selections.txt", render_events(events, "raven"))
    assert spans(read_annotations(path)) == [(e.filename, e.onset, e.offset, e.label) for e in events]
    assert read_events(path, "raven") == events


# --- extract and train ------------------------------------------------------------------------


def as_raven_sidecars(folder: Path, truth: dict[str, list[tuple[float, float]]]) -> None:
    """Raven Pro's own layout beside each recording: x.Table.1.selections.txt, CRLF, BOM,
    a waveform row per selection, no table for files without events but an empty one."""
    for name, events in truth.items():
        selections = [{"begin": a, "end": b, "file": name, "path": f"C:\\data\\{name}"} for a, b in events]
        write(folder / (Path(name).stem + ".Table.1.selections.txt"), raven_text(selections))


def labels_by_file(dataset: Path) -> dict[str, np.ndarray]:
    ds = Dataset.open(dataset)
    return {Path(e.source).name: ds.labels(e) for e in ds.entries}


def test_extract_from_raven_sidecars_and_from_one_raven_table_equals_extract_from_the_dcase_table(tmp_path):
    table, truth = planted_set(tmp_path / "audio", files=4, seconds=3.0, seed=3)  # clip_03.wav: no event
    extract([tmp_path / "audio"], out=tmp_path / "dcase", annotations=table)
    as_raven_sidecars(tmp_path / "audio", truth)
    report = extract([tmp_path / "audio"], out=tmp_path / "sidecars")
    assert report.target == "beep" and report.skipped == []
    selections = [{"begin": a, "end": b, "file": n} for n, spans in truth.items() for a, b in spans]
    one = write(tmp_path / "all.selections.txt", raven_text(selections))
    expected = labels_by_file(tmp_path / "dcase")
    assert sum(int(v.sum()) for v in expected.values()) > 0
    # a table of many recordings lists selections only: a file it does not name has no annotation
    assert report.skipped == [] and extract([tmp_path / "audio"], out=tmp_path / "one", annotations=one).skipped == [
        tmp_path / "audio" / "clip_03.wav"
    ]
    for other, names in (("sidecars", set(truth)), ("one", {n for n, spans in truth.items() if spans})):
        got = labels_by_file(tmp_path / other)
        assert set(got) == names
        for name, labels in got.items():
            np.testing.assert_array_equal(labels, expected[name], err_msg=f"{other}: {name}")
    manifest = json.loads((tmp_path / "sidecars" / MANIFEST).read_text())
    assert manifest["counts"]["events"] == sum(len(v) for v in truth.values())


def test_extract_cli_errors_on_an_empty_annotation_cell(tmp_path):
    _, truth = planted_set(tmp_path / "audio", files=1, seconds=3.0, seed=3, empty_every=0)
    (name, events), *_ = truth.items()
    selections = [{"begin": a, "end": b, "file": name, "label": "", "species": "beep"} for a, b in events]
    table = write(tmp_path / "all.txt", raven_text(selections, columns=(*RAVEN_COLUMNS, "Species")))
    fails(cli("extract", tmp_path / "audio", "--annotations", table, "--out", tmp_path / "ds"), f"{table} line 3", "empty")
    ok(cli("extract", tmp_path / "audio", "--annotations", table, "--out", tmp_path / "ds", "--label-column", "Species"))
    assert json.loads((tmp_path / "ds" / MANIFEST).read_text())["counts"]["events"] == len(events)


def test_detect_never_writes_over_a_raven_table_beside_the_audio(tmp_path):
    """Label files beside the audio are the user's, Raven's as Audacity's: detect's
    per-file Raven tables may not land on them (refused before the model loads)."""
    _, truth = planted_set(tmp_path / "audio", files=1, seconds=2.0, seed=3)
    as_raven_sidecars(tmp_path / "audio", truth)
    table = tmp_path / "audio" / "clip_00.Table.1.selections.txt"
    before = table.read_bytes()
    folder = tmp_path / "audio"
    fails(cli("detect", folder, "--format", "raven", "--output-dir", folder), "clip_00.selections.txt", "--output-dir", code=2)
    fails(cli("detect", folder, "--output", table), str(table), "which this command reads", code=2)
    assert table.read_bytes() == before and not (folder / "clip_00.selections.txt").exists()
