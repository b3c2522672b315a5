"""A reviewed table as training and tuning material.

The reviewer's decisions (:mod:`soundnet.review`) label only the spans they looked at:
an accepted span's frames are the target, a rejected span's frames are negatives (the
detector's false alarms at the site: hard negatives), and everything else in those
recordings stays unknown. Skipped detections are ignored.

Training reads each reviewed recording's features on detect's own frame grid, and
adds windows around the decided spans to every epoch, in which only the decided frames
weigh, ``training.reviewed_weight`` each, accepted or rejected (no class weight: the
reviewer's spans are only as precise as the detector's, and an accepted span's edges
are often background); unknown frames weigh 0. Tuning scores the *clips* around the decided spans (each span
and ``context`` seconds either side, overlapping clips of a file merged), with the
accepted spans as reference events: a detection in a rejected span is a false alarm,
an accepted span not found a miss.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundnet.annotations import frame_labels
from soundnet.audio import iter_audio
from soundnet.config import FeatureConfig
from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.features import iter_features
from soundnet.review import (
    ACCEPTED,
    REJECTED,
    Review,
    check_within_recordings,
    decision_counts,
    read_reviewed,
    resolve_audio,
)
from soundnet.run import file_digest
from soundnet.storage import NpyRows, save_npy_chunks
from soundnet.windows import window_starts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spans:
    """A recording's decided spans (seconds): accepted (the target) and rejected (not)."""

    accepted: list[tuple[float, float]] = field(default_factory=list)
    rejected: list[tuple[float, float]] = field(default_factory=list)

    @property
    def all(self) -> list[tuple[float, float]]:
        return sorted(self.accepted + self.rejected)


def decided_spans(reviews: Sequence[Review]) -> dict[str, Spans]:
    """Each file's accepted and rejected spans, in order of the reviews; skipped ones dropped."""
    spans: dict[str, Spans] = {}
    for review in reviews:
        if review.decision in (ACCEPTED, REJECTED):
            kind = spans.setdefault(review.event.filename, Spans())
            (kind.accepted if review.decision == ACCEPTED else kind.rejected).append((review.event.onset, review.event.offset))
    return spans


