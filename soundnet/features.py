"""Per-frame features: 64 MFCC, their 64 deltas and the zero-crossing rate.

Pure functions over arrays (no files). All three features sit on one frame grid:
frame ``i`` is centred at ``i * hop_length / sample_rate`` seconds and spans
``n_fft`` samples of the signal padded with ``n_fft // 2`` zeros at each end, so a
signal of ``n`` samples always gives ``1 + n // hop_length`` frames.

Features are computed chunk by chunk (:func:`iter_features`) with exact context at
chunk boundaries, so a 10-hour recording streams through in bounded memory and gives
the same numbers as :func:`compute_features` on the whole signal.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import librosa
import numpy as np

from soundnet.config import FeatureConfig
from soundnet.inputs import INPUTS, split_inputs

CHUNK_FRAMES = 6000
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
    """Power spectrum ``(1 + n_fft // 2, frames)`` of every whole frame of a segment of :func:`frame_segments`."""
    spectrum = librosa.stft(segment, n_fft=n_fft, hop_length=hop_length, win_length=win_length, center=False)
    return np.abs(spectrum) ** 2


def _frame_block(padded: np.ndarray, *, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """MFCC ``(n, n_mfcc)`` and ZCR ``(n, 1)`` of every full frame of an already padded signal."""
    c = config
    power = frame_power(padded, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length)
    mel = librosa.feature.melspectrogram(S=power, sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax)
    # top_db=None: the default clips relative to the block's maximum, which would make a
    # frame's value depend on where the chunk boundaries fall.
    log_mel = librosa.power_to_db(mel, amin=AMIN, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=c.n_mfcc)
    zcr = _zero_crossing_rate(padded, frame_length=c.n_fft, hop_length=c.hop_length, n=mfcc.shape[1])
    return mfcc.T.astype(np.float32), zcr[:, None].astype(np.float32)


def _zero_crossing_rate(y: np.ndarray, *, frame_length: int, hop_length: int, n: int) -> np.ndarray:
    """``librosa.feature.zero_crossing_rate(y, center=False)`` of ``n`` frames, exactly.

    librosa frames the signal and tests every sample of every frame (``frame_length /
    hop_length`` times each); here the crossings are found once over the signal with
    ``librosa.zero_crossings`` and counted per frame by a cumulative sum. A frame at
    ``s`` counts the crossings at ``s+1 .. s+frame_length-1`` over ``frame_length``.
    """
    crossings = librosa.zero_crossings(y, pad=False)
    counts = np.concatenate([[0], np.cumsum(crossings[1:], dtype=np.int64)])  # counts[j]: crossings at 1..j
    starts = np.arange(n) * hop_length
    return (counts[starts + frame_length - 1] - counts[starts]) / frame_length


def _iter_frames(
    blocks: Iterable[np.ndarray], *, config: FeatureConfig, chunk_frames: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """MFCC and ZCR frames of a signal given in blocks, in chunks of about ``chunk_frames``."""
    for segment in frame_segments(blocks, n_fft=config.n_fft, hop_length=config.hop_length, min_frames=chunk_frames):
        yield _frame_block(segment, config=config)


def _delta(mfcc: np.ndarray, *, width: int) -> np.ndarray:
    return librosa.feature.delta(mfcc, width=width, axis=0, mode="nearest").astype(np.float32)


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
        Frames are computed once at least this many are ready; a chunk holds the
        frames of at most one input block more (memory follows the block size).

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
        delta = _delta(context, width=config.delta_width)[half : half + ready]
        yield np.hstack([pending_mfcc[:ready], delta, pending_zcr[:ready]])
        left = context[ready : ready + half]
        pending_mfcc, pending_zcr = pending_mfcc[ready:], pending_zcr[ready:]
    if left is None or len(pending_mfcc) == 0:
        return
    right = np.repeat(pending_mfcc[-1:], half, axis=0)
    context = np.concatenate([left, pending_mfcc, right])
    delta = _delta(context, width=config.delta_width)[half:-half]
    yield np.hstack([pending_mfcc, delta, pending_zcr])


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
