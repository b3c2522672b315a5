"""A long file's detection cut into pieces that workers compute apart and the caller joins.

detect scores a file with overlapping windows every ``hop`` frames (plus one ending at
the last frame) and averages them where they overlap (:func:`soundnet.windows.stream_probabilities`).
A file longer than :data:`SPLIT_SECONDS` is cut on that window grid: piece ``k`` owns
the windows starting in ``[first_k, first_{k+1})`` and reads the audio of the frames
they cover plus :func:`context_frames` frames either side, so its features there are
those of the whole file (the STFT frames and the delta filter see the same samples).
Each piece returns the weighted sums of its windows' probabilities over the frames they
cover; :class:`Join` adds the pieces of a file in order and divides.

The cut depends only on the file's length and the model, never on how many workers
there are, and a long file is cut the same way with one job: the probabilities are the
same bytes whatever ``--jobs`` or the cluster. Only files at the model's sample rate in
a format whose header gives the exact length are cut (a resampled stream cannot be
entered half-way exactly); others are one piece.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from soundnet.config import FeatureConfig

#: Files longer than this are cut into pieces of about PIECE_SECONDS.
SPLIT_SECONDS = 600.0
PIECE_SECONDS = 300.0
#: Formats whose header gives the exact number of frames (libsndfile's names).
EXACT_LENGTH_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF", "CAF"})


@dataclass(frozen=True)
class Piece:
    """One piece of a file: the windows starting in ``[first, stop)`` on the grid.

    Attributes
    ----------
    index, count : int
        This piece's place among the file's pieces.
    first, stop : int
        Window starts owned (frames, multiples of the hop); the last piece also owns the
        window that ends at the file's last frame.
    frames, samples : int
        The file's frames and samples in all.
    """

    index: int
    count: int
    first: int
    stop: int
    frames: int
    samples: int

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


def window_grid(n_frames: int, *, window: int, hop: int) -> np.ndarray:
    """Every window start detect uses on ``n_frames`` frames, in order: every ``hop``
    frames while a window fits, and one ending at the last frame when they miss it
    (:func:`soundnet.windows.stream_probabilities`)."""
    starts = list(range(0, n_frames - window + 1, hop)) if n_frames >= window else []
    if not starts or starts[-1] + window < n_frames:
        starts.append(max(n_frames - window, 0))
    return np.asarray(starts, np.int64)


def plan(n_samples: int, *, config: FeatureConfig, window: int, hop: int) -> list[Piece]:
    """The pieces of a file of ``n_samples`` samples at the model's rate (one when it is
    not longer than SPLIT_SECONDS)."""
    frames = 1 + n_samples // config.hop_length
    if n_samples <= SPLIT_SECONDS * config.sample_rate:
        return [Piece(0, 1, 0, frames, frames, n_samples)]
    size = max(hop, int(round(PIECE_SECONDS / config.frame_seconds / hop)) * hop)
    firsts = list(range(0, frames - window + 1, size))
    return [
        Piece(k, len(firsts), first, firsts[k + 1] if k + 1 < len(firsts) else frames, frames, n_samples)
        for k, first in enumerate(firsts)
    ]


def context_frames(config: FeatureConfig) -> int:
    """Frames read beyond a piece on each side so that its own frames' features are the
    whole file's: a frame spans ``n_fft`` samples, its delta ``delta_width`` frames."""
    return -(-(config.n_fft // 2) // config.hop_length) + config.delta_width // 2 + 2


def piece_starts(piece: Piece, *, window: int, hop: int) -> np.ndarray:
    grid = window_grid(piece.frames, window=window, hop=hop)
    owned = (grid >= piece.first) & (grid < piece.stop)
    if piece.last:
        owned[-1] = True  # the window that ends at the last frame
    return grid[owned]


@dataclass(frozen=True)
class PieceSums:
    """What a piece gives back: over frames ``[first, first + len(totals))``, the weighted
    sums of its windows' probabilities and of their weights; and which of the frames it
    owns (``[first, stop)``) are digital silence."""

    first: int
    totals: np.ndarray  # float64
    weights: np.ndarray  # float64
    silent: np.ndarray  # bool, the owned frames


def window_weights(window: int, hop: int) -> np.ndarray:
    """The weight of each position in a window (:func:`soundnet.windows.stream_probabilities`)."""
    return np.minimum(1.0, (np.arange(window) + 1.0) / max(1, window - hop))


def audio_span(piece: Piece, *, config: FeatureConfig, window: int, hop: int) -> tuple[int, int, int]:
    """What a piece reads: samples ``[start, stop)`` (its frames and their context) and
    the file frame the features of that audio start at."""
    starts = piece_starts(piece, window=window, hop=hop)
    context = context_frames(config)
    offset = max(0, int(starts[0]) - context)
    end = min(int(starts[-1]) + window, piece.frames)
    return offset * config.hop_length, (end + context) * config.hop_length, offset


def piece_sums(
    chunks: Iterable[np.ndarray],
    piece: Piece,
    *,
    offset: int,
    predict: Callable[[np.ndarray], np.ndarray],
    normalise: Callable[[np.ndarray], np.ndarray],
    silent_of: Callable[[np.ndarray], np.ndarray],
    window: int,
    hop: int,
    batch_windows: int = 256,
) -> PieceSums:
    """Score a piece from the unnormalised feature chunks of its audio (:func:`audio_span`),
    whose first row is frame ``offset`` of the file: its windows run in batches as soon
    as their frames have arrived, so features and the network overlap as in a whole file."""
    starts = piece_starts(piece, window=window, hop=hop)
    first = int(starts[0])
    assert first == piece.first, (first, piece)
    n = min(int(starts[-1]) + window, piece.frames) - first  # frames the piece's windows cover
    rows = None
    totals, weights = np.zeros(n, np.float64), np.zeros(n, np.float64)
    silent = np.zeros(piece.stop - first, bool)  # the owned frames, a prefix of the covered ones
    ramp = window_weights(window, hop)
    filled = done = 0  # frames received, windows run
    skip = first - offset  # context rows before the piece's first frame

    def run() -> None:
        nonlocal done
        ready = int(np.searchsorted(starts, first + filled - window, side="right"))
        for i in range(done, ready, batch_windows):
            batch = starts[i : min(i + batch_windows, ready)] - first
            probs = np.asarray(predict(np.stack([rows[s : s + window] for s in batch])), np.float64).reshape(len(batch), window)
            for s, p in zip(batch, probs, strict=True):
                totals[s : s + window] += ramp * p
                weights[s : s + window] += ramp
        done = max(done, ready)

    for chunk in chunks:
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        chunk, skip = chunk[skip:], 0
        take = min(len(chunk), n - filled)
        own = max(0, min(take, len(silent) - filled))
        silent[filled : filled + own] = silent_of(chunk[:own])
        if rows is None:
            rows = np.empty((n, chunk.shape[1]), np.float32)
        rows[filled : filled + take] = normalise(chunk[:take])
        filled += take
        run()
        if filled == n:
            break
    if filled < n or done < len(starts):
        raise ValueError(f"the audio of piece {piece.index} ended {n - filled} frame(s) early")
    return PieceSums(first, totals, weights, silent)


class Join:
    """The probabilities of a file from its pieces, added in order."""

    def __init__(self, frames: int):
        self.frames = frames
        self.totals = np.zeros(frames, np.float64)
        self.weights = np.zeros(frames, np.float64)
        self.silent = np.zeros(frames, bool)
        self.pieces = 0

    def add(self, piece: Piece, sums: PieceSums) -> None:
        end = sums.first + len(sums.totals)
        self.totals[sums.first : end] += sums.totals
        self.weights[sums.first : end] += sums.weights
        self.silent[piece.first : piece.stop] = sums.silent
        self.pieces += 1

    def probabilities(self) -> np.ndarray:
        probs = (self.totals / self.weights).astype(np.float32)
        probs[self.silent] = 0.0
        return probs