def frame_targets(spans: Spans, n_frames: int, *, frame_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame labels and weights of one recording's decided spans.

    A frame whose centre lies in an accepted span is positive (label 1, weight 1); in a
    rejected span, negative (label 0, weight 1); elsewhere unknown (weight 0). A frame
    in both an accepted and a rejected span is the target.

    Returns
    -------
    labels : np.ndarray [shape=(n_frames,), dtype=uint8]
    weights : np.ndarray [shape=(n_frames,), dtype=float32]
    """

    def mask(pairs):
        return frame_labels([Event("", on, off, "") for on, off in pairs], n_frames, frame_seconds=frame_seconds)

    labels = mask(spans.accepted)
    weights = np.maximum(labels, mask(spans.rejected)).astype(np.float32)
    return labels, weights


def span_window_starts(weights: np.ndarray, *, window: int, stride: int) -> np.ndarray:
    """Starts of the training windows around a recording's decided frames: windows every
    ``stride`` frames over each run of weighed frames and half a window either side,
    clamped to the recording, each holding at least one weighed frame."""
    n = len(weights)
    weighed = np.flatnonzero(weights > 0)
    if not len(weighed):
        return np.zeros(0, np.int64)
    breaks = np.flatnonzero(np.diff(weighed) > 1)
    runs = zip(np.r_[weighed[0], weighed[breaks + 1]], np.r_[weighed[breaks], weighed[-1]], strict=True)
    starts = set()
    for first, last in runs:
        lo, hi = max(0, int(first) - window // 2), min(n, int(last) + 1 + window // 2)
        for start in lo + window_starts(hi - lo, window=window, stride=stride):
            start = int(min(start, max(n - window, 0)))
            if weights[start : start + window].any():
                starts.add(start)
    return np.array(sorted(starts), np.int64)


@dataclass(frozen=True)
class ReviewedFile:
    """One reviewed recording, ready for training windows."""

    name: str  # the file name in the reviewed table
    source: Path
    rows: NpyRows  # its features, frames x n_features (unnormalised)
    labels: np.ndarray  # per frame, 1 in accepted spans
    weights: np.ndarray  # per frame, 1 in decided spans, 0 elsewhere (unknown)
    starts: np.ndarray  # window starts around the decided spans


@dataclass(frozen=True)
class ReviewedData:
    """A reviewed table read for training: its files, and what a card records of it."""

    table: Path
    audio: Path
    files: list[ReviewedFile]
    counts: dict[str, int]
    sha256: str
    frame_seconds: float

    def summary_json(self) -> dict:
        return {
            "table": str(self.table.resolve()),
            "sha256": self.sha256,
            "audio": str(self.audio.resolve()),
            **self.counts,
            "files": len(self.files),
            "windows": int(sum(len(f.starts) for f in self.files)),
            "accepted_seconds": round(self._seconds(positive=True), 3),
            "rejected_seconds": round(self._seconds(positive=False), 3),
        }

    def _seconds(self, *, positive: bool) -> float:
        frames = sum(int(((f.weights > 0) & ((f.labels > 0) == positive)).sum()) for f in self.files)
        return frames * self.frame_seconds


def _decided(table: Path, audio: Path) -> tuple[list[Review], dict[str, Spans], dict[str, Path]]:
    table, audio = Path(table), Path(audio)
    if not audio.is_dir():
        raise SoundnetError(f"{audio}: not a folder of audio")
    reviews = read_reviewed(table)
    spans = decided_spans(reviews)
    if not spans:
        raise SoundnetError(f"{table}: no accepted or rejected detection (skipped ones are ignored): nothing to learn from")
    paths = resolve_audio(list(spans), audio, table=table)
    check_within_recordings(table, ((name, on, off) for name, pairs in spans.items() for on, off in pairs.all), paths)
    for name, pairs in spans.items():
        both = [(a, r) for a in pairs.accepted for r in pairs.rejected if a[0] < r[1] and r[0] < a[1]]
        if both:
            (a, r), more = both[0], f" and {len(both) - 1} more" if len(both) > 1 else ""
            log.warning(
                "%s: in %s the accepted %.3f-%.3f s overlaps the rejected %.3f-%.3f s%s: the shared frames count as the target",
                table, name, *a, *r, more,
            )  # fmt: skip
    return reviews, spans, paths


def load_reviewed(table: Path, audio: Path, *, folder: Path, config: FeatureConfig, window: int, stride: int) -> ReviewedData:
    """Features, labels and window starts of the reviewed recordings, for training.

    Parameters
    ----------
    table : Path
        A reviewed table (:func:`soundnet.review.read_reviewed`).
    audio : Path
        The folder its file names are relative to (:func:`soundnet.review.resolve_audio`).
    folder : Path
        Where the features are written (``<n>.features.npy`` per recording), streamed:
        recordings of any length.
    config : FeatureConfig
        The dataset's feature settings.
    window, stride : int > 0
        The network's window and the training stride, in frames.

    Raises
    ------
    SoundnetError
        A bad table, an unknown file name, a span past its recording's end, no decided span.
    """
    reviews, spans, paths = _decided(table, audio)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k, (name, pairs) in enumerate(spans.items()):
        path = folder / f"{k}.features.npy"
        blocks = iter_audio(paths[name], sample_rate=config.sample_rate)
        n = save_npy_chunks(path, iter_features(blocks, config=config), columns=config.n_features, dtype=np.float32)
        labels, weights = frame_targets(pairs, n, frame_seconds=config.frame_seconds)
        starts = span_window_starts(weights, window=window, stride=stride)
        files.append(ReviewedFile(name, paths[name], NpyRows(path), labels, weights, starts))
    counts = decision_counts(reviews)
    log.info(
        "%s: %d accepted and %d rejected detection(s) in %d recording(s) (%d skipped, ignored): %d training windows",
        table,
        counts[ACCEPTED],
        counts[REJECTED],
        len(files),
        counts["skipped"],
        sum(len(f.starts) for f in files),
    )
    return ReviewedData(Path(table), Path(audio), files, counts, file_digest(Path(table)), config.frame_seconds)


# ---------------------------------------------------------------------------------
# Tuning


@dataclass(frozen=True)
class ReviewedClips:
    """The clips around a reviewed table's decided spans, for the post-processing search:
    per clip name (``file@start-end``), the probabilities, the duration and the reference
    (accepted) events, times from the clip's start."""

    probabilities: dict[str, np.ndarray]
    durations: dict[str, float]
    events: dict[str, list[Event]]
    counts: dict[str, int]
    sha256: str


def clip_bounds(spans: Sequence[tuple[float, float]], *, context: float, duration: float) -> list[tuple[float, float]]:
    """Each span widened by ``context`` seconds either side within ``[0, duration]``,
    overlapping ones merged, in order."""
    merged: list[list[float]] = []
    for onset, offset in sorted(spans):
        lo, hi = max(0.0, onset - context), min(duration, offset + context)
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def reviewed_clips(
    table: Path, audio: Path, probabilities_of, *, label: str, frame_seconds: float, context: float = 1.0
) -> ReviewedClips:
    """The clips of a reviewed table, scored by ``probabilities_of(path) -> (probabilities, duration)``
    (a :class:`soundnet.detection.Detector`'s ``probabilities``).

    Frame ``i`` of a clip starting at frame ``f`` of its recording is the recording's frame
    ``f + i``; its reference events are the accepted spans inside it.
    """
    reviews, spans, paths = _decided(table, audio)
    probabilities, durations, events = {}, {}, {}
    for name, pairs in spans.items():
        p, duration = probabilities_of(paths[name])
        for lo, hi in clip_bounds(pairs.all, context=context, duration=duration):
            first, stop = int(math.ceil(lo / frame_seconds - 1e-9)), min(len(p), int(math.ceil(hi / frame_seconds - 1e-9)))
            if stop <= first:
                continue
            clip = f"{name}@{lo:.3f}-{hi:.3f}"
            start = first * frame_seconds
            probabilities[clip] = p[first:stop]
            durations[clip] = (stop - first) * frame_seconds
            events[clip] = [
                Event(clip, max(0.0, on - start), min(off - start, durations[clip]), label)
                for on, off in sorted(pairs.accepted)
                if lo <= on < hi
            ]
    return ReviewedClips(probabilities, durations, events, decision_counts(reviews), file_digest(Path(table)))


def merge_material(
    probabilities: Mapping[str, np.ndarray],
    durations: Mapping[str, float],
    events: Mapping[str, list[Event]],
    clips: ReviewedClips,
) -> tuple[dict, dict, dict]:
    """Tuning material with the clips added (a clip name already used is an error)."""
    clash = set(probabilities) & set(clips.probabilities)
    if clash:
        raise SoundnetError(f"a reviewed clip and an annotated file share the name {sorted(clash)[0]!r}")
    return (
        {**probabilities, **clips.probabilities},
        {**durations, **clips.durations},
        {**events, **clips.events},
    )
