"""Datasets: ``soundnet extract`` writes them, ``soundnet train`` streams windows from them.

A dataset folder holds ``manifest.json`` (feature config, target label, sources,
counts) and, per audio file, ``files/<id>.features.npy`` (frames x 129 float32:
MFCC, deltas, ZCR), ``files/<id>.labels.npy`` (frames, uint8) and
``files/<id>.json``, the entry written last: an entry is trusted only when its JSON
exists and names the same source size, mtime, feature config and events. Re-running
extract on unchanged inputs therefore redoes nothing, and a run killed half-way
resumes where it stopped. The manifest's ``files`` are the recordings (each with its
group, and ``negative`` for a ``--negatives`` one); ``copies`` are their augmented
copies (``<id>~aug<k>``), which only training reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundnet import __version__
from soundnet.annotations import (
    Annotation,
    all_sidecar_tables,
    check_within,
    choose_target,
    frame_labels,
    match_files,
    read_annotations,
    read_sidecar,
)
from soundnet.audio import audio_duration, find_audio, iter_audio, load_audio
from soundnet.batch import Failure, run_batch
from soundnet.config import FeatureConfig, from_dict, to_dict
from soundnet.errors import SoundnetError, UsageError
from soundnet.events import Event
from soundnet.features import compute_features, iter_features, one_blas_thread
from soundnet.groups import file_groups, negative_groups, relative_name, table_group
from soundnet.guard import refuse_overwrites, with_sidecars
from soundnet.parallel import Workers, check_jobs
from soundnet.storage import NpyRows, read_json, save_npy, save_npy_chunks, write_json

if TYPE_CHECKING:
    from soundnet.config import AugmentConfig

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Entry:
    """One audio file of a dataset."""

    id: str
    source: str
    frames: int
    positive_frames: int
    events: int
    group: str = ""  # validation holds out whole groups (soundnet.groups); "" in datasets before groups
    negative: bool = False  # a --negatives recording: known to hold no target, every frame negative
    copy: int = 0  # 0: the recording itself; k >= 1: its k-th augmented copy (training only)

    @property
    def original_id(self) -> str:
        """The id of the recording an augmented copy was made from (its own id otherwise)."""
        return self.id.rsplit("~aug", 1)[0] if self.copy else self.id

    def features_path(self, root: Path) -> Path:
        return Path(root) / "files" / f"{self.id}.features.npy"

    def labels_path(self, root: Path) -> Path:
        return Path(root) / "files" / f"{self.id}.labels.npy"


@dataclass
class ExtractReport:
    dataset: Path
    target: str
    extracted: list[Path] = field(default_factory=list)
    reused: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)  # item: the audio file
    augmented: int = 0  # augmented copies written or reused


def _entry_id(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:40] or "audio"
    digest = hashlib.sha1(str(path.resolve()).encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{stem}-{digest}"


def _fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _config_hash(config: FeatureConfig) -> str:
    return hashlib.sha1(json.dumps(to_dict(config), sort_keys=True).encode()).hexdigest()[:16]


def _source_fingerprint(path: Path, config: FeatureConfig) -> dict:
    """What an entry's features depend on: the source file (path, size, mtime) and the feature config."""
    return {"source": str(path.resolve()), **_fingerprint(path), "features": _config_hash(config)}


def _target_events(rows: list[Annotation], target: str) -> list[Event]:
    return sorted(r.event for r in rows if r.event is not None and r.event.label == target)


def _extract_one(path: Path, rows: list[Annotation], target: str, root: Path, config: FeatureConfig) -> tuple[Entry, bool]:
    """Features and labels of one file; returns its entry and whether it was reused."""
    entry_id = _entry_id(path)
    meta_path = root / "files" / f"{entry_id}.json"
    events = _target_events(rows, target)
    spans = [[e.onset, e.offset] for e in events]
    fingerprint = _source_fingerprint(path, config)
    old = _read_entry_meta(meta_path)
    entry = Entry(entry_id, str(path.resolve()), 0, 0, len(events))
    if old is not None and old.get("fingerprint") == fingerprint:
        if old.get("events") == spans:
            return Entry(**old["entry"]), True
    check_within(rows, audio_duration(path))
    if old is not None and old.get("fingerprint") == fingerprint:
        frames = old["entry"]["frames"]  # only the labels changed
    else:
        blocks = iter_audio(path, sample_rate=config.sample_rate)
        frames = save_npy_chunks(
            entry.features_path(root), iter_features(blocks, config=config), columns=config.n_features, dtype=np.float32
        )
    labels = frame_labels(events, frames, frame_seconds=config.frame_seconds)
    save_npy(entry.labels_path(root), labels)
    entry = dataclasses.replace(entry, frames=frames, positive_frames=int(labels.sum()))
    write_json(meta_path, {"fingerprint": fingerprint, "events": spans, "entry": dataclasses.asdict(entry)})
    return entry, False


