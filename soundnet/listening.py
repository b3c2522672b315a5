"""``soundnet listen``: a live stream through the causal detector to stdout, a log and hooks.

The calling thread reads the source and runs the detector; a sound device's audio
arrives on PortAudio's thread, each hook sends on its own (:mod:`soundnet.hooks`), so
neither a slow hook nor a slow network holds the audio up. SIGINT and SIGTERM end
the run cleanly: the open event is closed and reported, the hooks get a few seconds
to send what is queued.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from soundnet.audio import RawPCM
from soundnet.errors import SoundnetError
from soundnet.live import DEFAULT_HOP_SECONDS, LiveDetector, LiveEvent, LivePost, LiveStats

log = logging.getLogger(__name__)


class Stopped(BaseException):
    """The run was asked to stop (a signal).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way
    swallows it: socketserver's request loop, for one, reports an Exception raised while
    it starts a request's thread and serves on (a stop lost: the review page ran on)."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


@dataclass(frozen=True)
class ListenReport:
    """How a live run went.

    ``stopped_by`` is ``"end of stream"``, ``"SIGINT"`` or ``"SIGTERM"``; ``overruns``
    counts blocks of device audio dropped because the detector was behind (or PortAudio
    said it overflowed), ``dropped_seconds`` their length.
    """

    stats: LiveStats
    stopped_by: str
    wall_seconds: float
    cpu_seconds: float
    overruns: int
    dropped_seconds: float
    hook_failures: int
    post: LivePost
    hop_seconds: float
    source: str


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class StopSignals:
    """While active (``with``), SIGINT and SIGTERM raise :class:`Stopped` in the main
    thread, except inside :meth:`held` (an event being reported to every sink), where
    the stop waits for the block's end: no sink misses an event another one got."""

    def __init__(self):
        self._holding = False
        self._pending: str | None = None
        self._saved: dict = {}

    closing = False  # once stopping, further signals are ignored: the open event is being closed

    def _stop(self, number, frame):
        name = signal.Signals(number).name
        if self.closing:
            return
        if self._holding:
            self._pending = self._pending or name
            return
        raise Stopped(name)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._saved = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._saved.items():
            signal.signal(number, handler)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        pending, self._pending = self._pending, None
        if pending is not None and not self.closing:
            raise Stopped(pending)


def open_source(*, device: str | int | None = None, stdin=None, raw: RawPCM | None = None, sample_rate: int):
    """A :class:`~soundnet.streams.StdinSource` on ``stdin`` (a binary file object) or a
    :class:`~soundnet.streams.DeviceSource` (``device``, None: the default input)."""
    from soundnet.streams import DeviceSource, StdinSource, check_source_options

    check_source_options(device=device, stdin=stdin is not None, raw=raw)
    if stdin is not None:
        return StdinSource(stdin, raw=raw)
    return DeviceSource(device, sample_rate=sample_rate)


