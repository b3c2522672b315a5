"""Outputs that cannot destroy inputs.

Before any work, every path a command will write is compared with what it reads: the
audio files, their label files (``x.txt``, ``x.Table.1.selections.txt`` beside ``x.wav``), annotation
tables, a dataset. An output that is one of them, or a folder holding one, is refused
with one line naming both, so ``detect x.wav --output x.wav`` never replaces the
recording.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from soundnet.errors import UsageError


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def holds(folder: Path, path: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (links resolved)."""
    folder, path = _resolved(folder), _resolved(path)
    return path == folder or folder in path.parents


def with_sidecars(audio: Iterable[Path]) -> list[Path]:
    """The audio files and the label files each may have beside it: Audacity ``x.txt``
    and Raven ``x.selections.txt`` (whether they exist yet or not) and the Raven tables
    there are (:func:`soundnet.annotations.sidecar_tables`)."""
    from soundnet.annotations import all_sidecar_tables

    paths = []
    for path, tables in all_sidecar_tables(audio).items():
        paths += [path, path.with_suffix(".txt"), path.with_name(path.stem + ".selections.txt"), *tables]
    return paths


def refuse_overwrites(outputs: Iterable[tuple[str, Path]], inputs: Iterable[Path]) -> None:
    """Refuse any output that is, or is a folder holding, one of ``inputs``.

    Parameters
    ----------
    outputs : iterable of (what, path)
        What the output is (``"--output"``, ``"--frames"``...) and its path.
    inputs : iterable of Path
        Files and folders read (existing or not: a sidecar that does not exist yet is
        still the user's to write).

    Raises
    ------
    UsageError
        Naming the output, the option and the input it would replace.
    """
    protected = [(Path(p), _resolved(p)) for p in inputs]
    for what, output in outputs:
        target = _resolved(output)
        for given, path in protected:
            if target == path or target in path.parents:
                kind = "is" if target == path else "holds"
                raise UsageError(f"{output}: {what} {kind} {given}, which this command reads: choose another path")
