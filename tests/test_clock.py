"""Time of day: start times from recorder file names, clock times in every output
format, and per-file and per-site, per-hour summaries with known counts."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import datetime

import pytest
from clirun import cli, fails, ok

from soundnet.clock import hourly_path, render_file_summary, start_time, summarize
from soundnet.errors import SoundnetError, UsageError
from soundnet.events import Event
from soundnet.formats import CSV_HEADER, TSV_HEADER, read_events, render_events

MAY_1 = datetime(2026, 5, 1, 5, 30, 0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("20260501_053000.WAV", MAY_1),  # AudioMoth
        ("S4A01234_20260501_053000.wav", MAY_1),  # Song Meter
        ("SMM04321_20260501_053000_000.wav", MAY_1),
        ("site_A/20260501_053000.wav", MAY_1),
        ("20260501/clip.wav", None),  # the default reads the base name only
        ("clip_00.wav", None),
        ("120260501_053000.wav", None),  # nine digits: not a stamp
        ("20261301_053000.wav", None),  # month 13: digits that are no date
    ],
)
def test_start_time_of_recorder_names(name, expected):
    assert start_time(name) == expected


def test_a_start_time_pattern_given_reads_the_relative_path():
    pattern = r"(?P<year>\d{4})-(?P<month>\d\d)-(?P<day>\d\d)/(?P<hour>\d\d)h(?P<minute>\d\d)(?:m(?P<second>\d+(?:\.\d+)?))?"
    assert start_time("site/2026-05-01/05h30.wav", pattern) == MAY_1
    assert start_time("2026-05-01/05h30m12.5.wav", pattern) == datetime(2026, 5, 1, 5, 30, 12, 500000)
    assert start_time("elsewhere.wav", pattern) is None
    with pytest.raises(SoundnetError, match="2026-13-01/05h30.wav: the start time in its name is not a date"):
        start_time("2026-13-01/05h30.wav", pattern)
    with pytest.raises(UsageError, match="no named group day, hour"):
        start_time("x.wav", r"(?P<year>\d{4})(?P<month>\d\d)")
    with pytest.raises(UsageError, match="is not a regular expression"):
        start_time("x.wav", "(?P<year>")


EVENTS = [
    Event("site_A/20260501_053000.wav", 61.25, 62.5, "beep", 0.9),
    Event("site_A/20260501_053000.wav", 3599.5, 3600.75, "beep", 0.8),
    Event("clip.wav", 1.0, 2.0, "beep", 0.7),
]
FILES = ["site_A/20260501_053000.wav", "clip.wav", "site_A/20260501_063000.wav"]
STARTS = {name: start_time(name) for name in FILES if start_time(name)}


def test_tsv_and_csv_get_clock_columns_only_where_a_start_is_known():
    for fmt, header, delimiter in (("tsv", TSV_HEADER, "\t"), ("csv", CSV_HEADER, ",")):
        plain = render_events(EVENTS, fmt, files=FILES)
        assert plain.splitlines()[0].split(delimiter) == list(header)
        text = render_events(EVENTS, fmt, files=FILES, starts=STARTS)
        rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
        assert [(r["filename"], r["onset_datetime"] or "", r["offset_datetime"] or "") for r in rows] == [
            ("site_A/20260501_053000.wav", "2026-05-01T05:31:01.250", "2026-05-01T05:31:02.500"),
            ("site_A/20260501_053000.wav", "2026-05-01T06:29:59.500", "2026-05-01T06:30:00.750"),
            ("clip.wav", "", ""),
            ("site_A/20260501_063000.wav", "", ""),  # processed, no event
        ], fmt


@pytest.mark.parametrize("fmt", ["tsv", "csv", "json", "raven"])
def test_clock_times_do_not_change_the_events_read_back(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    path.write_text(render_events(EVENTS, fmt, files=FILES, starts=STARTS))
    expected = EVENTS if fmt in ("csv", "json", "raven") else [Event(e.filename, e.onset, e.offset, e.label) for e in EVENTS]
    assert sorted(read_events(path, fmt)) == sorted(expected)
    assert render_events(EVENTS, fmt, files=FILES, starts={}) == render_events(EVENTS, fmt, files=FILES)


def test_json_raven_and_audacity_carry_the_clock_time():
    objects = json.loads(render_events(EVENTS, "json", files=FILES, starts=STARTS))
    first = objects[0]
    assert first["start_datetime"] == "2026-05-01T05:30:00.000"
    assert [e["onset_datetime"] for e in first["events"]] == ["2026-05-01T05:31:01.250", "2026-05-01T06:29:59.500"]
    assert "start_datetime" not in objects[1] and "onset_datetime" not in objects[1]["events"][0]
    rows = list(csv.DictReader(io.StringIO(render_events(EVENTS, "raven", starts=STARTS)), delimiter="\t"))
    assert [(r["Begin Date"], r["Begin Clock Time"], r["End Date"], r["End Clock Time"]) for r in rows] == [
        ("2026-05-01", "05:31:01.250", "2026-05-01", "05:31:02.500"),
        ("2026-05-01", "06:29:59.500", "2026-05-01", "06:30:00.750"),
        ("", "", "", ""),
    ]
    track = render_events(EVENTS[:2], "audacity", starts=STARTS)
    assert track.splitlines()[0] == "61.250000\t62.500000\tbeep\t2026-05-01T05:31:01.250"


def test_summaries_with_known_counts():
    """site_A's recording runs 05:59:30-06:01:30 with events at 05:59:40, 06:00:10 and
    06:00:50-06:01:05 (two minutes); site_B's is quiet 06:00-06:01; clip.wav has no time."""
    a, b = "site_A/20260501_055930.wav", "site_B/20260501_060000.wav"
    recordings = [
        (a, 120.0, [Event(a, 10.0, 12.0, "x"), Event(a, 40.0, 45.0, "x"), Event(a, 80.0, 95.0, "x")]),
        (b, 60.0, []),
        ("site_B/clip.wav", 30.0, [Event("site_B/clip.wav", 59.5, 61.0, "x")]),
    ]
    starts = {name: start_time(name) for name, _, _ in recordings if start_time(name)}
    files, hours = summarize(recordings, starts=starts)
    assert [(f.site, f.events, f.first, f.last, f.minutes_with_detections) for f in files] == [
        ("site_A", 3, 10.0, 80.0, 3),
        ("site_B", 0, None, None, 0),
        ("site_B", 1, 59.5, 59.5, 2),  # minutes 0 and 1 from the file's start
    ]
    assert [(h.site, h.hour.hour, round(h.recorded_minutes, 3), h.events, h.minutes_with_detections) for h in hours] == [
        ("site_A", 5, 0.5, 1, 1),
        ("site_A", 6, 1.5, 2, 2),
        ("site_B", 6, 1.0, 0, 0),
    ]
    rows = list(csv.DictReader(io.StringIO(render_file_summary(files))))
    assert rows[0]["first_detection_datetime"] == "2026-05-01T05:59:40.000"
    assert rows[0]["last_detection_datetime"] == "2026-05-01T06:00:50.000"
    assert rows[2]["start_datetime"] == "" and rows[2]["first_detection_s"] == "59.500"


