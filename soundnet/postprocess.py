"""From per-frame probabilities to events: median filter, threshold (with hysteresis),
gap merging, minimum duration. Pure functions."""

from __future__ import annotations

import numpy as np

from soundnet.config import PostConfig
from soundnet.events import Event


def median_frames(seconds: float, *, frame_seconds: float) -> int:
    """Odd median-filter length in frames for a length in seconds (1 = no filtering)."""
    frames = int(round(seconds / frame_seconds))
    return max(1, frames + (frames % 2 == 0))


MEDIAN_CHUNK = 1 << 16  # frames filtered at once: bounded memory on hours of frames
SCIPY_FRAMES = 100_000  # from this many frames on, scipy's median filter (20-30x faster) repays its import


def smooth(probabilities: np.ndarray, *, frames: int) -> np.ndarray:
    """Median-filtered probabilities (odd length ``frames``; edges repeat the end values):
    ``scipy.ndimage.median_filter(mode="nearest")``; below :data:`SCIPY_FRAMES` frames the
    same in NumPy (a test holds them equal), because importing scipy.ndimage costs a
    fresh detect of a short clip about 0.2 s."""
    if frames <= 1 or len(probabilities) == 0:
        return probabilities
    if len(probabilities) >= SCIPY_FRAMES:
        from scipy.ndimage import median_filter

        return median_filter(probabilities, size=frames, mode="nearest")
    p = np.asarray(probabilities)
    half = frames // 2
    padded = np.concatenate([np.repeat(p[:1], half), p, np.repeat(p[-1:], half)])
    out = np.empty_like(p)
    for start in range(0, len(p), MEDIAN_CHUNK):
        stop = min(len(p), start + MEDIAN_CHUNK)
        windows = np.lib.stride_tricks.sliding_window_view(padded[start : stop + 2 * half], frames)
        out[start:stop] = np.median(windows, axis=1)
    return out


def active_runs(active: np.ndarray) -> np.ndarray:
    """``(k, 2)`` array of [start, stop) frame ranges where ``active`` is True."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def hysteresis_runs(probabilities: np.ndarray, *, on: float, off: float) -> np.ndarray:
    """``(k, 2)`` [start, stop) ranges of the runs of frames at or above ``off`` that hold a
    frame at or above ``on`` (double thresholding; ``off == on``: plain thresholding)."""
    runs = active_runs(probabilities >= off)
    if len(runs) == 0 or off >= on:
        return runs
    # the maximum from each run's start to the next run's start: the frames between runs are below off
    peaks = np.maximum.reduceat(probabilities, runs[:, 0])
    return runs[peaks >= on]


def to_events(
    probabilities: np.ndarray,
    *,
    post: PostConfig,
    frame_seconds: float,
    duration: float,
    filename: str,
    label: str,
) -> list[Event]:
    """Events of one file from its per-frame probabilities.

    Frame ``i`` (centred at ``i * frame_seconds``) stands for the interval
    ``[(i - 1/2) * frame_seconds, (i + 1/2) * frame_seconds)``, cut to ``[0, duration]``.
    Runs of frames at or above the threshold (after the median filter; with
    ``off_threshold``, runs at or above it that reach the threshold) closer than
    ``merge_gap`` are merged, then runs shorter than ``min_duration`` dropped. An
    event's confidence is its highest unfiltered frame probability.

    Returns
    -------
    events : list of Event, sorted, non-overlapping, inside [0, duration]
    """
    probabilities = np.asarray(probabilities, np.float32)
    smoothed = smooth(probabilities, frames=median_frames(post.median_seconds, frame_seconds=frame_seconds))
    runs = hysteresis_runs(smoothed, on=post.threshold, off=post.off)
    merged: list[list[int]] = []
    for start, stop in runs:
        if merged and (start - merged[-1][1]) * frame_seconds <= post.merge_gap:
            merged[-1][1] = stop
        else:
            merged.append([int(start), int(stop)])
    events = []
    for start, stop in merged:
        onset = round(max(0.0, (start - 0.5) * frame_seconds), 6)  # rounded first: an event never ends where it starts
        offset = round(min(duration, (stop - 0.5) * frame_seconds), 6)
        if offset - onset < post.min_duration or offset <= onset:
            continue
        confidence = float(probabilities[start:stop].max())
        events.append(Event(filename, onset, offset, label, round(confidence, 6)))
    return events
