"""Reviewing detections without a browser: the reviewed table, the samples, the session,
the page's routes over HTTP, and what training and tuning take from a reviewed table."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from clirun import cli, fails

from soundnet.errors import SoundnetError, UsageError
from soundnet.events import Event
from soundnet.formats import render_events
from soundnet.review import (
    ACCEPTED,
    REJECTED,
    SKIPPED,
    Review,
    ReviewSession,
    read_detections,
    read_reviewed,
    resolve_audio,
    sample_detections,
    write_reviewed,
)
from soundnet.review_server import ReviewServer, review_app, span_spectrogram
from soundnet.review_training import clip_bounds, decided_spans, frame_targets, span_window_starts

SR = 16000


def events(confidences, name="a.wav"):
    return [Event(name, float(i), i + 0.5, "beep", c) for i, c in enumerate(confidences)]


# -- the reviewed table ----------------------------------------------------------------


def test_a_reviewed_table_reads_back_the_decisions_written(tmp_path):
    reviews = [
        Review(Event("a.wav", 0.5, 1.0, "beep", 0.91), ACCEPTED),
        Review(Event("dir/b.wav", 2.0, 2.25, "beep", None), REJECTED),
        Review(Event("a.wav", 3.0, 3.5, "beep", 0.5), SKIPPED),
    ]
    write_reviewed(tmp_path / "r.tsv", reviews)
    assert read_reviewed(tmp_path / "r.tsv") == reviews
    assert (tmp_path / "r.tsv").read_text().splitlines()[0] == "filename\tonset\toffset\tevent_label\tconfidence\tdecision"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.wav\t1\t2\tbeep\t0.5\tmaybe", "line 2: decision 'maybe': expected one of accepted, rejected, skipped"),
        ("a.wav\t1\t2\tbeep\t0.5\t", "line 2: decision none"),
        ("a.wav", "line 2: a reviewed row needs onset and offset"),
        ("a.wav\t2\t1\tbeep\t0.5\taccepted", "line 2: offset 1.0 is before onset 2.0"),
    ],
)
def test_a_bad_reviewed_row_is_an_error_naming_its_line(tmp_path, row, message):
    table = tmp_path / "r.tsv"
    table.write_text("filename\tonset\toffset\tevent_label\tconfidence\tdecision\n" + row + "\n")
    with pytest.raises(SoundnetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_reviewed(table)


def test_the_same_detection_twice_in_a_reviewed_table_is_an_error(tmp_path):
    table = tmp_path / "r.tsv"
    e = Event("a.wav", 1.0, 2.0, "beep", 0.5)
    write_reviewed(table, [Review(e, ACCEPTED), Review(e, REJECTED)])
    with pytest.raises(SoundnetError, match="line 3: the detection of line 2 again"):
        read_reviewed(table)


@pytest.mark.parametrize("fmt", ["tsv", "csv", "json", "raven"])
def test_detections_of_every_detect_format_read_back(tmp_path, fmt):
    written = events([0.9, 0.7]) + events([0.6], name="sub/b.wav")
    path = tmp_path / f"d.{fmt}"
    path.write_text(render_events(written, fmt))
    read = read_detections(path)
    assert [(e.filename, e.onset, e.offset) for e in read] == [(e.filename, e.onset, e.offset) for e in written]
    if fmt != "tsv":
        assert [e.confidence for e in read] == [0.9, 0.7, 0.6]


# -- what to review first ---------------------------------------------------------------


def test_top_takes_the_highest_confidences_first():
    chosen = sample_detections(events([0.6, 0.95, 0.7, 0.99, 0.8]), 3, strategy="top")
    assert [e.confidence for e in chosen] == [0.99, 0.95, 0.8]


def test_uncertain_takes_the_closest_to_the_threshold():
    chosen = sample_detections(events([0.52, 0.95, 0.61, 0.99, 0.5]), 2, strategy="uncertain", threshold=0.5)
    assert [e.confidence for e in chosen] == [0.5, 0.52]
    chosen = sample_detections(events([0.52, 0.95, 0.61, 0.99, 0.5]), 2, strategy="uncertain", threshold=0.9)
    assert [e.confidence for e in chosen] == [0.95, 0.99]


def test_stratified_spreads_evenly_over_confidence_bins_and_is_seeded():
    confidences = [0.5 + 0.001 * i for i in range(90)] + [0.95, 0.96, 0.97, 0.98, 0.99, 0.75, 0.76, 0.77, 0.78, 0.79]
    detections = events(confidences)
    chosen = sample_detections(detections, 10, strategy="stratified", bins=5, seed=1)
    bins = np.minimum(((np.array([e.confidence for e in chosen]) - 0.5) / (0.49 / 5)).astype(int), 4)
    # 90 detections crowd the lowest bin; the three bins holding detections take turns, the highest first: 3, 3, 4
    assert np.bincount(bins, minlength=5).tolist() == [3, 0, 3, 0, 4]
    assert chosen == sample_detections(detections, 10, strategy="stratified", bins=5, seed=1)
    assert chosen != sample_detections(detections, 10, strategy="stratified", bins=5, seed=2)
    assert len(set(chosen)) == 10


def test_a_stratified_sample_smaller_than_the_bins_spans_the_confidences():
    detections = events([0.1 * k + 0.05 for k in range(10)] * 3)  # 3 in each of 10 bins
    chosen = sample_detections(detections, 3, strategy="stratified", bins=10, seed=0)
    assert sorted(round(e.confidence, 2) for e in chosen) == [0.05, 0.45, 0.95]  # top, bottom, middle
    from soundnet.review import _spread

    for k in range(12):
        assert sorted(_spread(k)) == list(range(k))


def test_sampling_needs_confidences_and_a_known_strategy():
    with pytest.raises(SoundnetError, match="a detection without confidence"):
        sample_detections([Event("a.wav", 0, 1, "beep")], 1, strategy="top")
    with pytest.raises(UsageError, match="unknown strategy 'best'"):
        sample_detections(events([0.5]), 1, strategy="best")


# -- the session -------------------------------------------------------------------------


def test_a_session_writes_each_decision_and_a_new_one_resumes(tmp_path):
    out = tmp_path / "r.tsv"
    detections = events([0.9, 0.8, 0.7])
    session = ReviewSession(detections, out)
    session.decide(2, REJECTED)
    assert read_reviewed(out) == [Review(detections[2], REJECTED)]
    session.decide(0, ACCEPTED)
    session.decide(2, SKIPPED)
    assert read_reviewed(out) == [Review(detections[0], ACCEPTED), Review(detections[2], SKIPPED)]
    session.decide(0, None)
    assert read_reviewed(out) == [Review(detections[2], SKIPPED)]
    resumed = ReviewSession(detections, out)
    assert resumed.decisions == {2: SKIPPED}
    assert resumed.progress() == {"total": 3, "reviewed": 1, "accepted": 0, "rejected": 0, "skipped": 1}


def test_a_session_over_another_sample_keeps_the_other_decisions(tmp_path):
    out = tmp_path / "r.tsv"
    detections = events([0.9, 0.8, 0.7])
    ReviewSession(detections[:2], out).decide(0, ACCEPTED)
    later = ReviewSession(detections[1:], out)
    later.decide(1, REJECTED)
    assert read_reviewed(out) == [Review(detections[2], REJECTED), Review(detections[0], ACCEPTED)]


def test_a_session_refuses_an_unknown_decision_and_leaves_the_table(tmp_path):
    out = tmp_path / "r.tsv"
    session = ReviewSession(events([0.9]), out)
    session.decide(0, ACCEPTED)
    with pytest.raises(SoundnetError, match="unknown decision 'yes'"):
        session.decide(0, "yes")
    with pytest.raises(SoundnetError, match="no detection 5"):
        session.decide(5, ACCEPTED)
    assert [r.decision for r in read_reviewed(out)] == [ACCEPTED]


def test_file_names_resolve_under_the_audio_folder(tmp_path):
    (tmp_path / "site" / "x").mkdir(parents=True)
    (tmp_path / "site" / "y").mkdir(parents=True)
    for name in ("site/x/a.wav", "site/y/b.wav", "site/x/b.wav", "site/c.wav"):
        sf.write(tmp_path / name, np.zeros(SR, np.float32), SR)
    resolved = resolve_audio(["x/a.wav", "a.wav", "x/b.wav", "c.wav"], tmp_path / "site")
    site = tmp_path / "site"
    assert resolved == {
        "x/a.wav": site / "x/a.wav",
        "a.wav": site / "x/a.wav",
        "x/b.wav": site / "x/b.wav",
        "c.wav": site / "c.wav",
    }
    with pytest.raises(SoundnetError, match="2 audio files .* for the table's file name 'b.wav'"):
        resolve_audio(["b.wav"], tmp_path / "site")
    with pytest.raises(SoundnetError, match="no audio file for the table's file name 'd.wav'"):
        resolve_audio(["d.wav"], tmp_path / "site")


# -- the page's routes -------------------------------------------------------------------


@pytest.fixture
def served(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    y = np.zeros(4 * SR, np.float32)
    y[SR : SR + SR // 2] = 0.3 * np.sin(2 * np.pi * 2000 * np.arange(SR // 2) / SR)
    sf.write(audio / "a.wav", y, SR)
    detections = tmp_path / "d.csv"
    detections.write_text(render_events([Event("a.wav", 1.0, 1.5, "beep", 0.9), Event("a.wav", 3.0, 3.2, "beep", 0.6)], "csv"))
    with ReviewServer(review_app(detections, audio, out=tmp_path / "r.tsv")) as server:
        yield server, tmp_path / "r.tsv"


def _get(url):
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.headers["Content-Type"], response.read()


def _post(url, body: bytes, **headers):
    headers = {"Content-Type": "application/json", **{k.replace("_", "-"): v for k, v in headers.items()}}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_routes_serve_state_pictures_sounds_and_take_decisions(served):
    server, out = served
    kind, page = _get(server.url)
    assert kind.startswith("text/html") and b"/api/decide" in page
    state = json.loads(_get(server.url + "api/state")[1])
    assert [(d["onset"], d["confidence"], d["decision"]) for d in state["detections"]] == [(1.0, 0.9, None), (3.0, 0.6, None)]
    kind, png = _get(server.url + "spectrogram/0.png")
    assert kind == "image/png" and png.startswith(b"\x89PNG")
    kind, wav = _get(server.url + "audio/0.wav")
    assert kind == "audio/wav"
    y, sr = sf.read(__import__("io").BytesIO(wav))
    assert sr == SR and len(y) == SR // 2 and np.abs(y).max() > 0.25  # the span: the tone
    status, answer = _post(server.url + "api/decide", b'{"id": 1, "decision": "rejected"}')
    assert status == 200 and answer["progress"]["rejected"] == 1
    assert [(r.event.onset, r.decision) for r in read_reviewed(out)] == [(3.0, REJECTED)]
    assert _post(server.url + "api/decide", b'{"id": 1, "decision": "maybe"}')[0] == 400
    assert _post(server.url + "api/decide", b'{"id": "1", "decision": "accepted"}')[0] == 400
    assert _post(server.url + "api/decide", b"not json")[0] == 400
    assert _post(server.url + "api/decide", b"[1]")[0] == 400
    assert _post(server.url + "api/decide", b'{"id": 9, "decision": "accepted"}')[0] == 400
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _get(server.url + "spectrogram/7.png")
    assert [(r.event.onset, r.decision) for r in read_reviewed(out)] == [(3.0, REJECTED)]


def test_the_spectrogram_marks_the_span():
    y = np.zeros(3 * SR, np.float32)
    image = span_spectrogram(y, sr=SR, onset=1.0, offset=2.0)
    bar = image[:6].all(axis=2).all(axis=0)  # the white bar's columns
    assert np.flatnonzero(bar)[[0, -1]].tolist() == [100, 200]
    assert image[6:, 100].min() == 255 and image[6:, 200].min() == 255 and image[6:, 150].max() < 255


def test_review_refuses_to_write_over_its_detections_table(served, tmp_path):
    fails(
        cli("review", tmp_path / "d.csv", "--audio", tmp_path / "audio", "--out", tmp_path / "d.csv", "--no-browser"),
        "--out is",
        code=2,
    )


def test_review_refuses_detections_past_their_recordings_end(served, tmp_path):
    """A table of other audio (a span past the end of its recording) is refused before a
    page serves it, as training would refuse it later."""
    detections = tmp_path / "late.csv"
    detections.write_text(render_events([Event("a.wav", 3.0, 3.2, "beep", 0.9), Event("a.wav", 6.0, 8.0, "beep", 0.7)], "csv"))
    with pytest.raises(
        SoundnetError, match=r"late\.csv: the span 6\.000-8\.000 s of a\.wav ends past the recording's end \(4\.000 s\)"
    ):
        review_app(detections, tmp_path / "audio", out=tmp_path / "late.tsv")
    assert not (tmp_path / "late.tsv").exists()


def test_review_names_a_file_the_audio_folder_lacks(tmp_path):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", np.zeros(SR, np.float32), SR)
    table = tmp_path / "d.csv"
    table.write_text(render_events([Event("gone.wav", 0.1, 0.2, "beep", 0.9)], "csv"))
    fails(cli("review", table, "--audio", tmp_path / "audio", "--no-browser"), "no audio file", "'gone.wav'")


# -- from decisions to training and tuning material ---------------------------------------


def test_accepted_frames_are_the_target_rejected_ones_negatives_the_rest_unknown():
    reviews = [
        Review(Event("a.wav", 0.1, 0.3, "beep"), ACCEPTED),
        Review(Event("a.wav", 0.5, 0.6, "beep"), REJECTED),
        Review(Event("a.wav", 0.7, 0.9, "beep"), SKIPPED),
    ]
    spans = decided_spans(reviews)["a.wav"]
    labels, weights = frame_targets(spans, 100, frame_seconds=0.01)
    assert np.flatnonzero(labels).tolist() == list(range(10, 30))
    assert np.flatnonzero(weights).tolist() == list(range(10, 30)) + list(range(50, 60))


def test_training_windows_cover_every_decided_frame_and_hold_one():
    weights = np.zeros(1000, np.float32)
    weights[100:130] = 1
    weights[700:950] = 1
    starts = span_window_starts(weights, window=100, stride=50)
    covered = np.zeros(1000, bool)
    for s in starts:
        covered[s : s + 100] = True
        assert weights[s : s + 100].any() and 0 <= s <= 900
    assert covered[weights > 0].all()


def test_clips_widen_spans_and_merge_overlaps():
    assert clip_bounds([(0.5, 1.0), (2.5, 3.0), (9.0, 9.8)], context=1.0, duration=10.0) == [(0.0, 4.0), (8.0, 10.0)]


def test_training_windows_of_a_reviewed_recording_weigh_only_decided_frames(tmp_path):
    from planted import planted_set

    from soundnet.config import Config, FeatureConfig
    from soundnet.dataset import Dataset, extract
    from soundnet.review_training import load_reviewed
    from soundnet.run import ModelCard
    from soundnet.training import WindowBatches

    table, _ = planted_set(tmp_path / "audio", files=2, seconds=3.0, seed=2, empty_every=0)
    extract([tmp_path / "audio"], out=tmp_path / "ds", annotations=table)
    dataset = Dataset.open(tmp_path / "ds")
    site = tmp_path / "site"
    site.mkdir()
    sf.write(site / "s.wav", (0.01 * np.random.default_rng(0).standard_normal(5 * SR)).astype(np.float32), SR)
    write_reviewed(
        tmp_path / "r.tsv",
        [Review(Event("s.wav", 1.0, 1.5, "beep"), REJECTED), Review(Event("s.wav", 3.0, 3.2, "beep"), ACCEPTED)],
    )
    reviewed = load_reviewed(tmp_path / "r.tsv", site, folder=tmp_path / "feat", config=FeatureConfig(), window=100, stride=50)
    config = Config()
    zero = np.zeros(config.features.n_features, np.float32)
    card = ModelCard(dataset.target, dataset.feature_config, config.model, zero, zero + 1, config.postprocessing)
    b = WindowBatches(
        dataset, list(dataset.entries), card, stride=50, batch_size=4, positive_weight=2.0, shuffle=True, seed=0,
        reviewed=reviewed.files, reviewed_weight=3.0,
    )  # fmt: skip
    assert len(b.reviewed_windows) == len(reviewed.files[0].starts) > 0
    assert set(b.reviewed_windows) <= set(b.order)
    for pick in b.reviewed_windows:
        x, y, w = b.read(np.array([pick]), shifted=False)
        start = b.index[pick, 1]
        frames = np.arange(start, start + 100)
        rejected, accepted = (frames >= 100) & (frames < 150), (frames >= 300) & (frames < 320)
        assert np.array_equal(w[0], np.where(accepted | rejected, 3.0, 0.0))
        assert np.array_equal(y[0], accepted.astype(np.float32))
    assert not b.silent_windows[b.reviewed_windows].any()  # mining looks at the dataset's windows only
    assert reviewed.summary_json()["rejected_seconds"] == 0.5 and reviewed.summary_json()["accepted_seconds"] == 0.2


def test_train_and_tune_want_the_reviewed_table_and_its_audio_together(tmp_path):
    fails(cli("train", tmp_path, "--out", tmp_path / "run", "--reviewed", __file__), "--reviewed and --audio go together", code=2)
    fails(cli("tune", tmp_path), "give annotated audio (INPUTS) or a reviewed table", code=2)


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_the_review_command_serves_until_interrupted_and_says_what_was_reviewed(served, tmp_path, stop):
    import re
    import signal
    import subprocess

    from clirun import child_env, soundnet

    out = tmp_path / "cli.tsv"
    command = soundnet("review", tmp_path / "d.csv", "--audio", tmp_path / "audio", "--out", out, "--no-browser")
    process = subprocess.Popen(command, env=child_env(), stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        found = re.search(r"reviewing 2 detection\(s\) \(0 already decided\) at (http://127\.0\.0\.1:\d+/)", line)
        assert found, line
        assert _post(found[1] + "api/decide", b'{"id": 0, "decision": "accepted"}')[0] == 200
    finally:
        process.send_signal(getattr(signal, stop))
        _, rest = process.communicate(timeout=120)
    assert process.returncode == 0, rest
    assert f"{out}: 1 of 2 detection(s) reviewed" in rest
    assert [r.decision for r in read_reviewed(out)] == [ACCEPTED]


def test_only_the_page_itself_may_read_and_decide(served):
    """Another web site in the same browser cannot post decisions (its Origin, or a form's
    text/plain body), nor read the detections through a rebound DNS name (its Host)."""
    server, out = served
    url = server.url + "api/decide"
    assert _post(url, b'{"id": 0, "decision": "accepted"}', Origin="http://evil.example")[0] == 403
    assert _post(url, b'{"id": 0, "decision": "accepted"}', Content_Type="text/plain")[0] == 415
    request = urllib.request.Request(server.url + "api/state", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError, match="403"):
        urllib.request.urlopen(request, timeout=120)
    assert not out.exists() or read_reviewed(out) == []
    origin = server.url.rstrip("/")
    assert _post(url, b'{"id": 0, "decision": "accepted"}', Origin=origin)[0] == 200
    localhost = server.url.replace("127.0.0.1", "localhost")
    assert _get(localhost + "api/state")[0] == "application/json"


def test_a_strategy_without_a_sample_is_refused(served, tmp_path):
    from clirun import cli, fails

    audio, detections = tmp_path / "audio", tmp_path / "d.csv"
    fails(cli("review", detections, "--audio", audio, "--strategy", "uncertain", "--no-browser"), "--sample", code=2)


def test_a_confidence_outside_0_1_is_refused(tmp_path):
    from soundnet.review import read_detections

    table = tmp_path / "d.csv"
    table.write_text(render_events([Event("a.wav", 1.0, 1.5, "beep", 0.9), Event("a.wav", 2.0, 2.5, "beep", 1.7)], "csv"))
    with pytest.raises(SoundnetError, match=r"d\.csv: the detection of a\.wav at 2\.000-2\.500 s has confidence 1\.7"):
        read_detections(table)


def test_an_accepted_span_overlapping_a_rejected_one_is_warned_of(served, tmp_path, caplog):
    from soundnet.review_training import _decided

    table = tmp_path / "both.tsv"
    write_reviewed(
        table, [Review(Event("a.wav", 1.0, 1.5, "beep", 0.9), ACCEPTED), Review(Event("a.wav", 1.2, 2.0, "beep", 0.6), REJECTED)]
    )
    with caplog.at_level("WARNING", logger="soundnet.review_training"):
        _decided(table, tmp_path / "audio")
    assert "the accepted 1.000-1.500 s overlaps the rejected 1.200-2.000 s" in caplog.text


def test_a_stop_while_a_request_starts_ends_the_server_not_just_that_request(served, tmp_path):
    """SIGINT landing while the main thread starts a request's thread (right after a
    decision) must end serve_forever: socketserver reports and swallows any Exception
    raised there, so Stopped is a BaseException, like KeyboardInterrupt."""
    import threading

    from soundnet.listening import Stopped

    app = review_app(tmp_path / "d.csv", tmp_path / "audio", out=tmp_path / "stop.tsv")
    server = ReviewServer(app)

    def stopped(*_):
        raise Stopped("SIGINT")

    server.httpd.process_request = stopped
    outcome = []

    def serve():
        try:
            server.serve_forever()
        except BaseException as error:  # noqa: BLE001 - the very thing under test
            outcome.append(error)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _get(server.url + "api/state")
    thread.join(timeout=30)
    if thread.is_alive():
        server.httpd.shutdown()
    assert [type(e) for e in outcome] == [Stopped]
