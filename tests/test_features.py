"""Tests of soundnet.features: frame grid, known-answer signals, streaming, librosa reference."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.fft
from numpy.testing import assert_allclose

from soundnet.config import FeatureConfig
from soundnet.features import (
    _zero_crossing_rate,
    compute_features,
    dct_matrix,
    delta,
    frame_power,
    frame_segments,
    frame_times,
    hann_window,
    iter_features,
    mel_filter_bank,
    n_frames,
    silent_frames,
    split_features,
)

SR = 16000
CONFIG = FeatureConfig()


def noise(n: int, seed: int = 0, amplitude: float = 0.1) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def step_tone(*, on: bool, at: float = 0.5, seconds: float = 1.0, freq: float = 1000.0) -> np.ndarray:
    """A 1 kHz tone switched on (or off) abruptly at ``at`` seconds, over a faint noise floor."""
    t = np.arange(int(seconds * SR)) / SR
    y = 0.5 * np.sin(2 * np.pi * freq * t)
    y[(t < at) if on else (t >= at)] = 0.0
    return (y + 1e-4 * np.random.default_rng(0).standard_normal(len(y))).astype(np.float32)


@pytest.mark.parametrize("n", [1, 159, 160, 161, 16000, 48077])
def test_shape_dtype_and_finite(n):
    x = compute_features(noise(n, seed=n), config=CONFIG)
    assert x.shape == (1 + n // 160, 129)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()
    assert n_frames(n, hop_length=160) == 1 + n // 160


@pytest.mark.parametrize("n", [1, 160, 16000])
def test_silence_is_finite(n):
    x = compute_features(np.zeros(n, np.float32), config=CONFIG)
    assert x.shape == (1 + n // 160, 129)
    assert np.isfinite(x).all()


def test_n_features_and_split():
    assert CONFIG.n_features == 129
    x = compute_features(noise(1600), config=CONFIG)
    mfcc, delta, zcr = split_features(x, n_mfcc=64)
    assert mfcc.shape == (11, 64) and delta.shape == (11, 64) and zcr.shape == (11, 1)


def test_frame_times_are_centres():
    assert_allclose(frame_times(4, config=CONFIG), [0.0, 0.01, 0.02, 0.03])


def _band_power(x: np.ndarray, freq: float) -> np.ndarray:
    """Linear mel power of the band nearest ``freq``, from the MFCC (64 of 64 bands: an invertible DCT)."""
    log_mel = scipy.fft.idct(x[:, : CONFIG.n_mfcc], type=2, norm="ortho", axis=1)
    centres = librosa.mel_frequencies(n_mels=CONFIG.n_mels + 2, fmin=CONFIG.fmin, fmax=SR / 2)[1:-1]
    power = 10.0 ** (log_mel[:, int(np.argmin(np.abs(centres - freq)))] / 10)
    return power / power.max()


def _half_crossing(power: np.ndarray, *, rising: bool) -> int:
    """First frame at or past half the power (rising) or below it (falling), edges aside."""
    above = power[5:] >= 0.5  # frame 0 sees the abrupt start of the signal itself
    return 5 + int(np.argmax(above if rising else ~above))


@pytest.mark.parametrize("on", [True, False])
def test_tone_switch_shows_at_frame_centred_on_it(on):
    power = _band_power(compute_features(step_tone(on=on), config=CONFIG), 1000.0)
    assert abs(_half_crossing(power, rising=on) - 50) <= 1
    quiet, loud = (48, 52) if on else (52, 48)
    assert power[quiet] < 0.01 and power[loud] > 0.99
    assert 0.05 < power[50] < 0.95  # the frame centred on the switch sees part of the tone


def test_tone_onset_other_time():
    power = _band_power(compute_features(step_tone(on=True, at=1.23, seconds=2.0), config=CONFIG), 1000.0)
    assert abs(_half_crossing(power, rising=True) - 123) <= 1
    assert 0.05 < power[123] < 0.95


def test_zcr_alternating_is_one():
    y = np.tile(np.array([1.0, -1.0], np.float32), 4000)
    zcr = compute_features(y, config=CONFIG)[:, -1]
    interior = zcr[2:-2]  # frames lying wholly inside the signal (no zero padding)
    assert len(interior) > 0
    assert_allclose(interior, 1.0, atol=1 / CONFIG.n_fft + 1e-6)


def test_zcr_constant_is_zero():
    zcr = compute_features(np.full(8000, 0.5, np.float32), config=CONFIG)[:, -1]
    assert_allclose(zcr, 0.0, atol=1e-7)


def test_zcr_silence_is_zero():
    zcr = compute_features(np.zeros(8000, np.float32), config=CONFIG)[:, -1]
    assert_allclose(zcr, 0.0, atol=1e-7)


def _random_split(y: np.ndarray, rng: np.random.Generator, max_cuts: int) -> list[np.ndarray]:
    cuts = np.sort(rng.integers(0, len(y) + 1, size=rng.integers(0, max_cuts + 1)))
    return np.split(y, cuts)  # may hold empty blocks


@pytest.mark.parametrize("chunk_frames", [1, 7, 100, 6000])
def test_iter_features_equals_compute_features(chunk_frames):
    rng = np.random.default_rng(chunk_frames)
    t = np.arange(3 * SR + 77) / SR
    y = (noise(len(t), seed=3) + 0.3 * np.sin(2 * np.pi * 700 * t) * (t > 1.0)).astype(np.float32)
    whole = compute_features(y, config=CONFIG)
    for _ in range(6):
        blocks = _random_split(y, rng, max_cuts=30)
        chunks = list(iter_features(iter(blocks), config=CONFIG, chunk_frames=chunk_frames))
        assert all(c.shape[1] == 129 and c.dtype == np.float32 for c in chunks)
        got = np.concatenate(chunks)
        assert got.shape == whole.shape
        np.testing.assert_array_equal(got, whole)  # bit for bit, whatever the blocks and chunks


@pytest.mark.parametrize("n", [1, 100, 159, 160, 161, 700, 1601])
def test_iter_features_tiny_blocks(n):
    """Blocks of a few samples, and signals shorter than the delta context."""
    y = noise(n, seed=n)
    whole = compute_features(y, config=CONFIG)
    for size in (1, 3, 160, 161):
        blocks = [y[i : i + size] for i in range(0, n, size)]
        got = np.concatenate(list(iter_features(blocks, config=CONFIG, chunk_frames=2)))
        assert got.shape == whole.shape == (1 + n // 160, 129)
        np.testing.assert_array_equal(got, whole)


def test_iter_features_empty_signal_yields_nothing():
    assert list(iter_features([], config=CONFIG)) == []
    assert list(iter_features([np.zeros(0, np.float32)], config=CONFIG)) == []


def test_chunks_follow_chunk_frames_when_blocks_are_small():
    y = noise(10 * SR)
    blocks = [y[i : i + 1600] for i in range(0, len(y), 1600)]
    sizes = [len(c) for c in iter_features(blocks, config=CONFIG, chunk_frames=100)]
    assert sum(sizes) == 1001
    assert len(sizes) >= 9
    assert max(sizes) <= 100 + 10 + CONFIG.delta_width


def _librosa_reference(y: np.ndarray, c: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=c.sample_rate,
        n_fft=c.n_fft,
        hop_length=c.hop_length,
        win_length=c.win_length,
        center=True,
        pad_mode="constant",
        n_mels=c.n_mels,
        fmin=c.fmin,
        fmax=c.fmax,
    )
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, amin=1e-10, top_db=None), n_mfcc=c.n_mfcc)
    delta = librosa.feature.delta(mfcc, width=c.delta_width, mode="nearest")
    pad = c.n_fft // 2
    zcr = librosa.feature.zero_crossing_rate(np.pad(y, pad), frame_length=c.n_fft, hop_length=c.hop_length, center=False)
    return mfcc.T, delta.T, zcr.T


@pytest.mark.filterwarnings("ignore:n_fft=.*is too large:UserWarning")
@pytest.mark.parametrize("n", [1, 161, 2000, 16000, 48077])
def test_matches_librosa_reference(n):
    t = np.arange(n) / SR
    y = (noise(n, seed=7) + 0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    mfcc, delta, zcr = split_features(compute_features(y, config=CONFIG), n_mfcc=CONFIG.n_mfcc)
    ref_mfcc, ref_delta, ref_zcr = _librosa_reference(y, CONFIG)
    assert mfcc.shape == ref_mfcc.shape and zcr.shape == ref_zcr.shape
    assert_allclose(mfcc, ref_mfcc, atol=1e-3, rtol=1e-5)
    assert_allclose(delta, ref_delta, atol=1e-3, rtol=1e-5)
    assert_allclose(zcr, ref_zcr, atol=1e-6)


def test_matches_librosa_reference_other_config():
    c = FeatureConfig(
        sample_rate=8000, hop_length=80, n_fft=256, win_length=200, n_mels=40, n_mfcc=20, fmin=50.0, fmax=3500.0, delta_width=5
    )
    y = noise(8000 * 2 + 33, seed=11)
    x = compute_features(y, config=c)
    assert x.shape == (1 + len(y) // 80, 41)
    mfcc, delta, zcr = split_features(x, n_mfcc=20)
    ref_mfcc, ref_delta, ref_zcr = _librosa_reference(y, c)
    assert_allclose(mfcc, ref_mfcc, atol=1e-3, rtol=1e-5)
    assert_allclose(delta, ref_delta, atol=1e-3, rtol=1e-5)
    assert_allclose(zcr, ref_zcr, atol=1e-6)
    streamed = np.concatenate(list(iter_features(_random_split(y, np.random.default_rng(0), 10), config=c, chunk_frames=3)))
    np.testing.assert_array_equal(streamed, x)


def test_silent_frames_are_exactly_the_all_zero_ones():
    """A tone from 0.2 s to 0.5 s in digital silence: a frame is silent iff its n_fft
    samples (centred on the frame) are all zero; noise of a few 16-bit steps is not silence."""
    y = np.zeros(SR, np.float32)
    t = np.arange(SR) / SR
    on = (t >= 0.2) & (t < 0.5)
    y[on] = 0.5 * np.sin(2 * np.pi * 1000.0 * t[on])
    silent = silent_frames(compute_features(y, config=CONFIG), config=CONFIG)
    centres = np.arange(len(silent)) * CONFIG.hop_length
    first, last = np.flatnonzero(on)[[0, -1]]
    half = CONFIG.n_fft // 2
    touches = (centres + half > first) & (centres - half <= last)
    assert_allclose(silent, ~touches)
    assert silent_frames(compute_features(np.zeros(800, np.float32), config=CONFIG), config=CONFIG).all()
    assert not silent_frames(compute_features(noise(SR, amplitude=1e-4), config=CONFIG), config=CONFIG).any()


def test_zero_crossing_rate_equals_librosa_exactly():
    """The cumulative-sum ZCR against librosa's framed one, on a signal full of edge
    cases: exact zeros, negative zeros, values at and around librosa's 1e-10 threshold."""
    rng = np.random.default_rng(3)
    y = rng.choice(np.array([-1.0, -1e-9, -1e-10, -1e-11, -0.0, 0.0, 1e-11, 1e-10, 1e-9, 0.5], np.float32), 20000)
    n = (len(y) - CONFIG.n_fft) // CONFIG.hop_length + 1
    ours = _zero_crossing_rate(y, frame_length=CONFIG.n_fft, hop_length=CONFIG.hop_length, n=n)
    ref = librosa.feature.zero_crossing_rate(y, frame_length=CONFIG.n_fft, hop_length=CONFIG.hop_length, center=False)[0]
    np.testing.assert_array_equal(ours, ref)