def test_summary_counts_match_the_event_table_of_a_folder_of_time_stamped_files(trained, tmp_path):
    audio = tmp_path / "survey"
    names = {
        "site_A/20260501_053000.wav": "clip_00.wav",
        "site_A/20260501_235959.wav": "clip_01.wav",  # runs past midnight
        "site_B/S4A01234_20260502_060000.wav": "clip_02.wav",
        "site_B/20260502_061000.wav": "clip_03.wav",  # no event
    }
    for name, clip in names.items():
        (audio / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(trained.test / clip, audio / name)
    events, summary = tmp_path / "events.csv", tmp_path / "summary.csv"
    ok(cli("detect", audio, "--model", trained.run, "--format", "csv", "--output", events, "--summary", summary))
    table = list(csv.DictReader(events.open()))
    per_file = list(csv.DictReader(summary.open()))
    hourly = list(csv.DictReader(hourly_path(summary).open()))
    counted = {name: sum(1 for r in table if r["filename"] == name and r["onset"]) for name in names}
    assert sum(counted.values()) >= 4 and counted["site_B/20260502_061000.wav"] == 0
    assert {r["filename"]: int(r["events"]) for r in per_file} == counted
    assert {r["filename"]: r["site"] for r in per_file} == {n: n.split("/")[0] for n in names}
    for site in ("site_A", "site_B"):
        in_site = sum(n for name, n in counted.items() if name.startswith(site))
        assert sum(int(r["events"]) for r in hourly if r["site"] == site) == in_site
    for row in table:
        if row["onset"]:
            start = start_time(row["filename"])
            clock = datetime.fromisoformat(row["onset_datetime"])
            assert (clock - start).total_seconds() == pytest.approx(float(row["onset"]), abs=1e-3)
    assert {(r["site"], r["date"], r["hour"]) for r in hourly} == {
        ("site_A", "2026-05-01", "5"),
        ("site_A", "2026-05-01", "23"),
        ("site_A", "2026-05-02", "0"),
        ("site_B", "2026-05-02", "6"),
    }
    recorded = sum(float(r["recorded_minutes"]) for r in hourly)
    assert recorded == pytest.approx(4 * 8.0 / 60, abs=0.02)  # four 8 s files


def test_summary_may_not_overwrite_another_output(trained, tmp_path):
    clip = trained.test / "clip_00.wav"
    out = tmp_path / "s.csv"
    fails(cli("detect", clip, "--model", trained.run, "--output", out, "--summary", out), "--summary", code=2)
    fails(cli("detect", clip, "--model", trained.run, "--start-time-pattern", "(?P<year>"), "regular expression", code=2)


def test_the_text_report_gives_the_start_and_each_events_clock_time():
    from types import SimpleNamespace

    from soundnet.outputs import render_text

    name = "site_A/20260501_053000.wav"
    detection = SimpleNamespace(name=name, duration=90.0, events=[Event(name, 61.25, 62.5, "beep", 0.9)])
    assert render_text([detection], {name: MAY_1}).splitlines() == [
        f"{name}: 1 event(s) in 90.00 s, started 2026-05-01T05:30:00.000",
        "     61.250 -    62.500 s  beep  confidence 0.90  at 2026-05-01T05:31:01.250",
    ]
    assert "at" not in render_text([detection]).splitlines()[1].split("confidence")[1]
