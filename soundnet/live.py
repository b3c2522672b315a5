"""Causal detection on a live stream: the pure core of ``soundnet listen``.

Audio arrives in blocks of any size; :class:`LiveDetector` turns them into event
starts and ends as soon as they can be known, looking at no future audio beyond what
the features need (half an FFT frame and half the delta filter: 56 ms with the
defaults). Every ``hop`` of stream time the network scores the window of the last
``window`` frames (a rolling buffer of normalised features), and the frames of that
hop take their probabilities from the end of the window, where the LSTM has seen
most context. The outputs depend on the audio only, not on how it was split into
blocks nor on how fast it came: a stream fed faster than real time is scored in
batches of windows, with the same results.

Post-processing is causal too (:class:`CausalEvents`): a threshold with hysteresis
(an event starts at ``on`` and lasts while the probability stays at or above ``off``),
a ``hold`` (an event ends only once the probability has stayed below ``off`` longer
than this: the causal form of detect's gap merging), a minimum duration (a start is
announced once the event has lasted that long; its time is still its onset) and a
refractory time (no new event within it after one ends). With ``on == off`` and no
refractory time these are the rules of :func:`soundnet.postprocess.to_events` without
the median filter (which looks ahead), applied frame by frame: on the same
probabilities, the same events.

No threads, files or devices here: :mod:`soundnet.streams` reads audio,
:mod:`soundnet.hooks` delivers events, :mod:`soundnet.listening` ties them together.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from soundnet.config import MAX_SECONDS, PostConfig
from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.features import iter_features, silent_frames
from soundnet.postprocess import median_frames
from soundnet.run import ModelCard
from soundnet.verification import describe, span_bounds
from soundnet.windows import pad_window

log = logging.getLogger(__name__)

DEFAULT_HOP_SECONDS = 0.1
MAX_KEPT_SECONDS = 600.0
"""The most audio ``listen`` keeps for the verifier (20 MB at 16 kHz): an event whose run of
frames above ``off`` began longer ago than this when it reached ``on`` is told unverified."""


@dataclass(frozen=True)
class LivePost:
    """Causal post-processing of ``soundnet listen`` (see the module docstring).

    Attributes
    ----------
    on : float in [0, 1]
        An event starts on a frame at or above it.
    off : float in [0, on]
        An event lasts while frames are at or above it (hysteresis; ``off == on``: none).
    min_duration : float >= 0
        Seconds an event must last before its start is announced (shorter ones are never told).
    hold : float >= 0
        Seconds below ``off`` that end an event (shorter dips do not).
    refractory : float >= 0
        Seconds after an event's end during which no new event starts.
    median_seconds : float >= 0
        The median filter of the probabilities (0: none), centred as detect's: a frame's
        filtered value is known half the filter's length after it, which delays every
        decision by that much.
    """

    on: float = 0.5
    off: float = 0.5
    min_duration: float = 0.0
    hold: float = 0.0
    refractory: float = 0.0
    median_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.on <= 1:  # also refuses NaN
            raise SoundnetError(f"on must be in [0, 1]. Received: on={self.on}")
        if not 0 <= self.off <= self.on:
            raise SoundnetError(f"off must be in [0, on]. Received: off={self.off}, on={self.on}")
        for name in ("min_duration", "hold", "refractory", "median_seconds"):
            if not 0 <= getattr(self, name) <= MAX_SECONDS:
                raise SoundnetError(f"{name} must be in [0, {MAX_SECONDS:g}] seconds. Received: {name}={getattr(self, name)}")

    @classmethod
    def from_card(cls, post: PostConfig, **overrides: float | None) -> LivePost:
        """Live post-processing from a model card's tuned offline one: ``on`` its threshold,
        ``off`` its ``off_threshold`` (or the threshold, without hysteresis), ``min_duration`` its own, ``hold`` its merge gap, no refractory time; the
        ``overrides`` given (None: keep) replace them (``off`` follows a new ``on`` unless given)."""
        values = {
            "on": post.threshold,
            "off": post.off,
            "min_duration": post.min_duration,
            "hold": post.merge_gap,
            "median_seconds": post.median_seconds,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("on") is not None and overrides.get("off") is None:
            values["off"] = values["on"]
        return cls(**values)

    def __str__(self) -> str:
        return (
            f"on {self.on:g}, off {self.off:g}, minimum duration {self.min_duration:g} s, "
            f"hold {self.hold:g} s, refractory {self.refractory:g} s, median filter {self.median_seconds:g} s"
        )


@dataclass(frozen=True)
class LiveEvent:
    """An event's start or end, as ``listen`` reports it.

    ``stream_time`` is seconds from the start of the stream (an event's onset for a
    start, its offset for an end); ``confidence`` the highest frame probability of the
    event so far; ``wall_time`` (ISO 8601) when it was reported, set by whoever reports it.
    """

    event: str  # "start" or "end"
    label: str
    stream_time: float
    confidence: float
    wall_time: str = ""

    def to_json(self) -> dict:
        return {
            "event": self.event,
            "label": self.label,
            "stream_time": self.stream_time,
            "wall_time": self.wall_time,
            "confidence": self.confidence,
        }


@dataclass
class _Open:
    """The event being followed: its first frame, last frame at or above ``off``, peak
    (the highest own probability of its frames up to ``last``, as detect's confidence)."""

    first: int
    last: int
    peak: float
    since_last: float = 0.0  # the highest own probability of the frames after ``last``: the event's if it goes on
    announced: bool = False
    rejected: bool = False  # the verifier turned it down: followed to its end, never told
    probabilities: list[float] = field(default_factory=list)  # from its first frame on (with a verifier)


class StreamingMedian:
    """The median filter of :func:`soundnet.postprocess.smooth` (odd length ``frames``,
    edges repeating the end values) over a stream: each frame's filtered value comes out
    ``frames // 2`` frames after it, with the frame's own value beside it."""

    def __init__(self, frames: int):
        self.half = frames // 2
        self.window: list[float] = []  # the last `frames` values (the first one repeated before the stream's start)
        self.raw: list[float] = []  # the values whose filtered value is not out yet

    def feed(self, values) -> list[tuple[float, float]]:
        """(filtered, own value) of the frames now known."""
        out = []
        for value in values:
            if not self.window:
                self.window = [value] * self.half
            self.window.append(value)
            self.raw.append(value)
            if len(self.window) == 2 * self.half + 1:
                out.append((float(np.median(self.window)), self.raw.pop(0)))
                self.window.pop(0)
        return out

    def finish(self) -> list[tuple[float, float]]:
        """The frames left at the stream's end (the last value repeated after it)."""
        out = []
        if self.window:
            self.window.extend([self.window[-1]] * self.half)
        while self.raw:
            out.append((float(np.median(self.window[: 2 * self.half + 1])), self.raw.pop(0)))
            self.window.pop(0)
        return out


@dataclass
class CausalEvents:
    """Frame probabilities in, event starts and ends out, frame by frame (see :class:`LivePost`).

    Frame ``i`` is centred at ``i * frame_seconds`` and stands for
    ``[(i - 1/2) * frame_seconds, (i + 1/2) * frame_seconds)``, as in
    :func:`soundnet.postprocess.to_events`, whose time rounding is kept too.
    """

    post: LivePost
    frame_seconds: float
    label: str
    # with a verifier: verify(onset, offset, probabilities of the frames from onset on) -> keep? (soundnet.verification),
    # asked once an event has lasted span_seconds (or ended sooner): the rule detect applies to the event's first seconds
    verify: Callable[[float, float, list[float]], bool] | None = None
    span_seconds: float = 0.0
    frames: int = 0  # frames seen
    open: _Open | None = None
    quiet_until: float = -math.inf  # the refractory time ends here (seconds)
    run: int | None = None  # the first frame of the current run of frames at or above off (None: below off)
    run_on: bool = False  # whether that run has reached on
    run_peak: float = 0.0  # the highest own probability of its frames
    run_own: list[float] = field(default_factory=list)  # its first frames' own probabilities (with a verifier)

    def onset(self, frame: int) -> float:
        return round(max(0.0, (frame - 0.5) * self.frame_seconds), 6)

    def offset(self, frame: int) -> float:
        return round((frame + 0.5) * self.frame_seconds, 6)  # the end of frame `frame`

    def __post_init__(self) -> None:
        frames = median_frames(self.post.median_seconds, frame_seconds=self.frame_seconds)
        self.median = StreamingMedian(frames) if frames > 1 else None
        # the frames from an event's onset the verifier is given: its span's, and a run's first frames may
        # give way to the refractory time
        span = math.ceil(self.span_seconds / self.frame_seconds) + 1
        self.span_frames = 0 if self.verify is None else span
        self.run_frames = 0 if self.verify is None else span + math.ceil(self.post.refractory / self.frame_seconds) + 1

    def needed_from(self) -> int:
        """The first frame whose audio the verifier may still ask for: an open event's not
        yet decided, or the current run's (it may become an event); else the next frame."""
        frames = [self.run] if self.run is not None else []
        if self.open is not None and not (self.open.announced or self.open.rejected):
            frames.append(self.open.first)
        return min(frames, default=self.frames)

    def feed(self, probabilities: np.ndarray) -> list[LiveEvent]:
        """Events found on the next frames' probabilities."""
        values = np.asarray(probabilities, np.float64).tolist()
        return self._decide(self.median.feed(values) if self.median is not None else [(v, v) for v in values])

    def _decide(self, frames: list[tuple[float, float]]) -> list[LiveEvent]:
        """Events of the next frames: (filtered probability, own probability) each.

        As detect's hysteresis: a run of frames at or above ``off`` becomes an event (or
        joins the open one, if it starts within ``hold`` of its last kept frame) once one
        of its frames reaches ``on``, from the run's first frame; a run that never
        reaches ``on`` is not part of any event."""
        out: list[LiveEvent] = []
        post, fs = self.post, self.frame_seconds
        for p, own in frames:
            i = self.frames
            self.frames += 1
            above = p >= post.off
            if above:
                if self.run is None:
                    self.run, self.run_on, self.run_peak, self.run_own = i, False, own, []
                self.run_peak = max(self.run_peak, own)
                if len(self.run_own) < self.run_frames:
                    self.run_own.append(own)
                self.run_on = self.run_on or p >= post.on
            event = self.open
            if event is not None:
                if len(event.probabilities) < self.span_frames:
                    event.probabilities.append(own)
                event.since_last = max(event.since_last, own)
                if above and self.run_on:  # a kept run, which began within the hold (else the event had ended)
                    event.last, event.peak, event.since_last = i, max(event.peak, event.since_last), 0.0
                    self._check_duration(event, out)
                elif not above and (i - event.last) * fs > post.hold:  # even if the next frame began a kept run
                    self._close(event, self.offset(event.last), out)
            elif above and self.run_on:
                start = self.run
                while self.onset(start) < self.quiet_until and start < i:  # not inside the refractory time
                    start += 1
                if self.onset(start) >= self.quiet_until:
                    self.open = event = _Open(start, i, self.run_peak)
                    event.probabilities.extend(self.run_own[start - self.run :][: self.span_frames])
                    self._check_duration(event, out)
            if not above:
                self.run, self.run_on, self.run_peak, self.run_own = None, False, 0.0, []
        return out

    def _check_duration(self, event: _Open, out: list[LiveEvent], *, ending: float | None = None) -> None:
        """Announce ``event`` once it has lasted the minimum duration and, with a verifier,
        its span (or it ends, at ``ending``), if the verifier keeps it."""
        if event.announced or event.rejected:
            return
        onset = self.onset(event.first)
        offset = self.offset(event.last) if ending is None else ending
        if offset <= onset or offset - onset < self.post.min_duration:
            return
        if self.verify is not None:
            if ending is None and offset - onset < self.span_seconds:
                return
            if not self.verify(onset, min(offset, onset + self.span_seconds), event.probabilities):
                event.rejected = True
                return
        event.announced = True
        out.append(LiveEvent("start", self.label, onset, round(event.peak, 6)))

    def _close(self, event: _Open, offset: float, out: list[LiveEvent]) -> None:
        self._check_duration(event, out, ending=offset)
        self.open = None
        if event.announced:
            out.append(LiveEvent("end", self.label, offset, round(event.peak, 6)))
            self.quiet_until = offset + self.post.refractory

    def finish(self, end_time: float | None = None) -> list[LiveEvent]:
        """Close the open event (the stream ended, or was stopped) at the end of its last
        active frame, cut to ``end_time`` (the stream's length) when given: an event
        that by then has lasted ``min_duration`` is announced and ended, a shorter one dropped."""
        out = self._decide(self.median.finish()) if self.median is not None else []
        event = self.open
        if event is None:
            return out
        offset = self.offset(event.last) if end_time is None else round(min(end_time, self.offset(event.last)), 6)
        self._close(event, offset, out)
        return out


class WindowScorer:
    """A rolling buffer of normalised features scored every ``hop`` frames.

    The window ending at frame ``e`` (exclusive; ``e`` a multiple of ``hop``) covers
    frames ``e - window .. e - 1`` and gives the probabilities of frames ``e - hop ..
    e - 1`` (the window's last ``hop`` positions). Before ``window`` frames exist, the
    window holds the frames from the stream's start, padded at its end, and its
    positions are the frames' own (the network is causal over a window: the LSTM runs
    forwards and every other layer is per frame, so padding after a frame does not
    change it). Frames of digital silence get probability 0, as in detect.

    Parameters
    ----------
    card : ModelCard
        The run's feature config, window and normalisation statistics.
    predict : callable
        Normalised windows ``(b, window, features)`` -> probabilities ``(b, window)``.
    hop : int in [1, window]
        Frames between scored windows.
    """

    def __init__(self, card: ModelCard, predict: Callable[[np.ndarray], np.ndarray], *, hop: int):
        window = card.model.window
        if not 1 <= hop <= window:
            raise SoundnetError(f"the hop must be 1 to {window} frames (the network's window). Received: {hop} frames")
        self.card, self.predict, self.hop, self.window = card, predict, hop, window
        self.buffer = np.zeros((0, card.features.n_features), np.float32)  # normalised frames from buffer_start on
        self.silent = np.zeros(0, bool)
        self.buffer_start = 0
        self.scored = 0  # frames whose probabilities were given out
        self.windows = 0  # windows scored

    @property
    def frames(self) -> int:
        """Frames received."""
        return self.buffer_start + len(self.buffer)

    def push(self, features: np.ndarray) -> np.ndarray:
        """Probabilities of the frames newly scored after ``features`` (unnormalised, the next frames) arrive."""
        if len(features):
            self.buffer = np.concatenate([self.buffer, self.card.normalise(features)])
            self.silent = np.concatenate([self.silent, silent_frames(features, config=self.card.features)])
        ends = list(range(self.scored + self.hop, self.frames + 1, self.hop))
        return self._score(ends)

    def flush(self) -> np.ndarray:
        """Probabilities of the frames received but not yet scored (the stream ended)."""
        return self._score([self.frames] if self.frames > self.scored else [])

    def _score(self, ends: list[int]) -> np.ndarray:
        if not ends:
            return np.zeros(0, np.float32)
        windows = np.stack(
            [pad_window(self.buffer[self._local(max(0, e - self.window)) : self._local(e)], window=self.window) for e in ends]
        )
        probs = np.asarray(self.predict(windows), np.float32).reshape(len(ends), self.window)
        out = []
        for e, p in zip(ends, probs, strict=True):
            first = max(0, e - self.window)
            out.append(p[self.scored - first : e - first])
            self.scored = e
        self.windows += len(ends)
        result = np.concatenate(out)
        start = self.scored - len(result)
        result[self.silent[self._local(start) : self._local(self.scored)]] = 0.0
        keep = max(0, self.scored + 1 - self.window)  # the next window (a flush's, at the earliest) starts here
        self.buffer, self.silent = self.buffer[self._local(keep) :], self.silent[self._local(keep) :]
        self.buffer_start = keep
        return result

    def _local(self, frame: int) -> int:
        return frame - self.buffer_start


@dataclass(frozen=True)
class Gap:
    """A break in a stream (a device lost and found again): ``seconds`` of audio missing."""

    seconds: float


@dataclass
class LiveStats:
    """What a live run has seen so far."""

    seconds: float = 0.0  # stream time reached (audio received, plus gaps)
    windows: int = 0  # windows scored
    events: int = 0  # events started
    gaps: int = 0
    gap_seconds: float = 0.0


class LiveDetector:
    """Blocks of a live stream in, :class:`LiveEvent` out, causally (see the module docstring).

    Parameters
    ----------
    card : ModelCard
        The run's card: features, window, normalisation, target label.
    predict : callable
        Normalised windows ``(b, window, features)`` -> probabilities ``(b, window)``.
    post : LivePost
    hop_seconds : float > 0
        Stream time between scored windows; rounded to whole frames (at least one,
        at most the network's window).
    verify : bool
        Apply the card's verifier (if it has one; :mod:`soundnet.verification`): an
        event is told once it has lasted the verifier's span (or ended sooner), if the
        verifier keeps it, as detect keeps it on the same audio. The last seconds of
        audio are kept for it.
    raw_confidence : bool
        Report the network's confidence (the event's highest frame probability), not
        the card's calibrated one (as ``detect --raw-confidence``).
    """

    def __init__(
        self,
        card: ModelCard,
        predict,
        *,
        post: LivePost,
        hop_seconds: float = DEFAULT_HOP_SECONDS,
        verify: bool = True,
        raw_confidence: bool = False,
    ):
        fs = card.features.frame_seconds
        if not hop_seconds > 0:
            raise SoundnetError(f"the hop must be > 0 seconds. Received: {hop_seconds}")
        self.hop = max(1, int(round(hop_seconds / fs)))
        if self.hop > card.model.window:
            raise SoundnetError(
                f"the hop must be at most the network's window ({card.model.window * fs:g} s). Received: {hop_seconds:g} s"
            )
        self.card, self.predict, self.post = card, predict, post
        self.stats = LiveStats()
        self._offset = 0.0  # stream time of the current segment's start (segments restart after a gap)
        self._samples = 0  # samples of the current segment
        self._events: CausalEvents | None = None
        self._scorer: WindowScorer | None = None
        self.verifier = card.verifier if verify else None
        self.calibration = card.event_calibration(raw_confidence=raw_confidence, verify=verify)
        self._audio: list[np.ndarray] = []  # the segment's blocks from what the verifier may still ask for on
        self._audio_start = 0  # the segment's sample where self._audio begins

    def warm_up(self) -> None:
        """Run the feature code and the network once on silence, so that their first use
        (librosa's lazy imports, LiteRT's tensor allocation: over a second) is not on live audio."""
        silence = np.zeros(self.card.features.sample_rate // 2, np.float32)
        for features in iter_features([silence], config=self.card.features, chunk_frames=1):
            WindowScorer(self.card, self.predict, hop=self.hop).push(features)

    @property
    def hop_seconds(self) -> float:
        return self.hop * self.card.features.frame_seconds

    @property
    def stream_time(self) -> float:
        """Seconds of stream received (including gaps)."""
        return self._offset + self._samples / self.card.features.sample_rate

    def run(self, blocks: Iterable[np.ndarray | Gap]) -> Iterator[LiveEvent]:
        """Events of a stream of mono float32 blocks at the card's rate (and :class:`Gap` s),
        yielded as soon as known. At the end of the stream the open event is closed;
        if the stream is stopped by an exception, call :meth:`stop` for that."""
        source = iter(blocks)
        while True:
            gap = yield from self._segment(source)
            if gap is None:
                return
            self.stats.gaps += 1
            self.stats.gap_seconds += gap.seconds
            self._offset = self.stream_time + gap.seconds
            self._samples = 0
            self._update_time()

    def stop(self) -> list[LiveEvent]:
        """Close the open event at the end of its last active frame (the stream stopped)."""
        if self._events is None:
            return []
        return self._shift(self._events.finish(end_time=self._samples / self.card.features.sample_rate))

    def _segment(self, source: Iterator) -> Iterator[LiveEvent]:
        """Events of the blocks up to the next gap (returned) or the end (None)."""
        sr = self.card.features.sample_rate
        self._events = CausalEvents(
            self.post,
            self.card.features.frame_seconds,
            self.card.target,
            verify=None if self.verifier is None else self._verify,
            span_seconds=0.0 if self.verifier is None else self.verifier.span_seconds,
        )
        self._scorer = WindowScorer(self.card, self.predict, hop=self.hop)
        self._audio, self._audio_start = [], 0
        gap = None

        def audio() -> Iterator[np.ndarray]:
            """The segment's blocks, gathered until the next window can be scored (small
            blocks one by one would cost the feature code's per-call overhead for nothing)."""
            nonlocal gap
            waiting: list[np.ndarray] = []
            for block in source:
                if isinstance(block, Gap):
                    gap = block
                    break
                self._samples += len(block)
                self._update_time()
                waiting.append(block)
                if self.verifier is not None:
                    self._remember(block)
                if self._samples >= self._next_scoring_sample():
                    yield np.concatenate(waiting) if len(waiting) > 1 else waiting[0]
                    waiting = []
            if waiting:
                yield np.concatenate(waiting)

        for features in iter_features(audio(), config=self.card.features, chunk_frames=1):
            probabilities = self._scorer.push(features)
            self.stats.windows = self._scorer.windows
            yield from self._shift(self._events.feed(probabilities))
        probabilities = self._scorer.flush()
        self.stats.windows = self._scorer.windows
        yield from self._shift(self._events.feed(probabilities))
        yield from self._shift(self._events.finish(end_time=self._samples / sr))
        self._events = None
        return gap

    def _remember(self, block: np.ndarray) -> None:
        """Keep ``block`` (the segment's newest) and drop what the verifier can no longer ask
        for: the audio before the first frame it may still verify (:meth:`CausalEvents.needed_from`),
        less a second."""
        self._audio.append(block)
        sr = self.card.features.sample_rate
        keep_from = round(self._events.onset(self._events.needed_from()) * sr) - sr
        keep_from = max(keep_from, self._samples - round(MAX_KEPT_SECONDS * sr))  # bounded, whatever the stream
        while len(self._audio) > 1 and self._audio_start + len(self._audio[0]) <= keep_from:
            self._audio_start += len(self._audio.pop(0))

    def _verify(self, onset: float, offset: float, probabilities: list[float]) -> bool:
        """Whether the verifier keeps the event from ``onset`` (segment time) whose frames
        from its first on have ``probabilities``: the descriptors of its span, as detect reads them."""
        c = self.card.features
        event = Event("", onset, offset, self.card.target)
        start, stop, first, last = span_bounds(
            event, self.verifier.span_seconds, sample_rate=c.sample_rate, frame_seconds=c.frame_seconds
        )
        if start < self._audio_start:  # a run longer than MAX_KEPT_SECONDS before it reached on: told unverified
            log.warning(
                "the event at %.2f s began over %g s before it could be verified: told unverified", onset, MAX_KEPT_SECONDS
            )
            return True
        kept = np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)
        audio = kept[start - self._audio_start : stop - self._audio_start]
        probs = np.asarray(probabilities[: last - first], np.float64)
        row = describe(audio, probs, sample_rate=c.sample_rate, frame_seconds=c.frame_seconds)
        return bool(self.verifier.score(row) >= self.verifier.threshold)

    def _next_scoring_sample(self) -> int:
        """Samples of the segment after which the next window's last frame has its features
        (its STFT frame and the delta filter's right half)."""
        c = self.card.features
        end = self._scorer.scored + self.hop  # the next window ends before this frame
        return (end - 1 + c.delta_width // 2) * c.hop_length + c.n_fft // 2

    def _update_time(self) -> None:
        self.stats.seconds = self.stream_time

    def _shift(self, events: list[LiveEvent]) -> list[LiveEvent]:
        out = []
        for event in events:
            if event.event == "start":
                self.stats.events += 1
            confidence = event.confidence
            if self.calibration is not None:
                confidence = round(float(self.calibration.apply(confidence)), 6)
            out.append(LiveEvent(event.event, event.label, round(event.stream_time + self._offset, 6), confidence))
        return out