# --- the streaming framer ----------------------------------------------------------------------


def _framed(segments, *, n_fft: int, hop: int) -> np.ndarray:
    """The frames of the segments, one a column."""
    frames = [librosa.util.frame(s, frame_length=n_fft, hop_length=hop) for s in segments]
    return np.concatenate(frames, axis=1) if frames else np.zeros((n_fft, 0), np.float32)


@pytest.mark.parametrize("n", [1, 159, 160, 1600, 4001])
@pytest.mark.parametrize("inside_only", [False, True])
def test_frame_segments_are_the_centred_frames_whatever_the_blocks(n, inside_only):
    y = noise(n, seed=n)
    n_fft, hop = 512, 160
    padded = np.pad(y, n_fft // 2)
    expected = librosa.util.frame(padded, frame_length=n_fft, hop_length=hop)
    count = -(-n // hop) if inside_only else 1 + n // hop
    assert expected.shape[1] >= count
    splits = [[], [1], [1, 100, 101, 900, 3000], list(range(7, n, 333))]
    for cuts in splits:
        blocks = np.split(y, [c for c in cuts if c < n])
        for min_frames, max_frames in [(1, None), (1, 3), (4, None), (1000, 2)]:
            segments = list(
                frame_segments(iter(blocks), n_fft=n_fft, hop_length=hop, min_frames=min_frames,
                               max_frames=max_frames, inside_only=inside_only)
            )  # fmt: skip
            for segment in segments:
                assert segment.dtype == np.float32 and (len(segment) - n_fft) % hop == 0  # whole frames only
                if max_frames is not None:
                    assert (len(segment) - n_fft) // hop + 1 <= max_frames
            got = _framed([s.copy() for s in segments], n_fft=n_fft, hop=hop)
            assert got.shape[1] == count
            np.testing.assert_array_equal(got, expected[:, :count])


def test_frame_segments_of_nothing():
    assert list(frame_segments(iter([]), n_fft=512, hop_length=160)) == []
    assert list(frame_segments(iter([np.zeros(0)]), n_fft=512, hop_length=160, inside_only=True)) == []


def test_frame_power_is_librosas_centred_stft():
    y = noise(5000, seed=4)
    c = CONFIG
    expected = np.abs(librosa.stft(y, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                                   center=True, pad_mode="constant")) ** 2  # fmt: skip
    got = np.concatenate(
        [frame_power(s, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length)
         for s in frame_segments(np.split(y, [777, 2000]), n_fft=c.n_fft, hop_length=c.hop_length, max_frames=5)],
        axis=1,
    )  # fmt: skip
    assert got.shape == expected.shape
    assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


# --- equal to librosa, on signals of every kind ------------------------------------------------

EPS32 = float(np.finfo(np.float32).eps)


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    t = np.arange(3 * SR + 77) / SR  # an odd length: the last frame is partial
    tone = np.sin(2 * np.pi * 1000 * t)
    return {
        "silence": np.zeros(SR),
        "tone in silence": np.where((t > 0.5) & (t < 2.0), 0.5 * tone, 0.0),
        "faint tone": 1e-4 * np.sin(2 * np.pi * 440 * t),
        "tone over a noise floor": 0.5 * np.sin(2 * np.pi * 3000 * t) + 1e-4 * rng.standard_normal(len(t)),
        "clipped": np.clip(3.0 * np.sin(2 * np.pi * 200 * t), -1.0, 1.0),
        "noise, gain 1e-5": 1e-5 * rng.standard_normal(len(t)),
        "noise, gain 1": rng.standard_normal(len(t)),
        "noise, gain 30": 30.0 * rng.standard_normal(len(t)),
        "16-bit steps": np.round(3 * rng.standard_normal(len(t))) / 32768,
        "clicks": (np.arange(len(t)) % 4000 == 0).astype(float),
        "offset": np.full(len(t), 0.3),
        "1 sample": rng.standard_normal(1),
        "100 samples": rng.standard_normal(100),
        "511 samples": rng.standard_normal(511),
        "4001 samples": rng.standard_normal(4001),
    }


@pytest.mark.filterwarnings("ignore:n_fft=.*is too large:UserWarning")
@pytest.mark.parametrize("name", list(_signals()))
def test_every_feature_is_librosas_within_float32_rounding(name):
    """MFCC and deltas within a few float32 roundings of the largest MFCC (the log-mel
    sums 64 bands of up to 100 dB each), the ZCR exactly."""
    y = _signals()[name].astype(np.float32)
    mfcc, delta, zcr = split_features(compute_features(y, config=CONFIG), n_mfcc=CONFIG.n_mfcc)
    ref_mfcc, ref_delta, ref_zcr = _librosa_reference(y, CONFIG)
    tolerance = 8 * EPS32 * np.abs(ref_mfcc).max()
    assert_allclose(mfcc, ref_mfcc, rtol=0, atol=tolerance)
    assert_allclose(delta, ref_delta, rtol=0, atol=tolerance)
    np.testing.assert_array_equal(zcr, ref_zcr.astype(np.float32))


@pytest.mark.parametrize(
    "sample_rate, n_fft, n_mels, fmin, fmax",
    [
        (16000, 512, 64, 0.0, None),
        (8000, 256, 40, 50.0, 3500.0),
        (44100, 2048, 128, 20.0, 16000.0),
        (22050, 1024, 96, 300.0, None),
    ],
)
def test_mel_filter_bank_is_librosas_exactly(sample_rate, n_fft, n_mels, fmin, fmax):
    ours = mel_filter_bank(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    theirs = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


def test_dct_matrix_is_scipys_orthonormal_dct():
    x = np.random.default_rng(0).standard_normal((64, 7))
    assert_allclose(dct_matrix(20, 64) @ x, scipy.fft.dct(x, type=2, norm="ortho", axis=0)[:20], atol=1e-12)
    assert_allclose(dct_matrix(64, 64) @ dct_matrix(64, 64).T, np.eye(64), atol=1e-12)


@pytest.mark.parametrize("win_length, n_fft", [(400, 512), (512, 512), (200, 256), (301, 512)])
def test_hann_window_is_librosas(win_length, n_fft):
    theirs = librosa.util.pad_center(librosa.filters.get_window("hann", win_length, fftbins=True), size=n_fft)
    np.testing.assert_array_equal(hann_window(win_length, n_fft=n_fft), theirs)


@pytest.mark.parametrize("width", [3, 5, 9, 15])
def test_delta_is_librosas(width):
    x = (50 * np.random.default_rng(width).standard_normal((37, 5))).astype(np.float32)
    half = width // 2
    context = np.concatenate([np.repeat(x[:1], half, axis=0), x, np.repeat(x[-1:], half, axis=0)])
    ours = delta(context, width=width)
    theirs = librosa.feature.delta(x, width=width, axis=0, mode="nearest")
    assert ours.shape == x.shape and ours.dtype == np.float32
    assert_allclose(ours, theirs, rtol=0, atol=8 * EPS32 * np.abs(x).max())


def test_long_signal_streams_bit_for_bit_across_chunks_and_blocks():
    """Over 2.5 default chunks, in blocks as iter_audio gives them and in odd ones: every
    frame equal to the whole-signal computation, whichever block of the products it fell in."""
    n = 150 * SR + 123
    y = noise(n, seed=5) * np.float32(0.5) + np.float32(0.2) * np.sin(np.arange(n, dtype=np.float32) * np.float32(0.3))
    whole = compute_features(y, config=CONFIG)
    for size in (30 * SR, 16000 * 7 + 13, 999_983):
        blocks = [y[i : i + size] for i in range(0, n, size)]
        np.testing.assert_array_equal(np.concatenate(list(iter_features(blocks, config=CONFIG))), whole)


def test_features_do_not_depend_on_the_callers_blas_threads():
    """The products run on one BLAS thread whatever the caller set, which is restored."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    y = noise(5 * SR, seed=9)
    with threadpool_limits(1, user_api="blas"):
        single = compute_features(y, config=CONFIG)
    with threadpool_limits(2, user_api="blas"):
        assert set(blas_threads()) == {2}
        np.testing.assert_array_equal(compute_features(y, config=CONFIG), single)
        assert set(blas_threads()) == {2}
