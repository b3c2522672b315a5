"""Per-frame features: 64 MFCC, their 64 deltas and the zero-crossing rate.

Pure functions over arrays (no files). All three features sit on one frame grid:
frame ``i`` is centred at ``i * hop_length / sample_rate`` seconds and spans
``n_fft`` samples of the signal padded with ``n_fft // 2`` zeros at each end, so a
signal of ``n`` samples always gives ``1 + n // hop_length`` frames.

Features are computed chunk by chunk (:func:`iter_features`) with exact context at
chunk boundaries, so a 10-hour recording streams through in bounded memory and gives
the same numbers as :func:`compute_features` on the whole signal, bit for bit.

The numbers are librosa's (``librosa.feature.mfcc`` of ``power_to_db`` of the
melspectrogram of a centred ``stft``, ``librosa.feature.delta`` and
``zero_crossing_rate``; the tests hold every feature to them within float32 rounding),
computed here with NumPy alone: each frame is windowed, transformed, projected onto
the mel bands, logged and projected onto the DCT once, 128 frames at a time so the
work stays in cache, with the dB scale folded into the DCT matrix. The filter bank,
window and DCT are librosa's and scipy's formulas, tested equal to them; importing
librosa would cost a fresh process 1.5 s.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from soundnet.config import FeatureConfig
from soundnet.inputs import INPUTS, split_inputs

CHUNK_FRAMES = 6000
BLOCK_FRAMES = 128  # frames a block of the STFT/mel/DCT work holds: ~0.8 MB of buffers, in a core's L2 cache
AMIN = 1e-10  # power floor of the log-mel spectrogram: -100 dB


def silent_frames(features: np.ndarray, *, config: FeatureConfig) -> np.ndarray:
    """Which frames are digital silence: every mel band at the -100 dB floor.

    With the orthonormal DCT the first MFCC is ``sum(log_mel) / sqrt(n_mels)``, so it
    sits at its least possible value, ``-100 * sqrt(n_mels)``, exactly when every band
    does (a frame of all-zero samples, or a signal below 1e-10 power in every band).
    """
    floor = 10 * np.log10(AMIN) * np.sqrt(config.n_mels)
    return features[:, 0] <= floor + 1e-4 * abs(floor)


def one_blas_thread():
    """Run NumPy's BLAS on one thread: ``with one_blas_thread(): ...`` (restored
    after), or called bare in a worker process of soundnet's own (for good).

    The feature path's matrix products are small (64 mel bands x 257 bins per chunk):
    more BLAS threads spin more than they help, and they take the cores that LiteRT's
    threads and the other extract workers need. Measured on 2 cores: detect of a
    1-hour file 6.1 s -> 5.1 s wall, 10.2 -> 7.5 s of CPU (BENCHMARKS.md).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit = None


@contextlib.contextmanager
def _products_on_one_thread() -> Iterator[None]:
    """The feature products on one BLAS thread, whoever calls: at this size (128 x 257
    by 257 x 64) two OpenBLAS threads make them ~5x slower, and a row's rounding then
    depends on how the threads split the product. Counted, so threads computing
    features at once restore the caller's setting only when the last one is done."""
    global _blas_users, _blas_limit
    with _blas_lock:
        if _blas_users == 0:
            _blas_limit = _blas_controller().limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None


@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def n_frames(n_samples: int, *, hop_length: int) -> int:
    """Frames of a signal of ``n_samples`` samples: ``1 + n_samples // hop_length``."""
    return 1 + n_samples // hop_length


def frame_times(n: int, *, config: FeatureConfig) -> np.ndarray:
    """Centre time in seconds of each of ``n`` frames."""
    return np.arange(n) * config.frame_seconds


