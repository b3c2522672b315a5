"""Tests of soundnet.postprocess: threshold, median filter, minimum duration, gap merging, event times."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from soundnet.config import PostConfig
from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.postprocess import active_runs, hysteresis_runs, median_frames, smooth, to_events

FS = 0.01


def probs(n: int, *runs: tuple[int, int, float], base: float = 0.1) -> np.ndarray:
    p = np.full(n, base, np.float32)
    for start, stop, value in runs:
        p[start:stop] = value
    return p


def spans(events: list[Event]) -> list[tuple[float, float]]:
    return [(e.onset, e.offset) for e in events]


def detect(p: np.ndarray, *, duration: float | None = None, **post) -> list[Event]:
    duration = (len(p) - 1) * FS + 0.005 if duration is None else duration
    return to_events(p, post=PostConfig(**post), frame_seconds=FS, duration=duration, filename="f.wav", label="beep")


def test_threshold_and_event_times():
    p = probs(200, (10, 20, 0.9), (50, 51, 0.6))
    events = detect(p)
    assert spans(events) == [(0.095, 0.195), (0.495, 0.505)]
    assert all(e.filename == "f.wav" and e.label == "beep" for e in events)


def test_threshold_is_inclusive():
    p = probs(100, (10, 20, 0.5))
    assert spans(detect(p, threshold=0.5)) == [(0.095, 0.195)]
    assert detect(p, threshold=0.51) == []


def test_threshold_changes_events():
    p = probs(100, (10, 20, 0.4), (40, 50, 0.8))
    assert spans(detect(p, threshold=0.3)) == [(0.095, 0.195), (0.395, 0.495)]
    assert spans(detect(p, threshold=0.5)) == [(0.395, 0.495)]
    assert detect(p, threshold=0.9) == []


def test_times_clipped_to_file():
    p = probs(101, (0, 5, 0.9), (98, 101, 0.9))
    assert spans(detect(p, duration=1.0)) == [(0.0, 0.045), (0.975, 1.0)]


def test_whole_file_active():
    p = np.ones(101, np.float32)
    assert spans(detect(p, duration=1.0)) == [(0.0, 1.0)]


def test_confidence_is_max_probability_in_event():
    p = probs(100, (10, 20, 0.7), (30, 40, 0.6))
    p[15] = 0.93
    p[35] = 0.61
    events = detect(p)
    assert [e.confidence for e in events] == [pytest.approx(0.93), pytest.approx(0.61)]


def test_confidence_uses_unfiltered_probabilities():
    p = probs(100, (10, 30, 0.7))
    p[20] = 0.99  # a one-frame peak that the median filter flattens
    events = detect(p, median_seconds=0.05)
    assert len(events) == 1
    assert events[0].confidence == pytest.approx(0.99)


def test_median_filter_removes_one_frame_blips():
    p = probs(200, (10, 40, 0.9), (100, 101, 0.95), (150, 151, 0.95))
    p[25] = 0.0  # a one-frame dropout inside the event
    assert len(detect(p)) == 4  # the split event and the two blips
    assert spans(detect(p, median_seconds=0.03)) == [(0.095, 0.395)]


@pytest.mark.parametrize(("seconds", "frames"), [(0.0, 1), (0.01, 1), (0.02, 3), (0.03, 3), (0.04, 5), (0.05, 5), (0.1, 11)])
def test_median_frames(seconds, frames):
    assert median_frames(seconds, frame_seconds=FS) == frames


def test_smooth_is_scipys_median_filter(monkeypatch):
    from scipy.ndimage import median_filter

    import soundnet.postprocess as postprocess

    monkeypatch.setattr(postprocess, "MEDIAN_CHUNK", 37)  # several chunks, uneven
    monkeypatch.setattr(postprocess, "SCIPY_FRAMES", 500)  # and scipy itself from 500 frames on
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 100, 499, 500, 1000):
        p = rng.random(n).astype(np.float32)
        for frames in (3, 5, 21, 51):
            np.testing.assert_array_equal(smooth(p, frames=frames), median_filter(p, size=frames, mode="nearest"))


def test_smooth_keeps_length_and_edges():
    p = np.array([0.9, 0.1, 0.1, 0.9, 0.9, 0.1, 0.9], np.float32)
    s = smooth(p, frames=3)
    assert s.shape == p.shape
    assert_allclose(s, [0.9, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    assert smooth(p, frames=1) is p
    assert smooth(np.zeros(0, np.float32), frames=5).shape == (0,)


def test_min_duration_drops_short_events():
    p = probs(300, (10, 13, 0.9), (50, 70, 0.9), (100, 105, 0.9))
    assert spans(detect(p, min_duration=0.04)) == [(0.495, 0.695), (0.995, 1.045)]
    assert spans(detect(p, min_duration=0.1)) == [(0.495, 0.695)]
    assert detect(p, min_duration=0.5) == []


def test_merge_gap_merges_close_events():
    p = probs(300, (10, 20, 0.9), (25, 35, 0.8), (60, 70, 0.9))  # gaps of 5 and 25 frames
    assert len(detect(p)) == 3
    assert spans(detect(p, merge_gap=0.04)) == [(0.095, 0.195), (0.245, 0.345), (0.595, 0.695)]
    merged = detect(p, merge_gap=0.06)
    assert spans(merged) == [(0.095, 0.345), (0.595, 0.695)]
    assert merged[0].confidence == pytest.approx(0.9)
    assert spans(detect(p, merge_gap=0.3)) == [(0.095, 0.695)]


def test_merge_happens_before_min_duration():
    p = probs(200, (10, 15, 0.9), (17, 22, 0.9))  # two 50 ms runs, 20 ms apart
    assert detect(p, min_duration=0.1) == []
    assert spans(detect(p, min_duration=0.1, merge_gap=0.03)) == [(0.095, 0.215)]


def test_no_events():
    assert detect(np.zeros(100, np.float32)) == []
    assert detect(np.zeros(0, np.float32), duration=0.0) == []


def test_active_runs():
    runs = active_runs(np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], bool))
    assert runs.tolist() == [[0, 2], [4, 5], [6, 9]]
    assert active_runs(np.zeros(5, bool)).shape == (0, 2)
    assert active_runs(np.zeros(0, bool)).shape == (0, 2)


def test_events_sorted_and_disjoint_on_noise():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 5000).astype(np.float32)
    for post in [dict(), dict(median_seconds=0.05), dict(merge_gap=0.02, min_duration=0.03), dict(threshold=0.9)]:
        events = detect(p, **post)
        assert events == sorted(events)
        for a, b in zip(events, events[1:], strict=False):
            assert a.offset < b.onset
        assert all(0 <= e.onset < e.offset <= 49.995 and 0 <= e.confidence <= 1 for e in events)


# -- hysteresis (off_threshold)


def test_hysteresis_keeps_the_runs_that_reach_the_threshold_whole():
    # a run at 0.6 holding one frame at 0.95, and a run at 0.6 that never reaches 0.9
    p = probs(300, (20, 80, 0.6), (50, 51, 0.95), (150, 200, 0.6))
    assert spans(detect(p, threshold=0.9)) == [(0.495, 0.505)]
    assert spans(detect(p, threshold=0.9, off_threshold=0.5)) == [(0.195, 0.795)]
    assert detect(p, threshold=0.9, off_threshold=0.9) == detect(p, threshold=0.9)  # off == threshold: none
    # the minimum duration and the gap act on the whole runs
    assert detect(p, threshold=0.9, off_threshold=0.5, min_duration=0.5) == detect(p, threshold=0.9, off_threshold=0.5)
    assert detect(p, threshold=0.9, min_duration=0.5) == []


def test_hysteresis_runs_match_a_frame_by_frame_count():
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = rng.random(rng.integers(0, 80)).astype(np.float32)
        on, off = sorted(rng.random(2), reverse=True)
        expected, start = [], None
        for i, value in enumerate([*p, -1.0]):  # a run of frames >= off, kept if one of them is >= on
            if value >= off and start is None:
                start = i
            elif value < off and start is not None:
                if p[start:i].max() >= on:
                    expected.append([start, i])
                start = None
        assert hysteresis_runs(p, on=on, off=off).tolist() == expected


def test_off_threshold_above_the_threshold_is_refused():
    with pytest.raises(SoundnetError, match=r"off_threshold must be in \[0, threshold\]"):
        PostConfig(threshold=0.5, off_threshold=0.7)
    assert str(PostConfig(threshold=0.9, off_threshold=0.5)).startswith("threshold 0.9 (off 0.5),")
    assert PostConfig(threshold=0.9).off == 0.9 and PostConfig(threshold=0.9, off_threshold=0.4).off == 0.4