#: Recordings longer than this are not augmented (augmentation holds a whole file in memory).
MAX_AUGMENTED_SECONDS = 600.0


def _augment_one(
    path: Path, rows: list[Annotation], target: str, root: Path, config: FeatureConfig, copy: int, augmentation, noise
) -> tuple[Entry, bool]:
    """Features and labels of the ``copy``-th augmented copy of one annotated file
    (:func:`soundnet.augment.augment`: the events move with the audio); returns its
    entry and whether it was reused. Its seed is a function of the file's id, the copy
    number and ``augmentation.seed``, so a rerun rebuilds the same copy."""
    from soundnet.augment import augment, augmentation_seed

    original_id = _entry_id(path)
    entry_id = f"{original_id}~aug{copy}"
    meta_path = root / "files" / f"{entry_id}.json"
    events = _target_events(rows, target)
    fingerprint = {
        **_source_fingerprint(path, config),
        "events": [[e.onset, e.offset] for e in events],
        "augmentation": to_dict(augmentation),
        "copy": copy,
        "noise": [str(Path(p).resolve()) for p in noise],
    }
    old = _read_entry_meta(meta_path)
    if old is not None and old.get("fingerprint") == fingerprint:
        return Entry(**old["entry"]), True
    y = load_audio(path, sample_rate=config.sample_rate)
    seed = augmentation_seed(original_id, copy, augmentation.seed)
    try:
        y, spans = augment(
            y, config.sample_rate, [(e.onset, e.offset) for e in events], config=augmentation, seed=seed, noise=noise
        )
    except SoundnetError:
        raise
    except Exception as error:  # the augmentation libraries' own errors, on audio they did not expect
        raise SoundnetError(f"{path}: cannot make augmented copy {copy} ({type(error).__name__}: {error})") from None
    entry = Entry(entry_id, str(path.resolve()), 0, 0, len(spans), copy=copy)
    features = compute_features(y, config=config)
    save_npy(entry.features_path(root), features.astype(np.float32))
    moved = [Event(path.name, on, off, target) for on, off in spans]
    labels = frame_labels(moved, len(features), frame_seconds=config.frame_seconds)
    save_npy(entry.labels_path(root), labels)
    entry = dataclasses.replace(entry, frames=len(features), positive_frames=int(labels.sum()))
    write_json(meta_path, {"fingerprint": fingerprint, "events": [list(s) for s in spans], "entry": dataclasses.asdict(entry)})
    return entry, False


