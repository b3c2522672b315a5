"""Groups of recordings, and validation that holds out whole groups.

Files cut from one source recording, or mixed from the same clips and backgrounds,
are alike: validating on one while training on its sibling measures memory, not
detection. A group names the files that belong together (a site, a device, a source
recording, a fold of ``soundnet synth``); validation holds out whole groups, so its
figures say what a detector does on sources it never heard.

A file's group comes, in this order, from ``--group-pattern`` (a regular expression
searched in the file's path relative to the folder given: its first capture group, or
the whole match), from the annotation table's ``group`` column, or is the file
itself. Pure functions; no files are read here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundnet.errors import SoundnetError, UsageError

#: How a dataset's groups were found (the manifest's ``groups`` record).
BY_PATTERN, BY_COLUMN, BY_FILE = "--group-pattern", "the annotations' group column", "file"


def relative_name(path: Path, roots: Sequence[Path]) -> str:
    """``path`` relative to the first root (folder, or a file's folder) holding it, POSIX-style."""
    for root in roots:
        base = root if root.is_dir() else root.parent
        try:
            return path.relative_to(base).as_posix()
        except ValueError:
            continue
    return path.as_posix()


def compile_pattern(pattern: str) -> re.Pattern:
    """The regular expression of ``--group-pattern``; a usage error if it is not one."""
    try:
        return re.compile(pattern)
    except re.error as error:
        raise UsageError(f"--group-pattern {pattern!r} is not a regular expression ({error})") from None


def pattern_group(name: str, pattern: re.Pattern) -> str | None:
    """The group ``pattern`` finds in ``name``: its first capture group, else the whole match."""
    match = pattern.search(name)
    if match is None:
        return None
    group = match.group(1) if pattern.groups else match.group(0)
    return group or None


def file_groups(names: Mapping[Path, str], column: Mapping[Path, str | None], pattern: str | None) -> tuple[dict[Path, str], str]:
    """Each file's group and how the groups were found (:data:`BY_PATTERN`, ...).

    Parameters
    ----------
    names : mapping path -> str
        Each file's name relative to the folder given (:func:`relative_name`).
    column : mapping path -> str or None
        The group the annotation table gives a file (None: none).
    pattern : str or None
        ``--group-pattern``.

    Raises
    ------
    SoundnetError
        The pattern does not match a file (the first such file is named).
    """
    if pattern is not None:
        compiled = compile_pattern(pattern)
        groups = {path: pattern_group(name, compiled) for path, name in names.items()}
        missing = [path for path, group in groups.items() if group is None]
        if missing:
            raise SoundnetError(
                f"{missing[0]}: --group-pattern {pattern!r} finds no group in {names[missing[0]]!r}"
                + (f" (nor in {len(missing) - 1} other file(s))" if len(missing) > 1 else "")
            )
        return {path: str(group) for path, group in groups.items()}, BY_PATTERN
    if any(column.get(path) for path in names):
        return {path: column.get(path) or names[path] for path in names}, BY_COLUMN
    return dict(names), BY_FILE


def negative_groups(paths: Sequence[Path], roots: Sequence[Path], pattern: str | None) -> dict[Path, str]:
    """Groups of ``--negatives`` recordings: what ``pattern`` finds in a name (a site's
    own noise joins the site's group), else each file on its own."""
    compiled = compile_pattern(pattern) if pattern is not None else None
    groups = {}
    for path in paths:
        name = relative_name(path, roots)
        found = pattern_group(name, compiled) if compiled is not None else None
        groups[path] = found or f"negatives/{name}"
    return groups


def table_group(rows: Sequence) -> str | None:
    """The one group the rows of a file give it (None: no group column); an error if two."""
    groups = {row.group for row in rows if getattr(row, "group", None)}
    if len(groups) > 1:
        first, second = sorted(groups)[:2]
        where = next(row.where for row in rows if row.group == second)
        raise SoundnetError(f"{where}: group {second!r} differs from the file's group {first!r} in another row")
    return groups.pop() if groups else None


@dataclass(frozen=True)
class Split:
    """Indices of the training and validation items, and how the split was made."""

    train: list[int]
    validation: list[int]
    by: str  # "group" or "file"
    train_groups: int
    validation_groups: int


def split_by_group(groups: Sequence[str], *, fraction: float, seed: int, strata: Sequence[bool] | None = None) -> Split:
    """Hold out about ``fraction`` of the items for validation, whole groups at a time.

    Groups are shuffled with ``seed`` and taken until the held-out items reach
    ``fraction`` of the total; at least one group is held out and one kept when there
    are two or more. ``strata`` (one bool per item: a negative-only recording, say)
    splits each stratum on its own, so validation gets its share of each. When every
    item of a stratum is in one group, that stratum is split by item, and ``by`` says
    ``"file"``.
    """
    groups = list(groups)
    strata = list(strata) if strata is not None else [False] * len(groups)
    rng = np.random.default_rng(seed)
    train: list[int] = []
    validation: list[int] = []
    by = "group"
    n_train_groups = n_val_groups = 0
    for stratum in sorted(set(strata)):
        items = [i for i, s in enumerate(strata) if s == stratum]
        names = sorted({groups[i] for i in items})
        if fraction <= 0 or len(items) < 2:
            train += items
            n_train_groups += len(names)
            continue
        if len(names) == 1:  # one group: no honest split is possible; hold out files
            by = "file"
            order = rng.permutation(items)
            n_val = min(max(int(round(fraction * len(items))), 1), len(items) - 1)
            validation += [int(i) for i in order[:n_val]]
            train += [int(i) for i in order[n_val:]]
            n_train_groups += 1
            n_val_groups += 1
            continue
        held: set[str] = set()
        count = 0
        members = {name: [i for i in items if groups[i] == name] for name in names}
        for k in rng.permutation(len(names)):
            if count >= fraction * len(items) or len(held) == len(names) - 1:
                break
            held.add(names[k])
            count += len(members[names[k]])
        validation += [i for i in items if groups[i] in held]
        train += [i for i in items if groups[i] not in held]
        n_train_groups += len(names) - len(held)
        n_val_groups += len(held)
    return Split(sorted(train), sorted(validation), by, n_train_groups, n_val_groups)


def fold_splits(groups: Sequence[str], *, folds: int, seed: int, strata: Sequence[bool] | None = None) -> list[Split]:
    """``folds`` splits for cross-validation: every item is in the validation of exactly
    one, and whole groups go together.

    Within each stratum (``strata``: one bool per item, as :func:`split_by_group`), the
    groups are shuffled with ``seed`` and dealt, largest first, each to the fold that
    holds the fewest items of that stratum so far. The annotated stratum (False) needs
    at least ``folds`` groups, else a :class:`SoundnetError` says how many there are; a
    stratum with fewer groups (a few ``--negatives`` recordings) leaves some folds
    without any of it.
    """
    groups = list(groups)
    strata = list(strata) if strata is not None else [False] * len(groups)
    if folds < 2:
        raise SoundnetError(f"cross-validation needs at least 2 folds. Received: {folds}")
    annotated = {g for g, s in zip(groups, strata, strict=True) if not s}
    if len(annotated) < folds:
        raise SoundnetError(
            f"{folds}-fold cross-validation needs at least {folds} groups of annotated files; there are "
            f"{len(annotated)} (give groups: a group column or --group-pattern at extract, or fewer folds)"
        )
    rng = np.random.default_rng(seed)
    fold_of: dict[tuple[bool, str], int] = {}
    for stratum in sorted(set(strata)):
        members: dict[str, int] = {}
        for g, s in zip(groups, strata, strict=True):
            if s == stratum:
                members[g] = members.get(g, 0) + 1
        names = sorted(members)
        shuffled = [names[k] for k in rng.permutation(len(names))]
        load = [0] * folds
        for name in sorted(shuffled, key=lambda n: -members[n]):  # stable: ties keep the shuffled order
            k = min(range(folds), key=lambda f: (load[f], f))
            fold_of[(stratum, name)] = k
            load[k] += members[name]
    splits = []
    for k in range(folds):
        held = [i for i, (g, s) in enumerate(zip(groups, strata, strict=True)) if fold_of[(s, g)] == k]
        kept = [i for i in range(len(groups)) if fold_of[(strata[i], groups[i])] != k]
        n_held = len({(strata[i], groups[i]) for i in held})
        splits.append(Split(kept, held, "group", len(fold_of) - n_held, n_held))
    return splits
