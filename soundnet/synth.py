"""Synthetic training data: target events mixed into backgrounds at chosen EBRs.

Mixtures are made the DCASE 2017 task 2 way. Each mixture is an excerpt of a
background recording; with probability ``presence`` one target event is placed in it,
scaled so that its event-to-background ratio (EBR)

    20 * log10(rms(event) / rms(background under the event))

equals a value picked from a short list (DCASE used -6, 0 and +6 dB). Distractor
sounds (other labels) can be added the same way so that a detector learns what the
target is *not*. The mixtures are written as 16-bit WAV files with a DCASE TSV of
their annotations, and the same arguments and seed always give the same bytes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from soundnet.audio import audio_files, audio_info, error_reason, load_audio
from soundnet.errors import SoundnetError, UsageError, check_label
from soundnet.events import Event
from soundnet.guard import holds, refuse_overwrites
from soundnet.storage import write_atomic, write_text

log = logging.getLogger(__name__)

# An EBR is undefined over digital silence; events placed there are scaled as if the
# background were at -60 dBFS, loud enough to survive 16-bit quantisation even at
# a negative EBR.
RMS_FLOOR = 1e-3
PEAK_LIMIT = 0.99
DISTRACTOR_SLOTS = 2
DISTRACTOR_PROBABILITY = 0.5
ANNOTATIONS_NAME = "annotations.tsv"
ANNOTATIONS_HEADER = "filename\tonset\toffset\tevent_label\tgroup"


def synthesize(
    events_dir: Path,
    backgrounds_dir: Path,
    out_dir: Path,
    *,
    n: int = 100,
    duration: float = 10.0,
    ebrs: Sequence[float] = (-6.0, 0.0, 6.0),
    presence: float = 0.5,
    distractor_dirs: Sequence[Path] = (),
    sr: int = 16000,
    seed: int = 0,
    target_label: str | None = None,
    groups: int = 5,
) -> list[Event]:
    """Write ``n`` mixtures of target events over backgrounds, with their annotations.

    Parameters
    ----------
    events_dir : Path
        Folder of clips of the target sound, each at most ``duration`` seconds long,
        found by :func:`soundnet.audio.audio_files` (recursively, sorted, hidden
        names skipped, the extensions of ``AUDIO_EXTENSIONS``).
    backgrounds_dir : Path
        Folder (searched recursively) of background recordings of any length; one
        shorter than ``duration`` is looped.
    out_dir : Path
        Output folder, created if needed. Receives ``mixture_0000.wav``, ... (mono,
        16-bit PCM at ``sr``) and ``annotations.tsv``.
    n : int >= 1
        Number of mixtures.
    duration : float > 0
        Length of each mixture in seconds.
    ebrs : sequence of float, non-empty
        Event-to-background ratios in dB; each event gets one of them, uniformly.
    presence : float in [0, 1]
        Probability that a mixture holds a target event (at most one per mixture).
    distractor_dirs : sequence of Path
        Folders of other sounds, each labelled with its folder's name. Each mixture
        gets 0, 1 or 2 of them (each of two slots filled with probability 0.5).
    sr : int > 0
        Sample rate of the mixtures; clips at other rates are resampled (soxr HQ).
    seed : int >= 0
        Seed of the random choices. Mixture ``i`` depends only on the inputs, the
        seed and ``i``, so a smaller ``n`` gives a prefix of a larger one.
    target_label : str or None
        Label of the target events; defaults to the name of ``events_dir``.
    groups : int >= 1
        Folds of sources: the target clips, the backgrounds and (when there are
        enough) the distractor clips are dealt, after a seeded shuffle, into this many
        folds (fewer when there are fewer clips or backgrounds), and mixture ``i`` is
        made only from fold ``i mod groups``. The table's ``group`` column names it
        (``fold1``, ...), so validation by group (:mod:`soundnet.groups`) holds out
        sources the training never heard.

    Returns
    -------
    events : list of Event
        Every event placed (targets and distractors), by mixture then onset, with the
        times written to the annotations (seconds, rounded to 1 ms). ``filename`` is
        relative to ``out_dir``.

    Raises
    ------
    SoundnetError
        A bad argument, a missing folder or one without audio, an unreadable or
        silent clip, or an event clip longer than ``duration``.
    """
    _check_arguments(n=n, duration=duration, ebrs=ebrs, presence=presence, sr=sr, seed=seed)
    n_samples = round(duration * sr)
    if n_samples < 1:
        raise SoundnetError(f"duration must be at least one sample at sr={sr}. Received: duration={duration}")
    events_dir, backgrounds_dir, out_dir = Path(events_dir), Path(backgrounds_dir), Path(out_dir)
    label = target_label if target_label is not None else _folder_label(events_dir)
    _check_label(label, events_dir)

    targets = _ClipPool(events_dir, label=label, sr=sr, max_samples=n_samples)
    backgrounds = [_Source.open(path) for path in audio_files(backgrounds_dir)]
    distractors = []
    for folder in map(Path, distractor_dirs):
        distractor_label = _folder_label(folder)
        _check_label(distractor_label, folder)
        if distractor_label == label:
            raise SoundnetError(f"{folder}: distractor folder has the target label {label!r}")
        distractors.append(_ClipPool(folder, label=distractor_label, sr=sr, max_samples=n_samples))
    ebr_choices = [float(ebr) for ebr in ebrs]
    sources = [events_dir, backgrounds_dir, *map(Path, distractor_dirs)]
    refuse_overwrites([("--out", out_dir)], sources)  # the output folder holds no clip folder...
    for folder in sources:  # ...and lies inside none (its mixtures would become clips)
        if holds(folder, out_dir):
            raise UsageError(f"{out_dir}: --out lies inside {folder}, which synth reads clips from: choose another folder")

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SoundnetError(f"{out_dir}: cannot create folder ({error_reason(error)})") from None
    if groups < 1:
        raise SoundnetError(f"groups must be >= 1. Received: groups={groups}")
    folds = min(groups, len(targets.sources), len(backgrounds))
    if folds < groups:
        log.warning("%d fold(s) of sources, not %d: there are too few clips or backgrounds", folds, groups)
    fold_rng = np.random.default_rng([seed, 1])
    target_folds = _deal(targets.sources, folds, fold_rng)
    background_folds = _deal(backgrounds, folds, fold_rng)
    distractor_folds = [_deal(pool.sources, folds, fold_rng) if len(pool.sources) >= folds else None for pool in distractors]
    width = max(4, len(str(n - 1)))
    log.info(
        "synthesizing %d mixtures of %.3g s from %d %r clips over %d backgrounds into %s",
        n, duration, len(targets.sources), label, len(backgrounds), out_dir,
    )  # fmt: skip

    all_events: list[Event] = []
    rows: list[str] = [ANNOTATIONS_HEADER]
    last_ms = n_samples * 1000 // sr / 1000  # an offset rounded up must not pass the end of the file
    for i, child_seed in enumerate(np.random.SeedSequence(seed).spawn(n)):
        rng = np.random.default_rng(child_seed)
        name = f"mixture_{i:0{width}d}.wav"
        fold = i % folds
        fold_backgrounds = background_folds[fold]
        background = fold_backgrounds[rng.integers(len(fold_backgrounds))]
        mixture = _background_excerpt(background, n_samples=n_samples, sr=sr, rng=rng)
        placements: list[tuple[_ClipPool, _Source, int, float]] = []
        if rng.random() < presence:
            placements.append(_place(targets, target_folds[fold], n_samples=n_samples, ebrs=ebr_choices, rng=rng))
        for _ in range(DISTRACTOR_SLOTS if distractors else 0):
            if rng.random() < DISTRACTOR_PROBABILITY:
                k = int(rng.integers(len(distractors)))
                pool = distractors[k]
                sources = pool.sources if distractor_folds[k] is None else distractor_folds[k][fold]
                placements.append(_place(pool, sources, n_samples=n_samples, ebrs=ebr_choices, rng=rng))

        events = []
        bed = mixture.copy()  # EBRs are measured against the background alone
        for pool, source, start, ebr in placements:
            clip = pool.load(source)
            stop = start + len(clip)
            gain = 10.0 ** (ebr / 20.0) * _background_rms(bed[start:stop], name=name) / _rms(clip)
            mixture[start:stop] += gain * clip
            onset = round(start / sr, 3)
            offset = min(round(stop / sr, 3), last_ms)
            events.append(Event(name, onset, offset, pool.label))
            log.debug("%s: %s at %.3f-%.3f s, EBR %+.1f dB (%s)", name, pool.label, onset, offset, ebr, source.path)

        peak = float(np.max(np.abs(mixture)))
        if peak > PEAK_LIMIT:
            # One gain for everything keeps every EBR and every annotation as it was.
            mixture *= PEAK_LIMIT / peak
            log.debug("%s: scaled by %.3f to avoid clipping", name, PEAK_LIMIT / peak)
        write_atomic(
            out_dir / name,
            lambda tmp, y=mixture: sf.write(str(tmp), y, sr, subtype="PCM_16", format="WAV"),
        )

        events.sort()
        all_events += events
        group = f"fold{fold + 1}"
        rows += [f"{e.filename}\t{e.onset:.3f}\t{e.offset:.3f}\t{e.label}\t{group}" for e in events] or [f"{name}\t\t\t\t{group}"]

    text = "\n".join(rows) + "\n"
    write_text(out_dir / ANNOTATIONS_NAME, text)
    return all_events


def _check_arguments(*, n: int, duration: float, ebrs: Sequence[float], presence: float, sr: int, seed: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SoundnetError(f"n must be an integer >= 1. Received: n={n!r}")
    if not (math.isfinite(duration) and duration > 0):
        raise SoundnetError(f"duration must be a positive number of seconds. Received: duration={duration!r}")
    if len(ebrs) == 0:
        raise SoundnetError(f"ebrs must hold at least one value in dB. Received: ebrs={list(ebrs)!r}")
    if not all(math.isfinite(float(ebr)) for ebr in ebrs):
        raise SoundnetError(f"ebrs must be finite numbers of dB. Received: ebrs={list(ebrs)!r}")
    if not (0.0 <= presence <= 1.0):
        raise SoundnetError(f"presence must be a probability in [0, 1]. Received: presence={presence!r}")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr < 1:
        raise SoundnetError(f"sr must be a positive integer. Received: sr={sr!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SoundnetError(f"seed must be an integer >= 0. Received: seed={seed!r}")


def _folder_label(folder: Path) -> str:
    # resolve() so that "." or "sub/.." still name a folder
    return folder.resolve().name or str(folder)


def _check_label(label: str, folder: Path) -> None:
    check_label(label, f"{folder}: the folder names the label")
    if label != label.strip():
        raise SoundnetError(f"{folder}: label {label!r} cannot go in a TSV (edge spaces)")


@dataclass(frozen=True)
class _Source:
    """An audio file as its header describes it."""

    path: Path
    frames: int
    samplerate: int

    @classmethod
    def open(cls, path: Path) -> _Source:
        info = audio_info(path)
        return cls(path, int(info.frames), int(info.samplerate))

    def read(self, *, sr: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``start:stop`` (at the file's rate) as mono float64 at ``sr``, read and
        resampled the one way audio is (:func:`soundnet.audio.load_audio`)."""
        return load_audio(self.path, sample_rate=sr, start=start, stop=stop).astype(np.float64)