def _read_entry_meta(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        meta = read_json(path)
        entry = Entry(**meta["entry"])
        NpyRows(entry.features_path(path.parent.parent))
        NpyRows(entry.labels_path(path.parent.parent))
    except (SoundnetError, KeyError, TypeError):
        return None
    return meta


def _extract_task(task: tuple) -> tuple[Entry, bool]:
    """:func:`_extract_one` (or, with a copy number, :func:`_augment_one`) of a task tuple
    (a module-level function: workers run it)."""
    return _extract_one(*task) if len(task) == 5 else _augment_one(*task)


def annotations_name(annotations: Path | None) -> str:
    """How messages name the annotations: the table, or the label files beside the audio."""
    return str(annotations) if annotations is not None else "the label files beside the audio"


def collect_annotations(
    audio: Sequence[Path],
    roots: Sequence[Path],
    annotations: Path | None,
    *,
    label_column: str | None = None,
    skip_unknown: bool = False,
) -> dict[Path, list[Annotation]]:
    """Annotation rows of each audio file: from the table if given (DCASE or Raven,
    :func:`soundnet.annotations.read_annotations`), else from the Audacity labels and
    Raven selection tables beside each file (:func:`soundnet.annotations.sidecar_tables`).
    ``skip_unknown``: rows of files not among ``audio`` are left out (see
    :func:`soundnet.annotations.match_files`) instead of refused."""
    if annotations is not None:
        rows = read_annotations(annotations, label_column=label_column)
        return match_files(rows, audio, roots, skip_unknown=skip_unknown)
    matched = {}
    for path, tables in all_sidecar_tables(audio).items():
        if tables:
            matched[path] = [
                row for table in tables for row in read_sidecar(table, filename=path.name, label_column=label_column)
            ]
    return matched


def extract(
    audio_paths: Sequence[Path],
    *,
    out: Path,
    annotations: Path | None = None,
    target: str | None = None,
    config: FeatureConfig | None = None,
    jobs: int | None = None,
    scheduler: str | None = None,
    fail_fast: bool = False,
    progress: bool = False,
    negatives: Sequence[Path] = (),
    group_pattern: str | None = None,
    augmentation: AugmentConfig | None = None,
    label_column: str | None = None,
) -> ExtractReport:
    """Turn audio files and their annotations into a dataset folder.

    Parameters
    ----------
    audio_paths : sequence of Path
        Audio files and folders (searched recursively).
    out : Path
        The dataset folder (created; an existing dataset is updated in place).
    annotations : Path or None
        A DCASE table or a Raven selection table (told by its header); None reads the
        label files beside the audio (Audacity ``x.txt``, Raven
        ``x.Table.1.selections.txt``).
    target : str or None
        The target label; None when the annotations hold a single label.
    config : FeatureConfig or None
        Feature settings; None for the defaults.
    jobs : int >= 1 or None
        Worker processes (None: the usable cores); the dataset is the same, byte for
        byte, whatever the number.
    scheduler : str or None
        A Dask distributed scheduler's address (``tcp://host:8786``): the files are
        extracted on its workers (docs/cluster.md), which must see the audio and ``out``
        at the same paths (a shared file system); a rerun reuses what they finished.
    fail_fast : bool
        Stop at the first file that fails instead of going on.
    negatives : sequence of Path
        Audio files and folders known to hold no target sound (local noise, the
        site's own sounds): every frame of them is a negative, whatever their length,
        and training mines them for hard negatives. They need no annotation.
    group_pattern : str or None
        A regular expression whose first capture group (or whole match), searched in
        each file's path relative to the folder given, names its group (a site, a
        device, a source). Without it, the table's ``group`` column, else each file is
        its own group. Validation holds out whole groups (:mod:`soundnet.groups`).
    augmentation : AugmentConfig or None
        With ``copies`` >= 1, each annotated recording (up to
        :data:`MAX_AUGMENTED_SECONDS` long) also gets that many augmented copies
        (:mod:`soundnet.augment`), mixed with the ``negatives`` recordings among other
        transforms; training draws its windows from a recording and its copies.
    label_column : str or None
        The column of Raven tables holding the label (default: the first of
        ``Annotation``, ``Species``, ``Label`` there is).

    Returns
    -------
    ExtractReport
        What was extracted, reused, skipped (no annotation) and what failed, with reasons.
    """
    config = config or FeatureConfig()
    jobs = check_jobs(jobs)
    out = Path(out)
    roots = [Path(p) for p in audio_paths]
    audio = find_audio(roots)
    matched = collect_annotations(audio, roots, annotations, label_column=label_column)
    target = choose_target([row for rows in matched.values() for row in rows], target, where=annotations_name(annotations))
    negative_roots = [Path(p) for p in negatives]
    negative_audio = find_audio(negative_roots) if negative_roots else []
    both = sorted(set(negative_audio) & set(audio))
    if both:
        raise UsageError(f"{both[0]}: given both as audio to annotate and in --negatives; give it once")
    read = [*with_sidecars(audio), *negative_audio, *([Path(annotations)] if annotations is not None else [])]
    refuse_overwrites([("--out", out)], read)
    report = ExtractReport(out, target, skipped=[p for p in audio if p not in matched])
    for path in report.skipped:
        log.warning("%s: no annotation, skipped", path)
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        old = read_json(manifest_path)
        if old.get("target") not in (None, target):
            raise SoundnetError(
                f"{out}: dataset was extracted for target {old.get('target')!r}, not {target!r}; use another --out"
            )
    (out / "files").mkdir(parents=True, exist_ok=True)

    annotated = [path for path in audio if path in matched]
    groups, grouped_by = file_groups(
        {p: relative_name(p, roots) for p in annotated}, {p: table_group(matched[p]) for p in annotated}, group_pattern
    )
    groups.update(negative_groups(negative_audio, negative_roots, group_pattern))
    negative_set = set(negative_audio)
    tasks: list[tuple] = [(path, matched[path], target, out, config) for path in annotated]
    tasks += [(path, [], target, out, config) for path in negative_audio]
    copies = augmentation.copies if augmentation is not None else 0
    from tqdm.contrib.logging import logging_redirect_tqdm

    # With a bar on screen, log messages go above it, not glued to it.
    redirect = logging_redirect_tqdm([logging.getLogger("soundnet")]) if progress else contextlib.nullcontext()
    entries: dict[tuple[Path, int], Entry] = {}
    # A cluster's workers have their own working folder: they get absolute paths, and the
    # results come back under the paths given.
    given = {path.resolve(): path for path in [*annotated, *negative_audio]} if scheduler is not None else {}

    def absolute(task: tuple) -> tuple:
        return (task[0].resolve(), task[1], task[2], task[3].resolve(), *task[4:]) if given else task

    def run(tasks: list[tuple], mapper) -> None:
        batch = run_batch(
            _extract_task, [absolute(t) for t in tasks], fail_fast=fail_fast, on_each=lambda: bar.update(1), mapper=mapper
        )
        for task, (entry, reused) in batch.done:
            path = given.get(task[0], task[0])
            entries[path, entry.copy] = dataclasses.replace(entry, group=groups[path], negative=path in negative_set)
            if entry.copy:
                report.augmented += 1
            else:
                (report.reused if reused else report.extracted).append(path)
        report.failures.extend(Failure(given.get(f.item[0], f.item[0]), f.message) for f in batch.failures)

    workers = Workers(
        jobs,
        scheduler=scheduler,
        tasks=max(len(tasks), copies * len(annotated)),
        warm=functools.partial(_warm_features, config),
    )
    with workers:
        bar = _progress(len(tasks) + copies * len(annotated), progress)  # after the fork: no bar thread in the workers
        try:
            with redirect, one_blas_thread():
                mapper = workers.mapper()
                run(tasks, mapper)
                if copies:  # the recordings that were read whole, and are short enough to hold in memory
                    done = [p for p in annotated if (p, 0) in entries]
                    short = [p for p in done if entries[p, 0].frames * config.frame_seconds <= MAX_AUGMENTED_SECONDS]
                    if len(short) < len(done):
                        log.warning(
                            "%d recording(s) longer than %g s are not augmented", len(done) - len(short), MAX_AUGMENTED_SECONDS
                        )
                    noise = tuple(p.resolve() for p in negative_audio) if given else tuple(negative_audio)
                    run(
                        [
                            (p, matched[p], target, out, config, k, augmentation, noise)
                            for p in short
                            for k in range(1, copies + 1)
                        ],
                        mapper,
                    )
        finally:
            bar.close()
    ordered = [entries[p, k] for p in [*audio, *negative_audio] for k in range(copies + 1) if (p, k) in entries]
    originals = [e for e in ordered if not e.copy]
    write_json(
        manifest_path,
        {
            "soundnet_version": __version__,
            "features": to_dict(config),
            "target": target,
            "counts": {
                "files": len(originals),
                "frames": sum(e.frames for e in originals),
                "positive_frames": sum(e.positive_frames for e in originals),
                "events": sum(e.events for e in originals),
                "negative_files": sum(e.negative for e in originals),
                "groups": len({e.group for e in originals}),
                "augmented_copies": len(ordered) - len(originals),
            },
            "augmentation": to_dict(augmentation) if copies else None,
            "groups": {"by": grouped_by, "pattern": group_pattern},
            "files": [dataclasses.asdict(e) for e in originals],
            "copies": [dataclasses.asdict(e) for e in ordered if e.copy],
        },
    )
    return report


def _warm_features(config: FeatureConfig) -> None:
    """Compute features once here: librosa's first call costs seconds of lazy imports and
    numba cache loads, and forked workers then start with it paid."""
    compute_features(np.zeros(config.n_fft, np.float32), config=config)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", file=sys.stderr, disable=not enabled, desc="extract")


@dataclass(frozen=True)
class Dataset:
    """A dataset folder, read back."""

    root: Path
    feature_config: FeatureConfig
    target: str
    entries: tuple[Entry, ...]
    groups_by: str = "file"  # how the files' groups were found (soundnet.groups.BY_PATTERN, ...)

    @classmethod
    def open(cls, root: Path) -> Dataset:
        root = Path(root)
        if not root.is_dir():
            raise SoundnetError(f"{root}: no such dataset folder")
        manifest = read_json(root / MANIFEST)
        try:
            features = from_dict(FeatureConfig, manifest["features"], f"{root / MANIFEST} features")
            entries = tuple(Entry(**e) for e in [*manifest["files"], *manifest.get("copies", [])])
            target = manifest["target"]
            groups_by = (manifest.get("groups") or {}).get("by", "file")
        except (KeyError, TypeError, AttributeError) as error:
            raise SoundnetError(f"{root / MANIFEST}: not a soundnet manifest ({error})") from None
        if not entries:
            raise SoundnetError(f"{root}: the dataset holds no file")
        return cls(root, features, target, entries, groups_by)

    def feature_rows(self, entry: Entry) -> NpyRows:
        return NpyRows(entry.features_path(self.root))

    def labels(self, entry: Entry) -> np.ndarray:
        return NpyRows(entry.labels_path(self.root)).read(0, entry.frames)

    def events(self, entry: Entry) -> list[Event]:
        """The target events of a file, named by its id (the reference for validation)."""
        meta = read_json(self.root / "files" / f"{entry.id}.json")
        return [Event(entry.id, on, off, self.target) for on, off in meta["events"]]
