"""The one error type of the soundnet library, text safe to print, and labels that can be."""

import os
import re


class SoundnetError(Exception):
    """A problem with the user's input, files or configuration.

    The message is one line that names the file (and line, for tables) and the
    problem; the command line prints it as is, without a traceback.
    """


class UsageError(SoundnetError):
    """Options that cannot work together (the command line exits 2, as for a bad option)."""


def printable(text: str) -> str:
    """``text`` with bytes that are not UTF-8 (a file name's, kept by Python as
    surrogates) written as ``\\xNN``, and tabs and line breaks as ``\\t``, ``\\n``,
    ``\\r``: one line that any UTF-8 output takes, and no name can forge another line."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


#: Longest label (target sound, table label, synth folder name) soundnet accepts.
MAX_LABEL = 100


def check_label(label: str, where: str) -> str:
    """``label`` if it is a short printable string (1 to :data:`MAX_LABEL` characters, no
    tab, line break or other control character), so that no output format can be forged
    by it; else SoundnetError naming ``where``."""
    if not isinstance(label, str) or not label.strip():
        raise SoundnetError(f"{where}: the label is empty")
    shown = printable(label if len(label) <= 40 else label[:40] + "...")
    if len(label) > MAX_LABEL:
        raise SoundnetError(f"{where}: the label {shown!r} is {len(label)} characters long (at most {MAX_LABEL})")
    if not label.isprintable():
        raise SoundnetError(f"{where}: the label {shown!r} holds a tab, line break or other control character")
    return label


def os_reason(error: BaseException) -> str:
    """The one-line reason of an OS (or library) error: ``Permission denied``,
    ``No space left on device``..., without the path (the caller names it).

    Libraries that wrap the system's error (h5py: ``Can't close file (file write
    failed: ..., errno = 28, ...)``) are read for the error number they carry.
    """
    number = getattr(error, "errno", None)
    if not isinstance(number, int):
        found = re.search(r"errno = (\d+)", str(error))
        number = int(found[1]) if found else None
    if number:
        return os.strerror(number)
    text = getattr(error, "strerror", None) or " ".join(str(error).split())
    return text or type(error).__name__