class _ClipPool:
    """The clips of one label, checked from their headers and read when first used."""

    def __init__(self, folder: Path, *, label: str, sr: int, max_samples: int) -> None:
        self.label = label
        self.sr = sr
        self.sources = [_Source.open(path) for path in audio_files(folder)]
        for source in self.sources:
            # exact in integers: frames / rate > max_samples / sr
            if source.frames * sr > max_samples * source.samplerate:
                raise SoundnetError(
                    f"{source.path}: clip of {source.frames / source.samplerate:.3f} s is longer than "
                    f"the mixture duration of {max_samples / sr:.3f} s"
                )
        self._cache: dict[Path, np.ndarray] = {}

    def load(self, source: _Source) -> np.ndarray:
        clip = self._cache.get(source.path)
        if clip is None:
            clip = source.read(sr=self.sr)
            if _rms(clip) == 0.0:
                raise SoundnetError(f"{source.path}: clip is silent, so it has no level to set an EBR with")
            self._cache[source.path] = clip
        return clip


def _deal(items: Sequence, folds: int, rng: np.random.Generator) -> list[list]:
    """``items`` shuffled and dealt into ``folds`` non-empty lists (``len(items) >= folds``)."""
    order = rng.permutation(len(items))
    return [[items[j] for j in sorted(order[k::folds])] for k in range(folds)]