def split_features(x: np.ndarray, *, n_mfcc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the MFCC, delta and ZCR columns of a feature matrix ``(..., 2*n_mfcc+1)``
    (the split of :func:`soundnet.inputs.split_inputs`, in input order)."""
    parts = split_inputs(x, n_mfcc=n_mfcc)
    return tuple(parts[name] for name in INPUTS)


def frame_segments(
    blocks: Iterable[np.ndarray],
    *,
    n_fft: int,
    hop_length: int,
    min_frames: int = 1,
    max_frames: int | None = None,
    inside_only: bool = False,
) -> Iterator[np.ndarray]:
    """The streaming framer: consecutive runs of whole frames of a signal given in blocks.

    Frame ``i`` is the ``n_fft`` samples centred on sample ``i * hop_length`` of the
    signal padded with ``n_fft // 2`` zeros at each end (``librosa.stft(y,
    center=True, pad_mode="constant")``). Each segment yielded is a piece of that padded
    signal holding whole consecutive frames, ``(len(segment) - n_fft) // hop_length + 1``
    of them, with no partial frame at its end; frames that straddle input blocks are
    exact, and only one block and the unused tail are held.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(n,)]
        The signal, in any split (converted to float32).
    n_fft, hop_length : int > 0
        Frame length and step in samples (``n_fft`` even).
    min_frames : int >= 1
        Frames are yielded once at least this many are ready (all that are ready), and
        at the end of the signal.
    max_frames : int or None
        Most frames a segment holds (longer runs come as several segments).
    inside_only : bool
        Frames in all: those centred on a sample of the signal, ``ceil(n / hop_length)``;
        default also the one centred just past the end when ``hop_length`` divides
        ``n``: ``1 + n // hop_length`` (the feature grid). An empty signal has none.

    Yields
    ------
    segment : np.ndarray [shape=(m,), dtype=float32]
        A view, valid until the next segment is asked for.
    """
    hop, pad = hop_length, n_fft // 2

    def runs(signal: np.ndarray, frames: int) -> Iterator[np.ndarray]:
        size = max_frames or frames
        for k in range(0, frames, max(size, 1)):
            yield signal[k * hop : (min(frames, k + size) - 1) * hop + n_fft]

    def whole(n: int) -> int:
        return (n - n_fft) // hop + 1 if n >= n_fft else 0

    buffer = np.zeros(pad, np.float32)  # the padded signal from the first frame not yet given on
    n_samples = given = 0
    for block in blocks:
        n_samples += len(block)
        buffer = np.concatenate([buffer, np.asarray(block, np.float32)])
        ready = whole(len(buffer))
        if ready >= max(min_frames, 1):
            yield from runs(buffer, ready)
            given += ready
            buffer = buffer[ready * hop :]
    if n_samples == 0:
        return
    tail = np.concatenate([buffer, np.zeros(pad, np.float32)])
    total = -(-n_samples // hop) if inside_only else n_frames(n_samples, hop_length=hop)
    yield from runs(tail, min(max(total - given, 0), whole(len(tail))))


def frame_power(segment: np.ndarray, *, n_fft: int, hop_length: int, win_length: int) -> np.ndarray:
    """Power spectrum ``(1 + n_fft // 2, frames)`` of every whole frame of a segment of
    :func:`frame_segments`: ``abs(librosa.stft(segment, center=False)) ** 2``, float32."""
    frames = _frames(np.asarray(segment, np.float32), n_fft=n_fft, hop_length=hop_length)
    window = hann_window(win_length, n_fft=n_fft)
    out = np.empty((len(frames), 1 + n_fft // 2), np.float32)
    for start in range(0, len(frames), BLOCK_FRAMES):
        stop = min(start + BLOCK_FRAMES, len(frames))
        _power(frames[start:stop] * window, out=out[start:stop])
    return out.T


def hann_window(win_length: int, *, n_fft: int) -> np.ndarray:
    """The analysis window of librosa.stft, float64: ``scipy.signal.get_window("hann",
    win_length, fftbins=True)`` (periodic) centred in ``n_fft`` zeros as
    ``librosa.util.pad_center`` does, computed as scipy does."""
    phase = np.linspace(-np.pi, np.pi, win_length + 1)[:-1]
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left : left + win_length] = 0.5 + 0.5 * np.cos(phase)
    return window


_MEL_HZ = 200.0 / 3  # Slaney's mel scale: linear up to 1 kHz (15 mels), logarithmic above
_LOG_MEL = 1000.0 / _MEL_HZ
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """``librosa.hz_to_mel(hz, htk=False)``, the same operations in the same order."""
    hz = np.atleast_1d(np.asarray(hz, np.float64))
    mel = hz / _MEL_HZ
    high = hz >= 1000.0
    mel[high] = _LOG_MEL + np.log(hz[high] / 1000.0) / _LOG_STEP
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """``librosa.mel_to_hz(mel, htk=False)``."""
    mel = np.atleast_1d(np.asarray(mel, np.float64))
    hz = _MEL_HZ * mel
    high = mel >= _LOG_MEL
    hz[high] = 1000.0 * np.exp(_LOG_STEP * (mel[high] - _LOG_MEL))
    return hz


def mel_filter_bank(*, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """``librosa.filters.mel(sr=..., n_fft=..., n_mels=..., fmin=..., fmax=...)`` (Slaney
    scale and area normalisation), in NumPy: librosa's first call costs a fresh process
    about 1.5 s of imports, this a few microseconds (a test holds the two equal).

    Returns
    -------
    weights : np.ndarray [shape=(n_mels, 1 + n_fft // 2), dtype=float32]
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin)[0], _hz_to_mel(fmax)[0], n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # in float64, into float32: librosa's rounding
    return weights


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """The first ``n_out`` rows of the orthonormal DCT-II of length ``n_in``
    (``scipy.fft.dct(x, type=2, norm="ortho")[:n_out] == dct_matrix(n_out, n_in) @ x``), float64."""
    k, n = np.arange(n_out)[:, None], np.arange(n_in)[None, :]
    matrix = np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_in))
    matrix[0] /= np.sqrt(2.0)
    return matrix


