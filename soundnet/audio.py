"""Audio input: finding audio files and reading them as mono float32 at one rate.

Everything here touches files; the feature code only sees arrays. Audio is read in
blocks and resampled with a streaming resampler, so a 10-hour recording never sits
in memory whole, and a short clip goes through the very same path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from soundnet.errors import SoundnetError, os_reason

log = logging.getLogger(__name__)

# Audio containers soundfile reads that hold recordings in practice (not .raw, .mat4...)
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd", ".w64", ".caf", ".rf64"}
)

BLOCK_SECONDS = 30.0

#: The path that stands for standard input, and its name in outputs and messages.
STDIN = Path("-")
STDIN_NAME = "<stdin>"


def is_audio(path: Path) -> bool:
    """Whether the name of ``path`` ends in one of :data:`AUDIO_EXTENSIONS` (any case)."""
    return path.suffix.lower() in AUDIO_EXTENSIONS


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def audio_files(folder: Path) -> list[Path]:
    """The audio files under ``folder``, recursively, sorted.

    Only names ending in :data:`AUDIO_EXTENSIONS` count; hidden files and folders
    (names starting with a dot, such as the ``._x.wav`` that macOS leaves on other
    disks) are skipped. Symbolic links to folders are not followed, so a link loop
    cannot trap the search.

    Raises
    ------
    SoundnetError
        ``folder`` does not exist, is not a folder, holds no audio file, or holds a
        folder that cannot be read (its files would be missed without a word).
    """
    folder = Path(folder)
    if not folder.exists():
        raise SoundnetError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise SoundnetError(f"{folder}: not a folder")
    found = []

    def unreadable(error: OSError) -> None:
        raise SoundnetError(f"{error.filename}: cannot read folder ({os_reason(error)}); nothing was done")

    for root, dirs, files in os.walk(folder, onerror=unreadable, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        for name in files:
            path = Path(root) / name
            if _is_hidden(name) or not is_audio(path):
                continue
            special = _special_file(path)
            if special:
                log.warning("%s: skipped (%s, not an audio file)", path, special)
                continue
            found.append(path)
    if not found:
        raise SoundnetError(f"{folder}: no audio files in this folder")
    return sorted(found)


def _special_file(path: Path) -> str | None:
    """What ``path`` is when it exists and is neither a regular file nor a folder
    (a FIFO, a device, a socket), else None; links are followed."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or a broken link: the caller says so
    kinds = ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    for test, kind in (*kinds, (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return None


def as_paths(inputs: Path | str | Iterable[Path | str]) -> list[Path]:
    """One path or several, as a list of paths (the API takes either)."""
    return [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]


def find_audio(paths: Iterable[Path]) -> list[Path]:
    """Audio files among ``paths``, unique, in order; a folder gives its
    :func:`audio_files` (searched recursively, sorted, hidden names skipped).

    A file named explicitly is taken whatever its extension or name (reading it will
    tell whether it is audio).

    Raises
    ------
    SoundnetError
        A path does not exist, or a folder holds no audio file.
    """
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        special = _special_file(path)
        if path.is_dir():
            found.update(dict.fromkeys(audio_files(path)))
        elif special:
            raise SoundnetError(f"{path}: a {special}, not an audio file (soundnet reads files, never waits on a stream)")
        elif path.exists():
            found[path] = None
        else:
            raise SoundnetError(f"{path}: no such file or folder")
    return list(found)


#: Raw PCM sample formats standard input may carry: name -> NumPy dtype and full scale.
RAW_FORMATS = {"s16le": ("<i2", 2**15), "s32le": ("<i4", 2**31), "f32le": ("<f4", 1.0), "f64le": ("<f8", 1.0)}


@dataclass(frozen=True)
class RawPCM:
    """Headerless PCM on standard input: its sample format (a :data:`RAW_FORMATS` name),
    rate in Hz and channel count (interleaved)."""

    fmt: str
    rate: int
    channels: int = 1

    def __post_init__(self) -> None:
        if self.fmt not in RAW_FORMATS:
            raise SoundnetError(f"raw format must be one of {', '.join(RAW_FORMATS)}. Received: {self.fmt!r}")
        if self.rate < 1 or self.channels < 1:
            raise SoundnetError(f"raw rate and channels must be >= 1. Received: rate={self.rate}, channels={self.channels}")


class PCMDecoder:
    """Headerless PCM bytes of ``raw``'s format, in any split, to float32 samples.

    Bytes that end inside a frame are kept for the next call; :meth:`finish` says
    whether the stream ended on a whole frame. Shared by ``detect -`` (raw PCM
    spooled to a WAV) and ``listen --input -`` (raw PCM or a WAV's data, live).
    """

    def __init__(self, raw: RawPCM):
        self.raw = raw
        self.dtype, self.scale = RAW_FORMATS[raw.fmt]
        self.frame_bytes = np.dtype(self.dtype).itemsize * raw.channels
        self.rest = b""

    def decode(self, data: bytes) -> np.ndarray:
        """The whole frames of the bytes kept and ``data``: ``(frames, channels)`` float32 in [-1, 1]."""
        data = self.rest + data if self.rest else data
        whole = len(data) - len(data) % self.frame_bytes
        self.rest = data[whole:]
        samples = np.frombuffer(data, self.dtype, count=whole // np.dtype(self.dtype).itemsize)
        return (samples.reshape(-1, self.raw.channels) / self.scale).astype(np.float32)

    def finish(self, name: str = STDIN_NAME) -> None:
        """SoundnetError if the stream ended inside a frame."""
        if self.rest:
            raise SoundnetError(
                f"{name}: ends inside a frame ({len(self.rest)} byte(s) left of {self.frame_bytes}): "
                f"not {self.raw.fmt} x {self.raw.channels}"
            )


def _copy_raw(stream, path: Path, raw: RawPCM) -> None:
    """Raw PCM from ``stream`` as a float WAV (RF64, no 4 GB limit) at ``path``, block by block."""
    decoder = PCMDecoder(raw)
    with sf.SoundFile(path, "w", samplerate=raw.rate, channels=raw.channels, subtype="FLOAT", format="RF64") as out:
        for block in iter(lambda: stream.read(1 << 20), b""):
            out.write(decoder.decode(block))
    decoder.finish()


@contextlib.contextmanager
def spooled_stdin(raw: RawPCM | None = None) -> Iterator[Path]:
    """Standard input copied to a temporary file named ``<stdin>`` (removed afterwards).

    A stream cannot be read twice nor sought, and a WAV written to a pipe often has no
    true length in its header; a copy on disk is read like any file (header, blocks,
    the plot's second pass). Whether it is audio is for the reader to say. With
    ``raw``, standard input is headerless PCM of that format, written as a WAV.

    Raises
    ------
    SoundnetError
        Standard input is a terminal (nothing piped in), or cannot be copied.
    """
    if sys.stdin is None or sys.stdin.isatty():
        raise SoundnetError(f"{STDIN_NAME}: a terminal, not audio: pipe a WAV file in (soundnet detect - < x.wav)")
    folder = Path(tempfile.mkdtemp(prefix="soundnet-stdin-"))
    try:
        path = folder / STDIN_NAME
        try:
            if raw is None:
                with open(path, "wb") as copy:
                    shutil.copyfileobj(sys.stdin.buffer, copy, 1 << 20)
            else:
                _copy_raw(sys.stdin.buffer, path, raw)
        except (OSError, RuntimeError) as error:
            raise SoundnetError(f"{STDIN_NAME}: cannot keep a copy in {folder} ({os_reason(error)})") from None
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def audio_duration(path: Path) -> float:
    """Duration in seconds from the file header."""
    info = audio_info(path)
    return info.frames / info.samplerate


def audio_info(path: Path) -> sf._SoundFileInfo:
    """The file's header (frames, rate, channels); SoundnetError if unreadable or empty."""
    if Path(path).is_symlink() and not Path(path).exists():
        raise SoundnetError(f"{path}: cannot read audio (broken or looping symbolic link)")
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise SoundnetError(f"{path}: cannot read audio (empty file, 0 bytes)")
    try:  # libsndfile words a file it may not open as "System error."
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except OSError as error:
        raise SoundnetError(f"{path}: cannot read audio ({os_reason(error)})") from None
    try:
        info = sf.info(os.fsencode(path))  # bytes: names that are not UTF-8 open too
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise SoundnetError(f"{path}: cannot read audio ({error_reason(error)})") from None
    if info.frames <= 0:
        raise SoundnetError(f"{path}: no audio samples")
    return info


def error_reason(error: Exception) -> str:
    """A one-line reason from a soundfile (libsndfile) or OS error."""
    text = str(getattr(error, "error_string", "") or error).strip()
    return " ".join(text.split()) or type(error).__name__


def iter_audio(
    path: Path, *, sample_rate: int, block_seconds: float = BLOCK_SECONDS, start: int = 0, stop: int | None = None
) -> Iterator[np.ndarray]:
    """Yield consecutive blocks of ``path`` as mono float32 at ``sample_rate``.

    Parameters
    ----------
    path : Path
        Any file soundfile reads (WAV of any sample format, FLAC, OGG, ...).
    sample_rate : int > 0
        Output rate; other rates are converted with soxr (high quality), streamed.
    block_seconds : float > 0
        Length of the blocks read from disk.
    start, stop : int
        The frames to read, ``start:stop`` at the file's own rate (default: all);
        ``stop`` past the end reads to the end.

    Yields
    ------
    block : np.ndarray [shape=(n,), dtype=float32]

    Raises
    ------
    SoundnetError
        Unreadable or empty file, or NaN/infinite samples.
    """
    import soxr

    info = audio_info(path)
    resampler = None
    if info.samplerate != sample_rate:
        resampler = soxr.ResampleStream(info.samplerate, sample_rate, 1, dtype="float32", quality="HQ")
    blocksize = max(1, int(block_seconds * info.samplerate))
    start = min(max(0, start), info.frames)
    remaining = None if stop is None else max(0, stop - start)  # None: to the end, however long
    try:
        with sf.SoundFile(os.fsencode(path)) as f:
            if start:
                f.seek(start)
            while True:
                block = f.read(blocksize if remaining is None else min(blocksize, remaining), dtype="float32", always_2d=True)
                if remaining is not None:
                    remaining -= len(block)
                last = len(block) < blocksize or remaining == 0
                if len(block):
                    if not np.isfinite(block).all():
                        raise SoundnetError(f"{path}: contains NaN or infinite samples")
                    mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
                    if resampler is None:
                        yield np.ascontiguousarray(mono)
                    else:
                        yield resampler.resample_chunk(mono, last=last)
                elif resampler is not None:
                    yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                if last:
                    return
    except (sf.LibsndfileError, RuntimeError) as error:
        raise SoundnetError(f"{path}: cannot read audio ({error_reason(error)})") from None


def load_audio(path: Path, *, sample_rate: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """``path`` (or its frames ``start:stop``) as one mono float32 array at ``sample_rate`` (see iter_audio)."""
    blocks = list(iter_audio(path, sample_rate=sample_rate, start=start, stop=stop))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
