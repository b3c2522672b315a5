"""soundnet listen's causal core (soundnet.live) and its stdin streams (soundnet.streams):
the causal post-processing against detect's, the rolling window scorer against its
definition, the same events whatever the block sizes, and live against offline detect."""

from __future__ import annotations

import dataclasses
import io
import json
import struct

import numpy as np
import pytest
import soundfile as sf
from clirun import cli, fails, ok

import soundnet
from soundnet.audio import RawPCM
from soundnet.config import PostConfig
from soundnet.detection import BUNDLED_MODEL, Detector
from soundnet.live import CausalEvents, LiveDetector, LivePost, WindowScorer
from soundnet.postprocess import to_events
from soundnet.run import read_card
from soundnet.signals import SR, alarm_clip, mix_in, noise_background
from soundnet.streams import StdinSource, read_wav_header

HOP = 0.1


def alarm_scene(seconds: float, onsets: list[float], *, seed: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Noise with one-cycle T3 smoke alarms (2.3-2.7 s) planted at ``onsets``; the truth."""
    rng = np.random.default_rng(seed)
    y = noise_background(seconds, rng=rng).astype(np.float64)
    truth = []
    for onset in onsets:
        clip, info = alarm_clip(rng, kind="t3_piezo", cycles=1, room=False)
        y = mix_in(y, clip * 0.5, int(onset * SR))
        truth.append((onset, onset + info["duration"]))
    return y, truth


def offline_intervals(events) -> list[tuple[float, float]]:
    return [(e.onset, e.offset) for e in events]


def live_intervals(lines: list[dict]) -> list[tuple[float, float]]:
    """Pair the start and end lines; every start has its end, in order."""
    kinds = [line["event"] for line in lines]
    assert kinds == ["start", "end"] * (len(lines) // 2), kinds
    return [(a["stream_time"], b["stream_time"]) for a, b in zip(lines[::2], lines[1::2], strict=True)]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wav_bytes(y: np.ndarray, *, sr: int = SR, subtype: str = "PCM_16", channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    data = np.repeat(y[:, None], channels, axis=1) if channels > 1 else y
    sf.write(buffer, data, sr, subtype=subtype, format="WAV")
    return buffer.getvalue()


# -- the causal post-processing


@pytest.mark.parametrize(
    "post",
    [
        PostConfig(threshold=0.5),
        PostConfig(threshold=0.6, min_duration=0.15),
        PostConfig(threshold=0.4, merge_gap=0.05),
        PostConfig(threshold=0.5, min_duration=0.3, merge_gap=0.12),
        PostConfig(threshold=0.5, median_seconds=0.11, min_duration=0.1, merge_gap=0.05),
        PostConfig(threshold=0.7, off_threshold=0.4, median_seconds=0.51, merge_gap=0.2),
        PostConfig(threshold=0.8, off_threshold=0.3, min_duration=0.2, merge_gap=0.1),
    ],
)
def test_causal_events_equal_detects_on_the_same_probabilities(post):
    """Hold = merge gap, no refractory: frame by frame, the events of to_events (its
    median filter too, and its hysteresis), and their confidences at their ends."""
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(1, 400))
        probs = np.clip(np.repeat(rng.random(n), rng.integers(1, 8))[:n] + rng.normal(0, 0.1, n), 0, 1).astype(np.float32)
        duration = (n - 1) * 0.01 + rng.uniform(0, 0.01)
        expected = to_events(probs, post=post, frame_seconds=0.01, duration=duration, filename="f", label="x")
        causal = CausalEvents(LivePost.from_card(post), 0.01, "x")
        lines = []
        for piece in np.array_split(probs, int(rng.integers(1, 6))):
            lines += causal.feed(piece)
        lines += causal.finish(end_time=duration)
        got = [(e.stream_time, e.event) for e in lines]
        assert live_intervals([{"event": e.event, "stream_time": e.stream_time} for e in lines]) == offline_intervals(expected), (
            trial,
            got,
        )
        # an event's confidence at its end is detect's: its highest own frame probability, gaps included
        assert [e.confidence for e in lines if e.event == "end"] == [e.confidence for e in expected], trial


@pytest.mark.parametrize("seconds", [0.05, 0.11, 0.51])
def test_the_streaming_median_is_detects_median_filter(seconds):
    """Any stream split any way: the filtered values of soundnet.postprocess.smooth (scipy's
    median filter), each with its own frame's value, in frame order."""
    from soundnet.live import StreamingMedian
    from soundnet.postprocess import median_frames, smooth

    rng = np.random.default_rng(4)
    frames = median_frames(seconds, frame_seconds=0.01)
    for n in (1, 2, frames // 2, frames, 300):
        probs = rng.random(n).astype(np.float32)
        median = StreamingMedian(frames)
        out = []
        for piece in np.array_split(probs, int(rng.integers(1, 5))):
            out += median.feed(piece.astype(np.float64).tolist())
        out += median.finish()
        assert [own for _, own in out] == pytest.approx(probs.tolist())
        np.testing.assert_allclose([m for m, _ in out], smooth(probs, frames=frames), rtol=0, atol=1e-7)


def test_hysteresis_keeps_an_event_through_a_dip_above_off():
    probs = np.array([0.1, 0.9, 0.9, 0.6, 0.6, 0.9, 0.1, 0.1])
    plain = CausalEvents(LivePost(on=0.8, off=0.8), 0.01, "x")
    assert [e.event for e in plain.feed(probs)] == ["start", "end", "start", "end"]
    hysteresis = CausalEvents(LivePost(on=0.8, off=0.5), 0.01, "x")
    events = hysteresis.feed(probs)
    assert [(e.event, e.stream_time) for e in events] == [("start", 0.005), ("end", 0.055)]
    assert events[1].confidence == pytest.approx(0.9)


def test_a_start_is_announced_once_the_minimum_duration_is_reached_with_its_onset_time():
    causal = CausalEvents(LivePost(on=0.5, off=0.5, min_duration=0.05), 0.01, "x")
    assert causal.feed([0.0, 0.9, 0.9, 0.9, 0.9]) == []  # 0.005 .. 0.045 s: 0.04 s so far
    (start,) = causal.feed([0.9])
    assert (start.event, start.stream_time) == ("start", 0.005)
    too_short = CausalEvents(LivePost(on=0.5, off=0.5, min_duration=0.05), 0.01, "x")
    assert too_short.feed([0.9, 0.9, 0.0, 0.0]) + too_short.finish() == []  # never told


def test_refractory_time_silences_new_events_after_an_end():
    probs = [0.9, 0.9, 0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.0]
    causal = CausalEvents(LivePost(on=0.5, off=0.5, refractory=0.05), 0.01, "x")
    events = causal.feed(probs)
    # the event ending at 0.015 s silences the one at 0.025 s; the one at 0.085 s is past 0.065 s
    assert [(e.event, e.stream_time) for e in events] == [("start", 0.0), ("end", 0.015), ("start", 0.085), ("end", 0.095)]


def test_finish_closes_the_open_event_at_the_stream_end():
    causal = CausalEvents(LivePost(on=0.5, off=0.5, hold=1.0), 0.01, "x")
    assert [e.event for e in causal.feed([0.0, 0.9, 0.9, 0.0])] == ["start"]
    (end,) = causal.finish(end_time=0.02)
    assert (end.event, end.stream_time) == ("end", 0.02)


def test_live_post_options_are_checked():
    with pytest.raises(soundnet.SoundnetError, match="off must be in"):
        LivePost(on=0.5, off=0.7)
    with pytest.raises(soundnet.SoundnetError, match="hold must be"):
        LivePost(hold=-1.0)
    card = PostConfig(threshold=0.9, min_duration=2.0, merge_gap=1.5)
    assert LivePost.from_card(card) == LivePost(on=0.9, off=0.9, min_duration=2.0, hold=1.5)
    assert LivePost.from_card(card, on=0.7) == LivePost(on=0.7, off=0.7, min_duration=2.0, hold=1.5)
    assert LivePost.from_card(card, off=0.5, refractory=3.0).off == 0.5
    hysteresis = PostConfig(threshold=0.9, off_threshold=0.4, min_duration=2.0, merge_gap=1.5)
    assert LivePost.from_card(hysteresis) == LivePost(on=0.9, off=0.4, min_duration=2.0, hold=1.5)
    assert LivePost.from_card(hysteresis, on=0.7).off == 0.7  # off follows a new on, as detect's does


# -- the rolling window scorer


def identity_card():
    card = read_card(BUNDLED_MODEL)
    n = card.features.n_features
    return dataclasses.replace(card, mean=np.zeros(n, np.float32), std=np.ones(n, np.float32))


def causal_mean(windows: np.ndarray) -> np.ndarray:
    """A causal stand-in network: position j gets the mean of column 1 over positions 0..j."""
    column = windows[..., 1].astype(np.float64)
    return np.cumsum(column, axis=1) / np.arange(1, windows.shape[1] + 1)


@pytest.mark.parametrize("hop", [1, 10, 37, 100])
def test_window_scorer_gives_each_frame_the_end_of_the_window_ending_at_its_hop(hop):
    card = identity_card()
    window = card.model.window
    rng = np.random.default_rng(hop)
    n = 431
    features = rng.normal(size=(n, card.features.n_features)).astype(np.float32)
    scorer = WindowScorer(card, causal_mean, hop=hop)
    got, at = [], 0
    while at < n:
        step = int(rng.integers(0, 60))
        got.append(scorer.push(features[at : at + step]))
        at += step
    got.append(scorer.flush())
    got = np.concatenate(got)
    expected = np.empty(n)
    for f in range(n):
        end = min(-(-(f + 1) // hop) * hop, n)  # the first window end (a multiple of hop, or the stream's end) past f
        start = max(0, end - window)
        expected[f] = features[start : f + 1, 1].mean()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert scorer.windows == -(-n // hop)
    assert len(scorer.buffer) <= window + 60  # the rolling buffer stays a window (and a block) long


def test_live_events_do_not_depend_on_block_sizes():
    y, _ = alarm_scene(14.0, [2.0, 8.5], seed=3)
    y = y.astype(np.float32)
    detector = Detector()
    card = detector.card
    post = LivePost(on=0.9, off=0.6, min_duration=0.3, hold=0.6)
    runs = []
    for sizes in ([len(y)], [160] * (len(y) // 160 + 1), [1, 999, 77, 16000, 3, 5000] * 20):
        blocks, at = [], 0
        for size in sizes:
            if at < len(y):
                blocks.append(y[at : at + size])
            at += size
        live = LiveDetector(card, detector.predict, post=post, hop_seconds=HOP)
        runs.append([(e.event, e.stream_time, e.confidence) for e in live.run(blocks)])
    assert runs[0] == runs[1] == runs[2]
    assert [kind for kind, _, _ in runs[0]] == ["start", "end", "start", "end"]
    # confidences are the card's calibration of the raw ones (as detect's), raw on request or without the verifier
    calibration = card.calibration
    assert calibration is not None and card.verifier is not None
    raw = list(LiveDetector(card, detector.predict, post=post, hop_seconds=HOP, raw_confidence=True).run([y]))
    assert [(e.event, e.stream_time) for e in raw] == [(kind, t) for kind, t, _ in runs[0]]
    expected = [round(float(calibration.apply(e.confidence)), 6) for e in raw]
    assert [c for _, _, c in runs[0]] == expected != [e.confidence for e in raw]
    unverified = list(LiveDetector(card, detector.predict, post=post, hop_seconds=HOP, verify=False).run([y]))
    ends = [e.confidence for e in raw if e.event == "end"]
    assert [e.confidence for e in unverified if e.event == "end"] == ends  # told sooner, but the same raw peak


# -- stdin streams


@pytest.mark.parametrize(
    ("subtype", "channels", "expected"),
    [("PCM_16", 1, "s16le"), ("PCM_32", 2, "s32le"), ("FLOAT", 1, "f32le"), ("DOUBLE", 3, "f64le")],
)
def test_wav_streams_decode_as_soundfile_reads_them(subtype, channels, expected):
    rng = np.random.default_rng(1)
    y = (rng.uniform(-0.9, 0.9, 5000)).astype(np.float64)
    data = wav_bytes(y, sr=22050, subtype=subtype, channels=channels)  # 3 channels: WAVE_FORMAT_EXTENSIBLE
    reference, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    source = StdinSource(io.BufferedReader(io.BytesIO(data), buffer_size=333))
    assert (source.format.fmt, source.rate, source.channels) == (expected, rate, channels)
    got = np.concatenate(list(source))
    np.testing.assert_array_equal(got, reference)


def test_a_wav_written_to_a_pipe_is_read_to_its_end_and_trailing_chunks_are_not_audio():
    y = np.linspace(-0.5, 0.5, 1000)
    data = bytearray(wav_bytes(y))
    at = data.index(b"data")
    unknown = bytes(data[: at + 4]) + struct.pack("<I", 0xFFFFFFFF) + bytes(data[at + 8 :])
    assert len(np.concatenate(list(StdinSource(io.BytesIO(unknown))))) == 1000
    trailing = bytes(data) + b"LIST" + struct.pack("<I", 4) + b"INFO"  # a chunk after the data
    assert len(np.concatenate(list(StdinSource(io.BytesIO(trailing))))) == 1000
    header_size = read_wav_header(io.BytesIO(bytes(data)))[1]
    assert header_size == 2000


def test_bad_streams_are_one_line_errors():
    fails(cli("listen", "--input", "-"), "<stdin>: not a WAV stream", "--format")
    fails(cli("listen", "--input", "-", "--format", "s16le"), "needs both --format and --rate", code=2)
    fails(cli("listen", "--format", "s16le", "--rate", "8000"), "give --input -", code=2)
    fails(cli("listen", "--input", "-", "--device", "1"), "not both", code=2)
    odd = wav_bytes(np.zeros(100), subtype="PCM_24")
    with pytest.raises(soundnet.SoundnetError, match="24 bits.*16/32-bit integer"):
        StdinSource(io.BytesIO(odd))
    with pytest.raises(soundnet.SoundnetError, match="ends inside a frame"):
        list(StdinSource(io.BytesIO(b"\0\0\0"), raw=RawPCM("s16le", 8000, 1)))


# -- live against offline


def test_listen_and_detect_agree_on_the_events_within_one_hop(tmp_path):
    """The bundled detector with its card's post-processing (median filter, hysteresis,
    verifier): the example recording and a scene of planted alarms, through listen on
    stdin (a WAV) and through detect. The same events, starting within one hop; an
    event's end follows the probability's tail down to the off level, where live's
    probabilities (each frame at its window's end) and detect's (stitched windows)
    differ most: within half a second."""
    y, truth = alarm_scene(40.0, [5.0, 20.0, 31.3], seed=5)
    scene = tmp_path / "scene.wav"
    sf.write(scene, y, SR, subtype="PCM_16")
    example = BUNDLED_MODEL.parents[2] / "examples" / "smoke_alarm.wav"
    for path in (scene, example):
        offline = offline_intervals(soundnet.detect(path).detections[0].events)
        assert offline, path
        live = live_intervals(json_lines(ok(cli("listen", "--input", "-", input=path.read_bytes())).stdout))
        assert len(live) == len(offline), (path, live, offline)
        for (on_live, off_live), (on_off, off_off) in zip(live, offline, strict=True):
            assert abs(on_live - on_off) <= HOP + 1e-9 and abs(off_live - off_off) <= 0.5, (path, live, offline)
    assert len(live_intervals(json_lines(ok(cli("listen", "--input", "-", input=scene.read_bytes())).stdout))) == len(truth)


def test_raw_pcm_at_another_rate_and_channels_finds_the_same_events(tmp_path):
    y, _ = alarm_scene(16.0, [3.0, 10.0], seed=8)
    wav = ok(cli("listen", "--input", "-", "--min-duration", "0.5", input=wav_bytes(y))).stdout
    import soxr

    stereo = np.repeat(soxr.resample(y, SR, 44100)[:, None], 2, axis=1)
    raw = (np.clip(stereo, -1, 1) * 32767).astype("<i2").tobytes()
    args = ["listen", "-i", "-", "--format", "s16le", "--rate", "44100", "--channels", "2", "--min-duration", "0.5"]
    pcm = ok(cli(*args, input=raw)).stdout
    a, b = live_intervals(json_lines(wav)), live_intervals(json_lines(pcm))
    assert len(a) == len(b) == 2
    for x, z in zip(a, b, strict=True):
        assert abs(x[0] - z[0]) <= HOP and abs(x[1] - z[1]) <= HOP


def test_the_json_lines_carry_the_contracts_fields(tmp_path):
    y, _ = alarm_scene(10.0, [2.0], seed=2)
    log = tmp_path / "events.log"
    result = ok(
        cli("listen", "--input", "-", "--log", log, "--min-duration", "0.2", "--on", "0.9", "--off", "0.5", input=wav_bytes(y))
    )
    lines = json_lines(result.stdout)
    assert [line["event"] for line in lines] == ["start", "end"]
    for line in lines:
        assert set(line) == {"event", "label", "stream_time", "wall_time", "confidence"}
        assert line["label"] == "smoke_alarm" and 0.9 <= line["confidence"] <= 1
        assert line["wall_time"].endswith("+00:00") and "T" in line["wall_time"]
    assert json_lines(log.read_text()) == lines
    assert "stopped by end of stream after 10.0 s" in result.stderr and "0 overrun(s)" in result.stderr
