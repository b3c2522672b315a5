"""Live audio sources for ``soundnet listen``: standard input and sound devices.

A source yields float32 blocks ``(frames, channels)`` at its own rate as they arrive,
and :class:`~soundnet.live.Gap` where audio is missing (a device lost and found
again); :func:`mono_blocks` mixes them to mono and resamples them (streamed, soxr)
for the detector.

- :class:`StdinSource`: a WAV (its header read, its size ignored when a pipe could not
  know it) or headerless PCM (:class:`soundnet.audio.RawPCM`, decoded by the
  :class:`soundnet.audio.PCMDecoder` that ``detect -`` uses). A pipe that is read
  slowly makes its writer wait: nothing is dropped.
- :class:`DeviceSource`: a sound device through sounddevice (PortAudio), imported only
  here. A device cannot wait: blocks the detector has no room for are dropped,
  counted as overruns and replaced by silence of the same length (stream time stays
  wall time); a device that stops delivering is reopened, with attempts logged.
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from soundnet.audio import STDIN_NAME, PCMDecoder, RawPCM
from soundnet.errors import SoundnetError, UsageError
from soundnet.live import Gap

log = logging.getLogger(__name__)

READ_BYTES = 1 << 16  # most bytes read from a pipe at once (what is there, up to this)
_WAV_FORMATS = {(1, 16): "s16le", (1, 32): "s32le", (3, 32): "f32le", (3, 64): "f64le"}  # (format tag, bits) -> RAW_FORMATS
_EXTENSIBLE = 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # what writers to a pipe put in a size they cannot know
_PLACEHOLDER_SIZE = 0x7FFF0000  # sox and arecord write about 2**31 there: read to the end instead


def read_exactly(stream, n: int) -> bytes:
    """``n`` bytes of ``stream`` (fewer only at its end)."""
    data = b""
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            break
        data += more
    return data


def read_wav_header(stream, name: str = STDIN_NAME) -> tuple[RawPCM, int | None]:
    """Read a WAV header off a stream that cannot seek, up to its data.

    Returns the data's format and its size in bytes (None: to the end of the stream,
    when the header says 0, ``0xFFFFFFFF`` or a placeholder of about 2 GiB, as writers to
    a pipe do). Integer PCM of 16 or 32 bits and float of 32 or 64 bits, also as
    WAVE_FORMAT_EXTENSIBLE; RIFF only (RF64's sizes live in a ``ds64`` chunk, and a
    stream never needs them).

    Raises
    ------
    SoundnetError
        Not a RIFF/WAVE stream, no ``fmt`` before ``data``, or a sample format not read.
    """
    head = read_exactly(stream, 12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise SoundnetError(
            f"{name}: not a WAV stream (it does not start with RIFF....WAVE); for headerless PCM give --format and --rate"
        )
    fmt = None
    while True:
        chunk = read_exactly(stream, 8)
        if len(chunk) < 8:
            raise SoundnetError(f"{name}: the WAV header ends before its data chunk")
        kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if kind == b"data":
            if fmt is None:
                raise SoundnetError(f"{name}: WAV data before its fmt chunk")
            known = size not in _UNKNOWN_SIZES and size < _PLACEHOLDER_SIZE
            return fmt, size if known else None
        if size > 1 << 20:
            raise SoundnetError(f"{name}: a WAV header chunk {kind!r} of {size} bytes before the data")
        body = read_exactly(stream, size + size % 2)  # chunks are padded to an even size
        if len(body) < size:
            raise SoundnetError(f"{name}: the WAV header ends inside its {kind!r} chunk")
        if kind == b"fmt ":
            fmt = _wav_format(body, name)


def _wav_format(body: bytes, name: str) -> RawPCM:
    if len(body) < 16:
        raise SoundnetError(f"{name}: a WAV fmt chunk of {len(body)} bytes (at least 16)")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the format tag
    fmt = _WAV_FORMATS.get((tag, bits))
    if fmt is None or channels < 1 or rate < 1:
        kind = {1: "integer PCM", 3: "float"}.get(tag, f"format tag {tag}")
        raise SoundnetError(
            f"{name}: a WAV of {kind}, {bits} bits, {channels} channel(s) at {rate} Hz: "
            "listen reads 16/32-bit integer or 32/64-bit float WAV (convert it: sox ... -b 16 -t wav -)"
        )
    return RawPCM(fmt, rate, channels)


class StdinSource:
    """A stream on a binary file object (standard input): a WAV, or headerless PCM (``raw``).

    Iterating yields ``(frames, channels)`` float32 blocks of what has arrived (up to
    :data:`READ_BYTES` at a time) until the stream (or a WAV's data) ends.
    """

    overruns = 0  # a pipe makes its writer wait instead
    dropped_seconds = 0.0

    def __init__(self, stream, *, raw: RawPCM | None = None, name: str = STDIN_NAME):
        if hasattr(stream, "isatty") and stream.isatty():
            raise SoundnetError(
                f"{name}: a terminal, not audio: pipe a WAV or raw PCM in (sox x.wav -t wav - | soundnet listen --input -)"
            )
        self.stream, self.name = stream, name
        self.remaining = None
        if raw is None:
            raw, self.remaining = read_wav_header(stream, name)
        self.format = raw
        self.rate, self.channels = raw.rate, raw.channels
        self.decoder = PCMDecoder(raw)

    def describe(self) -> str:
        return f"{self.name} ({self.format.fmt}, {self.rate} Hz, {self.channels} channel(s))"

    def _read(self, n: int) -> bytes:
        read = getattr(self.stream, "read1", self.stream.read)
        return read(n)

    def __iter__(self) -> Iterator[np.ndarray]:
        while self.remaining is None or self.remaining > 0:
            n = READ_BYTES if self.remaining is None else min(READ_BYTES, self.remaining)
            data = self._read(n)
            if not data:
                break
            if self.remaining is not None:
                self.remaining -= len(data)
            block = self.decoder.decode(data)
            if len(block):
                yield block
        self.decoder.finish(self.name)

    def close(self) -> None:
        pass


def import_sounddevice():
    """The sounddevice module, or SoundnetError saying what to install (the package, or PortAudio)."""
    try:
        import sounddevice
    except ImportError:
        raise SoundnetError(
            "listening to a sound device needs the sounddevice package: pip install 'soundnet[live]' (or pipe audio to --input -)"
        ) from None
    except OSError as error:  # sounddevice raises it when libportaudio is missing
        raise SoundnetError(
            f"listening to a sound device needs the PortAudio library ({error}): "
            "sudo apt-get install libportaudio2 (Debian, Ubuntu, Raspberry Pi OS), brew install portaudio (macOS); "
            "or pipe audio to --input -"
        ) from None
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_rate: float
    default: bool = False


def list_devices() -> list[InputDevice]:
    """The input devices PortAudio sees."""
    sd = import_sounddevice()
    try:
        default = sd.default.device[0]
    except (TypeError, IndexError, AttributeError):
        default = None
    return [
        InputDevice(int(i), str(d["name"]), int(d["max_input_channels"]), float(d["default_samplerate"]), i == default)
        for i, d in enumerate(sd.query_devices())
        if d["max_input_channels"] > 0
    ]


def device_spec(value: str | int | None) -> str | int | None:
    """A ``--device`` value as sounddevice takes it: an index (digits) or a name (a part of one)."""
    if value is None or isinstance(value, int):
        return value
    return int(value) if value.strip().isdigit() else value


class DeviceSource:
    """Audio from an input device, with overruns counted and the device reopened when lost.

    Parameters
    ----------
    device : str, int or None
        Index or (part of a) name, as ``--device`` takes it; None: the default input.
    sample_rate : int
        The rate to ask for (the detector's); when the device refuses it, its own
        default rate is used and the audio resampled.
    block_seconds : float
        Audio per callback.
    queue_seconds : float
        Audio waiting for the detector before blocks are dropped (overruns).
    stall_seconds : float
        A device silent this long (no callback) is taken as lost.
    retry_seconds : sequence of float
        Waits between attempts to reopen a lost device (the last one repeats).
    """

    def __init__(
        self,
        device: str | int | None = None,
        *,
        sample_rate: int = 16000,
        block_seconds: float = 0.02,
        queue_seconds: float = 10.0,
        stall_seconds: float = 2.0,
        retry_seconds: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0),
    ):
        self.sd = import_sounddevice()
        self.device = device_spec(device)
        self.block_seconds, self.stall_seconds, self.retry_seconds = block_seconds, stall_seconds, retry_seconds
        self.queue_seconds = queue_seconds
        self.channels = 1
        self.overruns = 0  # blocks dropped (the detector was behind, or PortAudio said so)
        self.dropped_seconds = 0.0
        self.reconnects = 0
        self._closing = threading.Event()
        self._stream = None
        self.name, self.rate = self._find(sample_rate)
        self._queue: queue.Queue = queue.Queue()

    def describe(self) -> str:
        return f"device {self.name!r} ({self.rate} Hz)"

    def _find(self, sample_rate: int) -> tuple[str, int]:
        sd = self.sd
        try:
            info = sd.query_devices(self.device, "input")
        except (ValueError, sd.PortAudioError) as error:
            which = "the default input device" if self.device is None else f"input device {self.device!r}"
            raise SoundnetError(f"{which}: {error} (soundnet listen --list-devices shows them)") from None
        try:
            sd.check_input_settings(device=self.device, channels=1, samplerate=sample_rate, dtype="float32")
            rate = sample_rate
        except (ValueError, sd.PortAudioError):
            rate = int(info["default_samplerate"])
        return str(info["name"]), rate

    def _open(self) -> None:
        blocksize = max(1, int(self.block_seconds * self.rate))
        self._queue = queue.Queue(maxsize=max(1, int(self.queue_seconds / self.block_seconds)))
        target = self._queue

        missed = 0  # frames dropped since the last block queued

        def callback(indata, frames, time_info, status):  # PortAudio's thread: never blocks
            nonlocal missed
            if status and getattr(status, "input_overflow", False):
                self.overruns += 1
            try:
                if missed:  # the dropped audio, as silence, in its place in time
                    target.put_nowait(np.zeros((missed, self.channels), np.float32))
                    missed = 0
                target.put_nowait(indata.copy())
            except queue.Full:
                self.overruns += 1
                self.dropped_seconds += frames / self.rate
                missed += frames

        stream = self.sd.InputStream(
            device=self.device, channels=1, samplerate=self.rate, blocksize=blocksize, dtype="float32", callback=callback
        )
        stream.start()
        self._stream = stream

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception as error:  # a stream whose device is gone may fail to close: it is dropped anyway
                log.debug("closing the lost stream: %s", error)

    def _reopen(self, reason: str) -> float:
        """Reopen the device after it was lost; the seconds it was away."""
        lost = time.monotonic()
        log.warning("%s: lost (%s); trying to reopen it", self.describe(), reason)
        self._close_stream()
        attempt = 0
        while not self._closing.is_set():
            wait = self.retry_seconds[min(attempt, len(self.retry_seconds) - 1)]
            if self._closing.wait(wait):
                break
            attempt += 1
            try:
                reinitialise = getattr(self.sd, "_terminate", None), getattr(self.sd, "_initialize", None)
                if all(reinitialise):  # PortAudio lists devices once per initialisation: a new plug needs a new one
                    reinitialise[0]()
                    reinitialise[1]()
                self._open()
            except Exception as error:
                log.warning("%s: reopening failed (attempt %d: %s); next attempt in %g s", self.describe(), attempt, error, wait)
                continue
            self.reconnects += 1
            away = time.monotonic() - lost
            log.warning("%s: back after %.1f s (attempt %d)", self.describe(), away, attempt)
            return away
        return time.monotonic() - lost

    def __iter__(self) -> Iterator[np.ndarray | Gap]:
        try:
            self._open()
        except self.sd.PortAudioError as error:
            raise SoundnetError(f"{self.describe()}: cannot open it ({error})") from None
        last = time.monotonic()
        try:
            while not self._closing.is_set():
                current = self._queue
                try:
                    block = current.get(timeout=0.1)
                except queue.Empty:
                    stream = self._stream
                    stopped = stream is None or not getattr(stream, "active", True)
                    if stopped or time.monotonic() - last > self.stall_seconds:
                        reason = "its stream stopped" if stopped else f"no audio for {self.stall_seconds:g} s"
                        yield Gap(self._reopen(reason))
                        last = time.monotonic()
                    continue
                last = time.monotonic()
                yield block
        finally:
            self._close_stream()

    def close(self) -> None:
        self._closing.set()


def mono_blocks(source, *, sample_rate: int) -> Iterator[np.ndarray | Gap]:
    """The blocks of ``source`` mixed to mono float32 and resampled to ``sample_rate``
    (soxr, streamed, as :func:`soundnet.audio.iter_audio` does); gaps passed on."""
    import soxr

    def resampler():
        if source.rate == sample_rate:
            return None
        return soxr.ResampleStream(source.rate, sample_rate, 1, dtype="float32", quality="HQ")

    stream = resampler()
    for block in source:
        if isinstance(block, Gap):
            if stream is not None:
                yield stream.resample_chunk(np.zeros(0, np.float32), last=True)
                stream = resampler()
            yield block
            continue
        if not np.isfinite(block).all():
            raise SoundnetError(f"{source.name}: NaN or infinite samples")
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else np.ascontiguousarray(block[:, 0])
        yield mono if stream is None else stream.resample_chunk(mono)
    if stream is not None:
        yield stream.resample_chunk(np.zeros(0, np.float32), last=True)


def check_source_options(*, device, stdin: bool, raw: RawPCM | None) -> None:
    if device is not None and stdin:
        raise UsageError("give --device or --input -, not both")
    if raw is not None and not stdin:
        raise UsageError("--format, --rate and --channels describe a stream on standard input: give --input -")
