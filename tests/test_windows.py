"""Tests of soundnet.windows: window starts, padding, and streaming per-frame probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from soundnet.windows import pad_window, stream_probabilities, window_starts


def sigmoid_of_first_feature(windows: np.ndarray) -> np.ndarray:
    """A position-independent predictor: each frame's probability depends on that frame only."""
    assert windows.ndim == 3
    return 1.0 / (1.0 + np.exp(-windows[..., 0]))


def expected(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x[:, 0].astype(np.float64)))).astype(np.float32)


def random_chunks(x: np.ndarray, rng: np.random.Generator, max_cuts: int = 6) -> list[np.ndarray]:
    cuts = np.sort(rng.integers(0, len(x) + 1, size=rng.integers(0, max_cuts + 1)))
    return np.split(x, cuts)  # may hold empty chunks


@pytest.mark.parametrize("window", [1, 3, 10, 100])
@pytest.mark.parametrize("stride", [1, 4, 10, 50, 100, 150])
def test_window_starts_cover_every_frame(window, stride):
    for n in [0, 1, 2, window - 1, window, window + 1, 2 * window + 3, 517]:
        if n < 0:
            continue
        starts = window_starts(n, window=window, stride=stride)
        assert starts.dtype == np.int64
        if n == 0:
            assert len(starts) == 0
            continue
        assert starts[0] == 0
        assert np.all(np.diff(starts) > 0)
        if n <= window:
            assert starts.tolist() == [0]
            continue
        assert starts[-1] + window == n  # the last window ends at the last frame
        assert np.all(starts + window <= n)
        if stride <= window:
            covered = np.zeros(n, bool)
            for s in starts:
                covered[s : s + window] = True
            assert covered.all()
        regular = starts[:-1] if (n - window) % stride else starts
        assert np.all(regular % stride == 0)


def test_window_starts_examples():
    assert window_starts(250, window=100, stride=50).tolist() == [0, 50, 100, 150]
    assert window_starts(260, window=100, stride=50).tolist() == [0, 50, 100, 150, 160]
    assert window_starts(100, window=100, stride=50).tolist() == [0]
    assert window_starts(30, window=100, stride=50).tolist() == [0]


def test_pad_window():
    rows = np.arange(6, dtype=np.float32).reshape(3, 2) + 1
    padded = pad_window(rows, window=5)
    assert padded.shape == (5, 2) and padded.dtype == np.float32
    assert_allclose(padded[:3], rows)
    assert_allclose(padded[3:], 0)
    assert pad_window(rows, window=3) is rows


@pytest.mark.parametrize("window,hop", [(1, 1), (5, 1), (5, 2), (5, 5), (10, 3), (10, 7), (100, 50), (100, 100)])
def test_stream_one_value_per_frame_equal_to_the_predictor(window, hop):
    rng = np.random.default_rng(window * 1000 + hop)
    for n in [1, 2, window - 1, window, window + 1, 2 * window - 1, 3 * window + 7, 251]:
        if n < 1:
            continue
        x = rng.standard_normal((n, 3)).astype(np.float32)
        for _ in range(3):
            chunks = random_chunks(x, rng)
            p = stream_probabilities(
                iter(chunks), sigmoid_of_first_feature, window=window, hop=hop, batch_windows=int(rng.integers(1, 5))
            )
            assert p.shape == (n,) and p.dtype == np.float32
            assert_allclose(p, expected(x), atol=1e-6)


def test_stream_every_window_is_full_size_and_in_order():
    seen = []

    def predict(windows):
        seen.append(windows.shape)
        return sigmoid_of_first_feature(windows)

    x = np.random.default_rng(0).standard_normal((1234, 4)).astype(np.float32)
    stream_probabilities([x[:500], x[500:501], x[501:]], predict, window=100, hop=50, batch_windows=8)
    assert all(shape[1:] == (100, 4) for shape in seen)
    assert all(shape[0] <= 8 for shape in seen)
    assert sum(shape[0] for shape in seen) == len(window_starts(1234, window=100, stride=50))


def test_stream_empty():
    assert stream_probabilities([], sigmoid_of_first_feature, window=10, hop=5).shape == (0,)
    empty = np.zeros((0, 3), np.float32)
    assert stream_probabilities([empty, empty], sigmoid_of_first_feature, window=10, hop=5).shape == (0,)


@pytest.mark.parametrize("n", [1, 2, 37, 99])
def test_padding_never_leaks(n):
    """Padded frames (all zeros) predict 1, real frames 0: a short file's frames must all stay 0."""

    def predict(windows):
        return (np.abs(windows).sum(axis=-1) == 0).astype(np.float32)

    x = np.full((n, 5), 0.5, np.float32)
    calls = []

    def recording(windows):
        calls.append(windows.copy())
        return predict(windows)

    p = stream_probabilities([x], recording, window=100, hop=50)
    assert p.shape == (n,)
    assert_allclose(p, 0.0)
    assert len(calls) == 1 and calls[0].shape == (1, 100, 5)
    assert_allclose(calls[0][0, n:], 0.0)


def test_weighted_overlap_favours_later_positions():
    """A predictor that says 1 on a window's first half and 0 on its second: the frames in the middle
    of the file, seen both early and late in windows, lean towards the later (better-informed) view."""

    def predict(windows):
        p = np.zeros(windows.shape[:2], np.float32)
        p[:, : windows.shape[1] // 2] = 1.0
        return p

    x = np.ones((400, 1), np.float32)
    p = stream_probabilities([x], predict, window=100, hop=50)
    assert p.shape == (400,)
    assert np.all((p >= 0) & (p <= 1))
    assert_allclose(p[:50], 1.0)  # only the first window sees these frames
    assert np.all(p[50:350] <= 0.5) and p[50:350].mean() < 0.35


def test_stream_refuses_a_hop_longer_than_the_window():
    """Frames between windows would get no prediction at all."""
    x = np.random.default_rng(0).standard_normal((100, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="hop must be in"):
        stream_probabilities([x], sigmoid_of_first_feature, window=20, hop=50)


def test_card_detection_hop_follows_a_small_window():
    from soundnet.config import FeatureConfig, ModelConfig, PostConfig
    from soundnet.run import ModelCard

    card = ModelCard(
        "x", FeatureConfig(), ModelConfig(window=20), np.zeros(129, np.float32), np.ones(129, np.float32), PostConfig()
    )
    assert card.detection_hop == 10