def _place(
    pool: _ClipPool, sources: Sequence[_Source], *, n_samples: int, ebrs: list[float], rng: np.random.Generator
) -> tuple[_ClipPool, _Source, int, float]:
    """Draw a clip of ``sources`` (clips of ``pool``), a start where it fits whole, and an EBR."""
    source = sources[rng.integers(len(sources))]
    length = len(pool.load(source))
    start = int(rng.integers(n_samples - length + 1))
    ebr = ebrs[rng.integers(len(ebrs))]
    return pool, source, start, ebr


def _background_excerpt(source: _Source, *, n_samples: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``n_samples`` at ``sr`` from a random offset of ``source``, looped if it is too short.

    Returns
    -------
    excerpt : np.ndarray [shape=(n_samples,), dtype=float64]
    """
    needed = math.ceil(n_samples * source.samplerate / sr)  # frames at the file's rate
    if source.frames >= needed:
        start = int(rng.integers(source.frames - needed + 1))
        excerpt = source.read(sr=sr, start=start, stop=start + needed)
        if len(excerpt) < n_samples:  # resampling can round one sample short
            excerpt = np.pad(excerpt, (0, n_samples - len(excerpt)))
        return excerpt[:n_samples].copy()
    whole = source.read(sr=sr)
    if len(whole) == 0:
        raise SoundnetError(f"{source.path}: no audio samples")
    whole = np.roll(whole, -int(rng.integers(len(whole))))
    return np.tile(whole, math.ceil(n_samples / len(whole)))[:n_samples].copy()


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if len(y) else 0.0


def _background_rms(segment: np.ndarray, *, name: str) -> float:
    rms = _rms(segment)
    if rms < RMS_FLOOR:
        log.warning(
            "%s: background under an event is below %.0f dBFS; its EBR is set against that level",
            name, 20 * math.log10(RMS_FLOOR),
        )  # fmt: skip
        return RMS_FLOOR
    return rms