@dataclass(frozen=True)
class _Plan:
    """What every frame of one FeatureConfig is multiplied by, computed once."""

    window: np.ndarray  # (n_fft,) float64: the Hann window (the FFT runs in float64, as librosa's)
    mel: np.ndarray  # (n_bins, n_mels) float32: the mel filter bank, transposed
    cepstrum: np.ndarray  # (n_mels, n_mfcc) float32: DCT rows x 10/ln(10), so ln(mel) -> MFCC of dB


@functools.lru_cache(maxsize=8)
def _plan(config: FeatureConfig) -> _Plan:
    c = config
    mel = mel_filter_bank(sample_rate=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax)
    cepstrum = 10.0 / np.log(10.0) * dct_matrix(c.n_mfcc, c.n_mels)
    return _Plan(
        hann_window(c.win_length, n_fft=c.n_fft), np.ascontiguousarray(mel.T), np.ascontiguousarray(cepstrum.T, np.float32)
    )


def _frames(segment: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """The whole frames of a segment, ``(frames, n_fft)``: a strided view, no copy."""
    count = (len(segment) - n_fft) // hop_length + 1 if len(segment) >= n_fft else 0
    return np.lib.stride_tricks.as_strided(
        segment, shape=(count, n_fft), strides=(hop_length * segment.strides[0], segment.strides[0]), writeable=False
    )


def _power(windowed: np.ndarray, *, out: np.ndarray) -> np.ndarray:
    """``|rfft(frame)|^2`` of each windowed frame ``(b, n_fft)`` into ``out`` ``(b, n_bins)``
    float32. The FFT runs in float64, as librosa's does (its window is float64), and
    NumPy's float64 FFT is the faster one (its float32 FFT is ~4x slower; scipy.fft's
    costs ~0.2 s to import)."""
    spectrum = np.fft.rfft(windowed, axis=1)
    np.square(spectrum.real, out=out, casting="same_kind")
    out += np.square(spectrum.imag)
    return out


def _mfcc(frames: np.ndarray, plan: _Plan, *, first: int, out: np.ndarray) -> np.ndarray:
    """MFCC ``(len(frames), n_mfcc)`` into ``out`` of consecutive frames, the first of
    which is frame ``first`` of the signal, BLOCK_FRAMES at a time: each frame's
    samples, spectrum, power and log-mel stay in cache from step to step.

    A BLAS matrix product may round a row differently depending on where the row sits in
    the matrix (OpenBLAS's kernels do), so frame ``i`` of a signal is always computed in
    row ``i % BLOCK_FRAMES`` of a full block: a frame's numbers then never depend on the
    chunk or block it came in, and streamed features equal whole-signal ones bit for bit.
    Rows of a block outside the frames hold older, finite values, whose results are
    dropped.
    """
    windowed = np.empty((BLOCK_FRAMES, frames.shape[1]))
    power = np.zeros((BLOCK_FRAMES, plan.mel.shape[0]), np.float32)
    log_mel = np.empty((BLOCK_FRAMES, plan.mel.shape[1]), np.float32)
    mfcc = np.empty((BLOCK_FRAMES, plan.cepstrum.shape[1]), np.float32)
    done = 0
    while done < len(frames):
        row = (first + done) % BLOCK_FRAMES
        n = min(BLOCK_FRAMES - row, len(frames) - done)
        rows = slice(row, row + n)
        np.multiply(frames[done : done + n], plan.window, out=windowed[:n])
        _power(windowed[:n], out=power[rows])  # the FFT is row by row: only the frames' rows
        np.matmul(power, plan.mel, out=log_mel)  # the products: the whole block, always
        np.maximum(log_mel[rows], AMIN, out=log_mel[rows])  # power_to_db(top_db=None): 10 log10(max(AMIN, mel)) ...
        np.log(log_mel[rows], out=log_mel[rows])  # ... whose 10 / ln(10) sits in plan.cepstrum
        np.matmul(log_mel, plan.cepstrum, out=mfcc)
        out[done : done + n] = mfcc[rows]
        done += n
    return out


def _zero_crossing_rate(y: np.ndarray, *, frame_length: int, hop_length: int, n: int) -> np.ndarray:
    """``librosa.feature.zero_crossing_rate(y, center=False)`` of ``n`` frames, exactly.

    librosa frames the signal and tests every sample of every frame (``frame_length /
    hop_length`` times each); here the crossings are found once over the signal and
    counted per frame by a cumulative sum. As ``librosa.zero_crossings`` (threshold
    1e-10, zero counted positive), a sample is negative when below -1e-10 (in the
    signal's precision). A frame at ``s`` counts the crossings at ``s+1 ..
    s+frame_length-1`` over ``frame_length``.
    """
    y = np.asarray(y)
    negative = y < -y.dtype.type(1e-10)
    counts = np.zeros(len(y), np.int32 if len(y) < 2**31 else np.int64)  # counts[j]: crossings at 1..j
    np.cumsum(negative[1:] != negative[:-1], dtype=counts.dtype, out=counts[1:])
    starts = np.arange(n) * hop_length
    return (counts[starts + frame_length - 1] - counts[starts]) / np.float32(frame_length)


def _frame_block(padded: np.ndarray, *, config: FeatureConfig, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MFCC ``(n, n_mfcc)`` and ZCR ``(n, 1)`` of every full frame of a piece of the padded
    signal whose first frame is frame ``first`` of the signal."""
    c = config
    frames = _frames(padded, n_fft=c.n_fft, hop_length=c.hop_length)
    with _products_on_one_thread():
        mfcc = _mfcc(frames, _plan(c), first=first, out=np.empty((len(frames), c.n_mfcc), np.float32))
    zcr = _zero_crossing_rate(padded, frame_length=c.n_fft, hop_length=c.hop_length, n=len(frames))
    return mfcc, zcr[:, None].astype(np.float32)


def _iter_frames(
    blocks: Iterable[np.ndarray], *, config: FeatureConfig, chunk_frames: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """MFCC and ZCR frames of a signal given in blocks, in chunks of about ``chunk_frames``."""
    first = 0
    for segment in frame_segments(
        blocks, n_fft=config.n_fft, hop_length=config.hop_length, min_frames=chunk_frames, max_frames=chunk_frames
    ):
        mfcc, zcr = _frame_block(segment, config=config, first=first)
        first += len(mfcc)
        yield mfcc, zcr


def delta(x: np.ndarray, *, width: int) -> np.ndarray:
    """``librosa.feature.delta(x, width=width, order=1, axis=0, mode="nearest")`` of
    rows ``x`` already extended by ``width // 2`` rows of context at each end (those rows
    get no delta): the local slope ``sum_k k * (x[t+k] - x[t-k]) / (2 * sum_k k^2)``,
    ``k = 1 .. width // 2``, which is the Savitzky-Golay first derivative of order 1.

    Returns
    -------
    delta : np.ndarray [shape=(len(x) - 2 * (width // 2), ...), dtype=float32]
    """
    half = width // 2
    n = len(x) - 2 * half
    out = np.zeros((n, *x.shape[1:]), np.float32)
    for k in range(1, half + 1):
        out += np.float32(k) * (x[half + k : half + k + n] - x[half - k : half - k + n])
    out *= np.float32(1.0 / (2 * sum(k * k for k in range(1, half + 1))))
    return out


def iter_features(
    blocks: Iterable[np.ndarray], *, config: FeatureConfig, chunk_frames: int = CHUNK_FRAMES
) -> Iterator[np.ndarray]:
    """Feature matrices of consecutive frames of a signal given as consecutive blocks.

    Parameters
    ----------
    blocks : iterable of np.ndarray [shape=(n,)]
        The mono signal at ``config.sample_rate``, in any split.
    config : FeatureConfig
    chunk_frames : int > 0
        Frames are computed once at least this many are ready, at most this many at a
        time (memory follows ``chunk_frames`` and the input block size).

    Yields
    ------
    features : np.ndarray [shape=(frames, 2*n_mfcc+1), dtype=float32]
        Columns: MFCC, deltas (``librosa.feature.delta``, edge frames repeated), ZCR.
        All chunks together hold ``1 + n // hop_length`` frames.
    """
    half = config.delta_width // 2
    left = pending_mfcc = pending_zcr = None
    for mfcc, zcr in _iter_frames(blocks, config=config, chunk_frames=chunk_frames):
        if left is None:  # the true start: repeat the first frame, as mode="nearest" does
            left = np.repeat(mfcc[:1], half, axis=0)
            pending_mfcc, pending_zcr = mfcc[:0], zcr[:0]
        pending_mfcc = np.concatenate([pending_mfcc, mfcc])
        pending_zcr = np.concatenate([pending_zcr, zcr])
        ready = len(pending_mfcc) - half  # frames that have `half` frames of future context
        if ready <= 0:
            continue
        context = np.concatenate([left, pending_mfcc])
        yield np.hstack([pending_mfcc[:ready], delta(context, width=config.delta_width), pending_zcr[:ready]])
        left = context[ready : ready + half]
        pending_mfcc, pending_zcr = pending_mfcc[ready:], pending_zcr[ready:]
    if left is None or len(pending_mfcc) == 0:
        return
    right = np.repeat(pending_mfcc[-1:], half, axis=0)
    context = np.concatenate([left, pending_mfcc, right])
    yield np.hstack([pending_mfcc, delta(context, width=config.delta_width), pending_zcr])


def compute_features(y: np.ndarray, *, config: FeatureConfig) -> np.ndarray:
    """Features of a whole signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal at ``config.sample_rate``, n >= 1.

    Returns
    -------
    features : np.ndarray [shape=(1 + n // hop_length, 2*n_mfcc+1), dtype=float32]
    """
    chunks = list(iter_features([np.asarray(y, np.float32)], config=config))
    if not chunks:
        return np.zeros((0, config.n_features), np.float32)
    return np.concatenate(chunks)