def listen(
    *,
    model: Path | None = None,
    runtime: str = "auto",
    device: str | int | None = None,
    stdin=None,
    raw: RawPCM | None = None,
    post: LivePost | Mapping[str, float | None] | None = None,
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    sinks: Sequence[object] = (),
    on_event: Callable[[LiveEvent], None] | None = None,
    hook_grace: float = 5.0,
    verify: bool = True,
    raw_confidence: bool = False,
) -> ListenReport:
    """Detect the target sound on a live stream until it ends or a signal stops it.

    Parameters
    ----------
    model : Path or None
        A run folder; None for the bundled detector.
    runtime : {"auto", "litert", "keras"}
        See :class:`soundnet.Detector`.
    device : str, int or None
        A sound device (index or part of its name) when ``stdin`` is None; None: the default input.
    stdin : binary file object or None
        Read the stream from it (``sys.stdin.buffer``): a WAV, or headerless PCM (``raw``).
    post : LivePost, mapping or None
        The causal post-processing, or some of its values (``on``, ``off``,
        ``min_duration``, ``hold``, ``refractory``) replacing those made from the model
        card (:meth:`LivePost.from_card`).
    hop_seconds : float > 0
        Stream time between scored windows.
    sinks : sequence
        Objects with ``deliver(event)`` (never blocking) and ``close(timeout)``: the
        event log and hooks of :mod:`soundnet.hooks`; hooks are started here.
    on_event : callable or None
        Called with each event in the detector's thread (the command line prints it).
    hook_grace : float
        Seconds the sinks get at the end to send what is queued.
    verify : bool
        Apply the card's verifier, if it has one (:class:`soundnet.live.LiveDetector`).
    raw_confidence : bool
        Report the network's confidence, not the card's calibrated one.
    """
    from soundnet.detection import Detector
    from soundnet.features import one_blas_thread
    from soundnet.streams import mono_blocks

    detector = Detector(model, runtime=runtime, threads=1)  # one window per hop: a second thread only spins
    card = detector.card
    if not isinstance(post, LivePost):
        post = LivePost.from_card(card.postprocessing, **dict(post or {}))
    source = open_source(device=device, stdin=stdin, raw=raw, sample_rate=card.features.sample_rate)
    live = LiveDetector(card, detector.predict, post=post, hop_seconds=hop_seconds, verify=verify, raw_confidence=raw_confidence)
    with one_blas_thread():
        live.warm_up()
    log.info(
        "listening to %s for %s (model %s), a window every %g s; %s",
        source.describe(),
        card.target,
        detector.run,
        live.hop_seconds,
        post,
    )
    for sink in sinks:
        if hasattr(sink, "start"):
            sink.start()
    stop = StopSignals()

    def emit(event: LiveEvent) -> None:
        event = LiveEvent(event.event, event.label, event.stream_time, event.confidence, now_iso())
        with stop.held():
            for sink in sinks:
                sink.deliver(event)
            if on_event is not None:
                on_event(event)

    started, cpu = time.monotonic(), time.process_time()
    stopped_by = "end of stream"
    try:
        with stop, one_blas_thread():  # see soundnet.features.one_blas_thread: 15x faster features here
            try:
                for event in live.run(_watched(mono_blocks(source, sample_rate=card.features.sample_rate), source)):
                    emit(event)
            except (Stopped, KeyboardInterrupt) as why:
                stopped_by = why.why if isinstance(why, Stopped) else "SIGINT"
                stop.closing = True
                for event in live.stop():
                    emit(event)
            finally:
                source.close()
    finally:
        for sink in sinks:
            sink.close(hook_grace)
    return ListenReport(
        stats=live.stats,
        stopped_by=stopped_by,
        wall_seconds=time.monotonic() - started,
        cpu_seconds=time.process_time() - cpu,
        overruns=source.overruns,
        dropped_seconds=source.dropped_seconds,
        hook_failures=sum(getattr(sink, "failed", 0) + getattr(sink, "dropped", 0) for sink in sinks),
        post=post,
        hop_seconds=live.hop_seconds,
        source=source.describe(),
    )


OVERRUN_REPORT_SECONDS = 10.0  # overruns are reported at most this often


def _watched(blocks, source) -> Iterator:
    """``blocks``, with the source's overruns reported on stderr as they grow."""
    reported, last = 0, -OVERRUN_REPORT_SECONDS
    for block in blocks:
        if source.overruns != reported and time.monotonic() - last >= OVERRUN_REPORT_SECONDS:
            reported, last = source.overruns, time.monotonic()
            log.warning(
                "%s: %d overrun(s) so far, %.2f s of audio dropped (replaced by silence): the machine is behind",
                source.describe(),
                source.overruns,
                source.dropped_seconds,
            )
        yield block


def summary(report: ListenReport) -> str:
    """One line on how the run went, for stderr."""
    stats = report.stats
    text = (
        f"listen: stopped by {report.stopped_by} after {stats.seconds:.1f} s of stream "
        f"({report.wall_seconds:.1f} s wall, {report.cpu_seconds:.1f} s CPU): {stats.events} event(s), "
        f"{stats.windows} window(s) scored, {report.overruns} overrun(s) ({report.dropped_seconds:.2f} s dropped)"
    )
    if stats.gaps:
        text += f", {stats.gaps} gap(s) ({stats.gap_seconds:.1f} s) while the device was lost"
    if report.hook_failures:
        text += f", {report.hook_failures} event(s) a hook could not deliver"
    return text


def print_event(event: LiveEvent, stream=None) -> None:
    """The event as a JSON line on stdout, flushed (a reader sees it at once)."""
    from soundnet.hooks import event_line

    stream = stream or sys.stdout
    try:
        stream.write(event_line(event) + "\n")
        stream.flush()
    except BrokenPipeError:
        raise SoundnetError("stdout: the reader went away (broken pipe)") from None
