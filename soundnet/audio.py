"""Audio input: finding audio files and reading them as mono float32 at one rate.

Everything here touches files; the feature code only sees arrays. Audio is read in
blocks and resampled with a streaming resampler, so a 10-hour recording never sits
in memory whole, and a short clip goes through the very same path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from soundnet.errors import SoundnetError

log = logging.getLogger(__name__)

# Audio containers soundfile reads that hold recordings in practice (not .raw, .mat4...)
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd", ".w64", ".caf", ".rf64"}
)

BLOCK_SECONDS = 30.0


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def find_audio(paths: Iterable[Path]) -> list[Path]:
    """Audio files among ``paths``, folders searched recursively, sorted and unique.

    A file named explicitly is taken whatever its extension (reading it will tell
    whether it is audio). Symbolic links to folders are not followed, so a link loop
    cannot trap the search.

    Raises
    ------
    SoundnetError
        A path does not exist, or a folder holds no audio file.
    """
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        if path.is_dir():
            inside = []
            for root, dirs, files in os.walk(path, followlinks=False):
                dirs.sort()
                inside += [Path(root) / f for f in sorted(files) if is_audio(Path(f))]
            if not inside:
                raise SoundnetError(f"{path}: no audio files in this folder")
            found.update(dict.fromkeys(sorted(inside)))
        elif path.exists():
            found[path] = None
        else:
            raise SoundnetError(f"{path}: no such file or folder")
    return list(found)


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
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise SoundnetError(f"{path}: cannot read audio ({error_reason(error)})") from None
    if info.frames <= 0:
        raise SoundnetError(f"{path}: no audio samples")
    return info


def error_reason(error: Exception) -> str:
    """A one-line reason from a soundfile (libsndfile) or OS error."""
    text = str(getattr(error, "error_string", "") or error).strip()
    return " ".join(text.split()) or type(error).__name__


def iter_audio(path: Path, *, sample_rate: int, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield consecutive blocks of ``path`` as mono float32 at ``sample_rate``.

    Parameters
    ----------
    path : Path
        Any file soundfile reads (WAV of any sample format, FLAC, OGG, ...).
    sample_rate : int > 0
        Output rate; other rates are converted with soxr (high quality), streamed.
    block_seconds : float > 0
        Length of the blocks read from disk.

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
    try:
        with sf.SoundFile(str(path)) as f:
            while True:
                block = f.read(blocksize, dtype="float32", always_2d=True)
                last = len(block) < blocksize
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


def load_audio(path: Path, *, sample_rate: int) -> np.ndarray:
    """The whole of ``path`` as one mono float32 array at ``sample_rate`` (see iter_audio)."""
    blocks = list(iter_audio(path, sample_rate=sample_rate))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
