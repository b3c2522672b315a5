"""Cutting frame sequences into fixed-length windows and stitching predictions back.

Pure functions and one streaming accumulator; no files, no Keras.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np


def window_starts(n_frames: int, *, window: int, stride: int) -> np.ndarray:
    """Start frames of windows covering ``n_frames`` frames.

    Windows start every ``stride`` frames; when they do not end exactly at the last
    frame, one more window ends there. A sequence shorter than one window gets a
    single window starting at 0 (to be padded).

    Returns
    -------
    starts : np.ndarray [shape=(k,), dtype=int64], k >= 1 when n_frames >= 1
    """
    if n_frames <= 0:
        return np.zeros(0, np.int64)
    if n_frames <= window:
        return np.zeros(1, np.int64)
    starts = np.arange(0, n_frames - window + 1, stride, dtype=np.int64)
    if starts[-1] + window < n_frames:
        starts = np.append(starts, n_frames - window)
    return starts


def pad_window(rows: np.ndarray, *, window: int) -> np.ndarray:
    """``rows`` (n <= window, ...) padded at the end with zeros to ``window`` rows."""
    if len(rows) == window:
        return rows
    padded = np.zeros((window, *rows.shape[1:]), rows.dtype)
    padded[: len(rows)] = rows
    return padded


def stream_probabilities(
    chunks: Iterable[np.ndarray],
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    window: int,
    hop: int,
    batch_windows: int = 256,
) -> np.ndarray:
    """Per-frame probabilities of a long feature sequence given in chunks.

    Overlapping windows (every ``hop`` frames, plus one ending at the last frame) are
    predicted in batches and combined where they overlap, so every frame gets exactly
    one probability. The combination is a weighted mean whose weights ramp up over
    the first ``window - hop`` positions of a window: the LSTM starts each window
    from a blank state, so a window's first frames are its least informed ones. Only
    about one chunk plus one window of features is held at once, and 4 bytes per frame
    of results. A sequence shorter than a window is padded, and only its own frames
    are kept.

    Parameters
    ----------
    chunks : iterable of np.ndarray [shape=(frames, features)]
        Consecutive frames of one file.
    predict : callable
        Maps windows ``(batch, window, features)`` to probabilities ``(batch, window)``.

    Returns
    -------
    probabilities : np.ndarray [shape=(n_frames,), dtype=float32]
    """
    weights = np.minimum(1.0, (np.arange(window) + 1.0) / max(1, window - hop))
    if not 0 < hop <= window:
        raise ValueError(f"hop must be in [1, window]. Received: hop={hop}, window={window}")
    finished: list[np.ndarray] = []  # float32 probabilities of frames no window can reach any more
    totals = np.zeros(0, np.float64)
    hits = np.zeros(0, np.float64)
    buffer = None
    buffer_start = 0  # absolute frame index of buffer[0]
    next_start = 0
    n = 0

    def run(starts: list[int]) -> None:
        nonlocal totals, hits
        for i in range(0, len(starts), batch_windows):
            batch_starts = starts[i : i + batch_windows]
            windows = np.stack(
                [pad_window(buffer[s - buffer_start : s - buffer_start + window], window=window) for s in batch_starts]
            )
            probs = np.asarray(predict(windows), np.float64).reshape(len(batch_starts), window)
            for s, p in zip(batch_starts, probs, strict=True):
                end = min(s + window, n)
                totals[s - done : end - done] += weights[: end - s] * p[: end - s]
                hits[s - done : end - done] += weights[: end - s]

    done = 0  # frames already moved to `finished`
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        buffer = chunk if buffer is None else np.concatenate([buffer, chunk])
        n += len(chunk)
        totals = np.concatenate([totals, np.zeros(len(chunk))])
        hits = np.concatenate([hits, np.zeros(len(chunk))])
        starts = []
        while next_start + window <= n:
            starts.append(next_start)
            next_start += hop
        run(starts)
        # frames before next_start can get no more windows (except a final tail window,
        # which never reaches before n - window): finalise them
        final = max(min(next_start, n - window), done)
        finished.append((totals[: final - done] / hits[: final - done]).astype(np.float32))
        totals, hits = totals[final - done :], hits[final - done :]
        done = final
        keep_from = max(min(next_start, n - window), 0)
        buffer = buffer[keep_from - buffer_start :]
        buffer_start = keep_from
    if n == 0:
        return np.zeros(0, np.float32)
    tail = max(n - window, 0)
    if n < window or next_start - hop + window < n:
        run([tail])
    finished.append((totals / hits).astype(np.float32))
    return np.concatenate(finished)
