"""Tests of soundnet.annotations: DCASE tables, Audacity labels, target choice, matching, frame labels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from soundnet.annotations import (
    Annotation,
    check_within,
    choose_target,
    frame_labels,
    match_files,
    read_audacity_labels,
    read_event_table,
    sidecar_tables,
)
from soundnet.errors import SoundnetError
from soundnet.events import Event


def table(tmp_path: Path, text: str, name: str = "ann.tsv", *, encoding: str = "utf-8", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def events(rows: list[Annotation]) -> list[tuple]:
    return [(r.filename, None if r.event is None else (r.event.onset, r.event.offset, r.event.label)) for r in rows]


EXPECTED = [("a.wav", (1.0, 2.5, "dog")), ("b.wav", (0.0, 0.25, "cat")), ("c.wav", None)]


def test_tsv_without_header(tmp_path):
    path = table(tmp_path, "a.wav\t1.0\t2.5\tdog\nb.wav\t0\t0.25\tcat\nc.wav\n")
    rows = read_event_table(path)
    assert events(rows) == EXPECTED
    assert [r.line for r in rows] == [1, 2, 3]
    assert all(r.source == path for r in rows)
    assert rows[0].event == Event("a.wav", 1.0, 2.5, "dog")


def test_tsv_with_header(tmp_path):
    path = table(tmp_path, "filename\tonset\toffset\tevent_label\na.wav\t1.0\t2.5\tdog\nb.wav\t0\t0.25\tcat\nc.wav\n")
    rows = read_event_table(path)
    assert events(rows) == EXPECTED
    assert [r.line for r in rows] == [2, 3, 4]


def test_tsv_with_dcase_header_and_extra_columns(tmp_path):
    text = (
        "event_label\tscene\tfilename\tevent_offset\tevent_onset\tnotes\n"
        "dog\tpark\ta.wav\t2.5\t1.0\tloud\n"
        "cat\thome\tb.wav\t0.25\t0\t\n"
        "\t\tc.wav\t\t\t\n"
    )
    assert events(read_event_table(table(tmp_path, text))) == EXPECTED


@pytest.mark.parametrize("header", [True, False])
def test_csv(tmp_path, header):
    text = "a.wav,1.0,2.5,dog\nb.wav,0,0.25,cat\nc.wav,,,\n"
    if header:
        text = "filename,onset,offset,event_label\n" + text
    assert events(read_event_table(table(tmp_path, text, "ann.csv"))) == EXPECTED


def test_csv_dcase_header_with_extra_columns(tmp_path):
    text = "filename,event_onset,event_offset,event_label,confidence,annotator\na.wav,1.0,2.5,dog,1,x\nb.wav,0,0.25,cat,,\nc.wav,,,,,\n"
    assert events(read_event_table(table(tmp_path, text, "ann.csv"))) == EXPECTED


def test_csv_with_quoted_filename_holding_a_comma(tmp_path):
    text = 'filename,onset,offset,event_label\n"a, b.wav",1,2,dog\n'
    assert events(read_event_table(table(tmp_path, text, "ann.csv"))) == [("a, b.wav", (1.0, 2.0, "dog"))]


def test_csv_starting_with_filename_only_row(tmp_path):
    text = "a.wav\nb.wav,1,2,dog\n"
    assert events(read_event_table(table(tmp_path, text, "ann.csv"))) == [("a.wav", None), ("b.wav", (1.0, 2.0, "dog"))]


def test_filename_only_rows(tmp_path):
    rows = read_event_table(table(tmp_path, "quiet.wav\nother.wav\t\t\t\n"))
    assert events(rows) == [("quiet.wav", None), ("other.wav", None)]


def test_bom_and_crlf(tmp_path):
    text = "filename\tonset\toffset\tevent_label\na.wav\t1.0\t2.5\tdog\nb.wav\t0\t0.25\tcat\nc.wav\n"
    path = table(tmp_path, text, encoding="utf-8-sig", newline="\r\n")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = read_event_table(path)
    assert events(rows) == EXPECTED
    assert rows[0].event.label == "dog"  # no stray \r


def test_bom_without_header(tmp_path):
    path = table(tmp_path, "a.wav\t1.0\t2.5\tdog\n", encoding="utf-8-sig", newline="\r\n")
    assert events(read_event_table(path)) == [EXPECTED[0]]


def test_blank_lines_and_spaces_are_tolerated(tmp_path):
    path = table(tmp_path, "\n a.wav \t 1.0 \t 2.5 \t dog \n\n\nb.wav\t0\t0.25\tcat\n")
    rows = read_event_table(path)
    assert events(rows) == EXPECTED[:2]
    assert [r.line for r in rows] == [2, 5]


def test_duplicate_rows_counted_once(tmp_path):
    path = table(
        tmp_path, "a.wav\t1.0\t2.5\tdog\na.wav\t1.0\t2.5\tdog\na.wav\t1\t2.50\tdog\nc.wav\nc.wav\na.wav\t1.0\t2.5\tcat\n"
    )
    assert events(read_event_table(path)) == [("a.wav", (1.0, 2.5, "dog")), ("c.wav", None), ("a.wav", (1.0, 2.5, "cat"))]


def test_zero_length_event_allowed(tmp_path):
    assert events(read_event_table(table(tmp_path, "a.wav\t1\t1\tdog\n"))) == [("a.wav", (1.0, 1.0, "dog"))]


def _error(path: Path, line: int, *words: str) -> None:
    with pytest.raises(SoundnetError) as info:
        read_event_table(path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(rf"\bline {line}\b", message), message
    for word in words:
        assert word in message, message


def test_offset_before_onset(tmp_path):
    _error(table(tmp_path, "filename\tonset\toffset\tevent_label\na.wav\t1\t2\tdog\na.wav\t3\t2.5\tdog\n"), 3, "before")


def test_negative_time(tmp_path):
    _error(table(tmp_path, "a.wav\t-0.5\t2\tdog\n"), 1, "negative")
    _error(table(tmp_path, "a.wav\t0.5\t2\tdog\nb.wav\t0\t-2\tdog\n"), 2, "negative")


@pytest.mark.parametrize("value", ["abc", "1,5", "nan", "inf", "1.2.3"])
def test_non_numeric_time(tmp_path, value):
    _error(table(tmp_path, f"a.wav\t0.5\t2\tdog\na.wav\t{value}\t3\tdog\n"), 2, value)


def test_non_numeric_time_in_csv(tmp_path):
    _error(table(tmp_path, "filename,onset,offset,event_label\na.wav,0.5,x2,dog\n", "ann.csv"), 2, "x2")


@pytest.mark.parametrize(("row", "missing"), [("a.wav\t1.0", "offset"), ("a.wav\t1.0\t2.0", "label")])
def test_missing_columns(tmp_path, row, missing):
    _error(table(tmp_path, f"b.wav\t0\t1\tdog\n{row}\n"), 2, missing)


def test_missing_columns_in_csv(tmp_path):
    _error(table(tmp_path, "b.wav,0,1,dog\na.wav,1.0,2.0\n", "ann.csv"), 2, "label")


def test_missing_filename(tmp_path):
    _error(table(tmp_path, "b.wav\t0\t1\tdog\n\t0\t1\tdog\n"), 2, "filename")


def test_header_without_required_column(tmp_path):
    _error(table(tmp_path, "filename\tonset\tevent_label\na.wav\t1\tdog\n"), 1, "offset")


def test_unreadable_tables(tmp_path):
    with pytest.raises(SoundnetError, match="missing.tsv"):
        read_event_table(tmp_path / "missing.tsv")
    binary = tmp_path / "binary.tsv"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage\x80")
    with pytest.raises(SoundnetError, match="binary.tsv"):
        read_event_table(binary)


# --- matching rows to audio files -------------------------------------------------------------


def _audio_tree(tmp_path: Path) -> tuple[Path, list[Path]]:
    root = tmp_path / "data"
    paths = [root / "a.wav", root / "sub" / "b.wav", root / "sub" / "c.wav", root / "other" / "c.wav"]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    return root, paths


def test_match_files_by_relative_path_and_unique_base_name(tmp_path):
    root, paths = _audio_tree(tmp_path)
    path = table(tmp_path, "a.wav\t0\t1\tdog\nb.wav\t0\t1\tdog\nsub/c.wav\t0\t1\tdog\nother\\c.wav\nsub/b.wav\t2\t3\tdog\n")
    matched = match_files(read_event_table(path), paths, [root])
    assert {p: len(rows) for p, rows in matched.items()} == {paths[0]: 1, paths[1]: 2, paths[2]: 1, paths[3]: 1}


def test_match_files_ambiguous_base_name(tmp_path):
    root, paths = _audio_tree(tmp_path)
    path = table(tmp_path, "a.wav\t0\t1\tdog\nc.wav\t0\t1\tdog\n")
    with pytest.raises(SoundnetError, match=rf"{re.escape(str(path))} line 2.*c\.wav"):
        match_files(read_event_table(path), paths, [root])


@pytest.mark.parametrize("name", ["zzz.wav", "../../x.wav", "../data/a.wav", "sub/../../a.wav", "ABSOLUTE"])
def test_match_files_unknown_names_refused(tmp_path, name):
    root, paths = _audio_tree(tmp_path)
    outside = tmp_path / "elsewhere" / "x.wav"
    outside.parent.mkdir()
    outside.write_bytes(b"")
    if name == "ABSOLUTE":
        name = str(outside)
    path = table(tmp_path, f"a.wav\t0\t1\tdog\n{name}\t0\t1\tdog\n")
    with pytest.raises(SoundnetError) as info:
        match_files(read_event_table(path), paths, [root])
    message = str(info.value)
    assert f"{path} line 2" in message and "unknown file" in message and name in message


def test_match_files_with_file_roots(tmp_path):
    root, paths = _audio_tree(tmp_path)
    path = table(tmp_path, "b.wav\t0\t1\tdog\n")
    assert list(match_files(read_event_table(path), [paths[1]], [paths[1]])) == [paths[1]]


# --- Audacity labels ---------------------------------------------------------------------------


def test_audacity_labels_skip_spectral_lines(tmp_path):
    path = table(tmp_path, "1.000000\t2.500000\tdog\n\\\t100.000000\t2000.000000\n3.25\t4\tdog bark\n\\\t-1.0\t-1.0\n", "x.txt")
    rows = read_audacity_labels(path, filename="x.wav")
    assert events(rows) == [("x.wav", (1.0, 2.5, "dog")), ("x.wav", (3.25, 4.0, "dog bark"))]
    assert [r.line for r in rows] == [1, 3]


def test_audacity_empty_file_means_no_events(tmp_path):
    rows = read_audacity_labels(table(tmp_path, "", "x.txt"), filename="x.wav")
    assert events(rows) == [("x.wav", None)]


def test_audacity_errors_name_file_and_line(tmp_path):
    path = table(tmp_path, "1\t2\tdog\n3\t2.5\tdog\n", "x.txt")
    with pytest.raises(SoundnetError, match=rf"{re.escape(str(path))} line 2"):
        read_audacity_labels(path, filename="x.wav")
    short = table(tmp_path, "1\t2\tdog\n1\t2\n", "y.txt")
    with pytest.raises(SoundnetError, match=rf"{re.escape(str(short))} line 2"):
        read_audacity_labels(short, filename="y.wav")


def test_audacity_labels_are_tab_separated_and_not_quoted(tmp_path):
    """Rule change (one Audacity reader): fields are split at tabs only, as Audacity
    writes them; before, a file without tabs was split at commas and quotes were
    taken as csv quoting."""
    path = table(tmp_path, '1\t2\t"loud" dog, barking\n', "x.txt")
    assert events(read_audacity_labels(path, filename="x.wav")) == [("x.wav", (1.0, 2.0, '"loud" dog, barking'))]
    commas = table(tmp_path, "1,2,dog\n", "y.txt")
    with pytest.raises(SoundnetError, match=rf"{re.escape(str(commas))} line 1: expected onset<TAB>offset<TAB>label"):
        read_audacity_labels(commas, filename="y.wav")


def test_audacity_extra_fields_are_ignored_and_repeats_count_once(tmp_path):
    path = table(tmp_path, "1\t2\tdog\tnote\n1\t2\tdog\n", "x.txt")
    assert events(read_audacity_labels(path, filename="x.wav")) == [("x.wav", (1.0, 2.0, "dog"))]


def test_bad_csv_quoting_names_file_and_line(tmp_path):
    """Rule change (one csv reading): a quote left open is an error (before: read on, silently)."""
    _error(table(tmp_path, 'filename,onset,offset,event_label\na.wav,1,2,dog\n"b.wav,1,2,dog\n', "ann.csv"), 3)


def test_quoted_field_across_lines_keeps_line_numbers(tmp_path):
    path = table(tmp_path, 'filename,onset,offset,event_label\n"two\nlines.wav",1,2,dog\nc.wav,3,4,dog\n', "ann.csv")
    rows = read_event_table(path)
    assert events(rows) == [("two\nlines.wav", (1.0, 2.0, "dog")), ("c.wav", (3.0, 4.0, "dog"))]
    assert [r.line for r in rows] == [3, 4]


def test_confidence_column_of_a_reference_table_is_not_read(tmp_path):
    rows = read_event_table(table(tmp_path, "filename,onset,offset,label,confidence\na.wav,1,2,dog,high\n", "ann.csv"))
    assert rows[0].event == Event("a.wav", 1.0, 2.0, "dog")


def test_sidecar_labels(tmp_path):
    audio = tmp_path / "rec.wav"
    audio.write_bytes(b"")
    assert sidecar_tables(audio) == []
    (tmp_path / "rec.txt").write_text("")
    assert sidecar_tables(audio) == [tmp_path / "rec.txt"]


# --- target label ------------------------------------------------------------------------------


def _rows(*labels: str | None) -> list[Annotation]:
    return [
        Annotation(Path("t.tsv"), i + 1, f"{i}.wav", None if label is None else Event(f"{i}.wav", 0, 1, label))
        for i, label in enumerate(labels)
    ]


def test_choose_target_implied():
    assert choose_target(_rows("dog", None, "dog"), None) == "dog"


def test_choose_target_explicit():
    assert choose_target(_rows("dog", "cat"), "cat") == "cat"


def test_choose_target_unknown_lists_labels():
    with pytest.raises(SoundnetError) as info:
        choose_target(_rows("dog", "cat"), "bird")
    message = str(info.value)
    assert "bird" in message and "dog" in message and "cat" in message


def test_choose_target_several_labels():
    with pytest.raises(SoundnetError) as info:
        choose_target(_rows("dog", "cat", "dog"), None)
    assert "cat" in str(info.value) and "dog" in str(info.value)


def test_choose_target_no_labels():
    with pytest.raises(SoundnetError):
        choose_target(_rows(None, None), None)


# --- frame labels and bounds -------------------------------------------------------------------


def test_frame_labels_boundaries():
    labels = frame_labels([Event("a.wav", 0.5, 0.8, "dog")], 100, frame_seconds=0.01)
    assert labels.dtype == np.uint8 and labels.shape == (100,)
    assert labels[50] == 1 and labels[49] == 0
    assert labels[79] == 1 and labels[80] == 0
    assert labels.sum() == 30


@pytest.mark.parametrize(
    ("onset", "offset", "first", "stop"),
    [
        (0.29, 0.57, 29, 57),
        (0.291, 0.571, 30, 58),
        (0.0, 0.001, 0, 1),
        (0.005, 0.01, 1, 1),
        (0.123, 0.456, 13, 46),
    ],
)
def test_frame_labels_centres(onset, offset, first, stop):
    labels = frame_labels([Event("a.wav", onset, offset, "dog")], 100, frame_seconds=0.01)
    assert np.flatnonzero(labels).tolist() == list(range(first, stop))


def test_frame_labels_clip_and_overlap():
    labels = frame_labels(
        [Event("a", 0.95, 3.0, "x"), Event("a", 0.1, 0.3, "x"), Event("a", 0.2, 0.4, "x")], 100, frame_seconds=0.01
    )
    assert np.flatnonzero(labels).tolist() == list(range(10, 40)) + list(range(95, 100))
    assert frame_labels([Event("a", 5.0, 6.0, "x")], 100, frame_seconds=0.01).sum() == 0
    assert frame_labels([], 0, frame_seconds=0.01).shape == (0,)


def test_frame_labels_long_file_boundaries():
    """Ten hours in: the boundary frames are still exact."""
    n = 3_600_001
    labels = frame_labels([Event("a", 35999.5, 35999.8, "x")], n, frame_seconds=0.01)
    assert labels[3_599_950] == 1 and labels[3_599_949] == 0
    assert labels[3_599_979] == 1 and labels[3_599_980] == 0


def test_check_within(tmp_path):
    path = table(tmp_path, "a.wav\t1\t9.9\tdog\na.wav\t2\t10.3\tdog\n")
    rows = read_event_table(path)
    check_within(rows[:1], 10.0)
    check_within(rows, 10.3)
    check_within([Annotation(path, 3, "a.wav", Event("a.wav", 1, 10.02, "dog"))], 10.0)  # within tolerance
    with pytest.raises(SoundnetError) as info:
        check_within(rows, 10.0)
    message = str(info.value)
    assert f"{path} line 2" in message and "a.wav" in message


def test_check_within_event_starting_after_the_end(tmp_path):
    rows = [Annotation(tmp_path / "t.tsv", 7, "a.wav", Event("a.wav", 12, 13, "dog"))]
    with pytest.raises(SoundnetError, match="line 7"):
        check_within(rows, 10.0)


def test_a_row_with_a_folder_never_labels_a_recording_in_another_folder(tmp_path):
    """``site_A/rec.wav`` in a table names site_A's recording only, never site_B's of the
    same name; a bare name that two recordings share is an error naming both."""
    from soundnet.annotations import Annotation, match_files
    from soundnet.errors import SoundnetError

    for site in ("site_A", "site_B"):
        (tmp_path / site).mkdir()
        (tmp_path / site / "rec.wav").write_bytes(b"")
    only_b = [tmp_path / "site_B" / "rec.wav"]
    row = Annotation(tmp_path / "t.tsv", 2, "site_A/rec.wav", None)
    with pytest.raises(SoundnetError, match="unknown file 'site_A/rec.wav'"):
        match_files([row], only_b, [tmp_path / "site_B"])
    both = [tmp_path / "site_A" / "rec.wav", tmp_path / "site_B" / "rec.wav"]
    assert list(match_files([row], both, [tmp_path])) == [both[0]]
    assert list(match_files([row], both, [tmp_path / "site_A", tmp_path / "site_B"])) == [both[0]]
    bare = Annotation(tmp_path / "t.tsv", 3, "rec.wav", None)
    with pytest.raises(SoundnetError, match="could name .*site_A/rec.wav and .*site_B/rec.wav"):
        match_files([bare], both, [tmp_path / "site_A", tmp_path / "site_B"])
