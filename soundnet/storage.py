"""Small file helpers: atomic writes, bounded reads and row-range reads of .npy arrays.

Every output of soundnet is written to a temporary name in its final folder and
renamed when complete, so an interrupted run never leaves a file that looks whole.
The temporary name is ``.part-PID-XXXXXXXX-NAME`` (the writer's process id, a random
part, the final name, cut at its start if the whole would be too long a name): a
process killed before its rename leaves such a file, and the next soundnet writing
into that folder removes it (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from soundnet.errors import SoundnetError, os_reason

log = logging.getLogger(__name__)

#: Largest JSON file (card, manifest, event list) and event table soundnet reads.
MAX_TEXT_BYTES = 256 * 2**20

_TEMPORARY = re.compile(r"^\.part-([0-9]{1,7})-[a-z0-9_]{8}-")
_NAME_MAX = 255  # bytes in a file name (Linux, macOS)
_PID_MAX = 4194304  # the largest process id Linux hands out
_STARTED = time.time()  # a file last modified before this was not being written for this process
_QUIET_SECONDS = 60.0  # a temporary file left unmodified this long has no writer at work
_cleaned: set[Path] = set()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a soundnet writer's temporary file name (``.part-PID-XXXXXXXX-NAME``)."""
    return _TEMPORARY.match(name) is not None


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files killed soundnet writers left in ``folder``; return them.

    A file is removed only when all of these hold: its name is soundnet's temporary
    name (``.part-PID-XXXXXXXX-NAME``), it is a regular file, the process ``PID`` that
    wrote it no longer runs (a reused PID keeps the file: the safe side), and it was
    last modified before this process started or has not been modified for a minute
    (a writer on another machine or in another container sharing the folder, whose
    PID means nothing here, is still writing). A writer at work, and anything else in
    the folder, is never touched. Each folder is looked at once per process.
    """
    folder = Path(folder)
    if folder in _cleaned:
        return []
    _cleaned.add(folder)
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMPORARY.match(entry.name)
            if not match or not 0 < int(match[1]) <= _PID_MAX or int(match[1]) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                quiet = info.st_mtime < _STARTED or time.time() - info.st_mtime > _QUIET_SECONDS
                if stat.S_ISREG(info.st_mode) and quiet and not _running(int(match[1])):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
                    log.info("%s: removed (left by an interrupted soundnet)", entry.path)
    return removed


def _temporary(path: Path) -> Path:
    """A new empty file ``.part-PID-XXXXXXXX-NAME`` beside ``path`` (mode 0600)."""
    prefix = f".part-{os.getpid()}-"
    room = _NAME_MAX - len(prefix) - 9  # 8 random characters and a dash
    name = os.fsencode(path.name)
    if len(name) > room:  # keep the end: the suffix some writers need (.keras, .npy)
        name = name[-room:]
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix="-" + os.fsdecode(name), dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _refuse_file_in_the_way(path: Path) -> None:
    """Name the file that stands where a folder of ``path`` should be (mkdir would only
    say "File exists")."""
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise SoundnetError(f"{path}: cannot write ({folder} is a file, not a folder)")
            return


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it once the block succeeds.

    A target that exists and is not a regular file (``/dev/null``, a pipe behind
    ``/dev/stdout``) is written directly: replacing it would be wrong, and there is
    nothing to keep whole. A symbolic link to a file keeps the link: the file it
    points to is replaced.

    Raises
    ------
    SoundnetError
        An OSError on the way (permission denied, read-only file system, full disk, a
        folder in the path that is a file...), as one line naming ``path`` and the
        reason; the temporary file is removed.
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_file() and not path.is_dir():
            yield path
            return
        if path.is_symlink() and path.exists():
            path = path.resolve()
        _refuse_file_in_the_way(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        tmp = _temporary(path)
    except OSError as error:
        raise SoundnetError(f"{path}: cannot write ({os_reason(error)})") from None
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as error:
        _discard(tmp)
        if isinstance(error, (OSError, RuntimeError)):  # RuntimeError: soundfile's and h5py's write errors
            raise SoundnetError(f"{path}: cannot write ({os_reason(error)})") from None
        raise


def _discard(tmp: Path) -> None:
    """Remove a failed temporary file. It is emptied first, and the objects of the failed
    writer collected: on a full disk a library may still hold it open (h5py, whose file
    objects would retry their flush when freed and crash the interpreter at exit)."""
    with contextlib.suppress(OSError):
        os.truncate(tmp, 0)
    gc.collect()
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def ensure_room(path: Path, needed: int) -> None:
    """Refuse (SoundnetError naming ``path``) to write ``needed`` bytes beside ``path``
    when its file system has less free: for writers that cannot fail cleanly on a full
    disk (h5py crashes the interpreter at exit after a failed write)."""
    try:
        free = shutil.disk_usage(Path(path).parent).free
    except OSError:
        return  # the write itself will say what is wrong
    if free < needed:
        raise SoundnetError(
            f"{path}: cannot write (No space left on device: {free // 1024} KiB free, about {needed // 1024} KiB needed)"
        )


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    Raises
    ------
    SoundnetError
        The file or its folder cannot be written (nothing is left behind).
    """
    with atomic_path(path) as tmp:
        write(tmp)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 (line ends as given), all or nothing."""
    write_atomic(path, lambda tmp: tmp.write_bytes(text.encode("utf-8")))


def write_json(path: Path, data: object) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8: \u escapes read back to the same name
        text = json.dumps(data, indent=2)
    write_text(path, text + "\n")


def read_bounded(path: Path, *, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path``, refused (SoundnetError) past ``limit`` bytes.

    A FIFO, device or socket is refused at once rather than waited on; an unreadable
    file gives the reason (``Permission denied``...).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise SoundnetError(f"{path}: cannot read {what} ({os_reason(error)})") from None
    with open(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise SoundnetError(f"{path}: not a regular file (a {what} is read from a file)")
            data = f.read(limit + 1)
        except OSError as error:
            raise SoundnetError(f"{path}: cannot read {what} ({os_reason(error)})") from None
    if len(data) > limit:
        raise SoundnetError(f"{path}: {what} larger than {limit / 2**20:g} MB (refused)")
    return data


def read_json(path: Path) -> dict:
    """The JSON object in ``path`` (at most :data:`MAX_TEXT_BYTES`, any nesting refused
    with one line rather than a RecursionError)."""
    data = read_bounded(path, limit=MAX_TEXT_BYTES, what="JSON file")
    try:
        data = json.loads(data)
    except json.JSONDecodeError as error:
        raise SoundnetError(f"{path}: not a readable JSON file (line {error.lineno}: {error.msg})") from None
    except UnicodeDecodeError:
        raise SoundnetError(f"{path}: not a readable JSON file (not UTF-8 text)") from None
    except RecursionError:
        raise SoundnetError(f"{path}: not a readable JSON file (nested too deeply)") from None
    if not isinstance(data, dict):
        raise SoundnetError(f"{path}: expected a JSON object")
    return data


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


def save_npy_chunks(path: Path, chunks: Iterable[np.ndarray], *, columns: int, dtype: np.dtype) -> int:
    """Write row chunks of unknown total length as one .npy file; return the row count.

    The rows are written behind room for the header, and the header, which holds the
    row count, is written last (then the file is renamed into place), so memory stays
    at one chunk whatever the file's length and every byte is written once.
    """
    rows = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(bytes(_NPY_HEADER_BYTES))
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=dtype).reshape(-1, columns)
            out.write(chunk.tobytes())
            rows += len(chunk)
        out.seek(0)
        out.write(_npy_header(dtype, (rows, columns)))
    return rows


_NPY_HEADER_BYTES = 128  # magic, version, length and the padded header dict of any 2-D shape below 10**40 rows


def _npy_header(dtype: np.dtype, shape: tuple[int, int]) -> bytes:
    """A version 1.0 .npy header of exactly ``_NPY_HEADER_BYTES`` bytes."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    data = buffer.getvalue()
    if len(data) != _NPY_HEADER_BYTES:
        raise ValueError(f"unexpected .npy header length {len(data)} for shape {shape}")
    return data


class NpyRows:
    """Random access to row ranges of a 2-D .npy file without mapping it into memory."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(f)
                self.offset = f.tell()
        except (OSError, ValueError) as error:
            raise SoundnetError(f"{self.path}: not a readable .npy array ({error})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise SoundnetError(f"{self.path}: expected a numeric array, got dtype {dtype} (refused, never unpickled)")
        if fortran or len(shape) not in (1, 2):
            raise SoundnetError(f"{self.path}: expected a C-ordered 1-D or 2-D array, got shape {shape}")
        self.shape, self.dtype = shape, dtype
        self.row_bytes = dtype.itemsize * (shape[1] if len(shape) == 2 else 1)
        expected = self.offset + self.row_bytes * shape[0]
        if self.path.stat().st_size != expected:
            raise SoundnetError(f"{self.path}: truncated or damaged ({self.path.stat().st_size} bytes, expected {expected})")

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(start, 0), min(stop, self.shape[0])
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_bytes)
            data = f.read(max(stop - start, 0) * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape((-1, *self.shape[1:]))
