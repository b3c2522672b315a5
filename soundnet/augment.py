"""Augmented copies of an annotated recording, with their events kept aligned.

:func:`augment` turns one mono recording and its target events into another take of
the same scene: another level, background, pitch, tempo, room, device or distance.
The events follow the audio: only the time stretch moves them (scaled by it), and only
it changes the length. Everything is a function of the arguments and the seed.

The chain, in the order a sound meets them on its way to a recording::

    pitch shift -> time stretch             the source sounds otherwise
    -> reverberation (or distance)          a room between source and microphone
    -> background noise                     other sounds at the microphone
    -> small speaker / cheap microphone     the device: band-pass and a little distortion
    -> equalisation -> gain -> clipping     the recording chain
    -> scaled down to a peak of 1 if louder (never clipped unless clipping was drawn)

Which library does what, and why:

- Pitch shift, time stretch, equalisation, band-pass, low-pass, distortion and clipping
  are audiomentations' (PitchShift, TimeStretch with Signalsmith Stretch, which keeps
  the events in place to 5 ms, SevenBandParametricEQ, HighPassFilter, LowPassFilter
  zero-phase, TanhDistortion, ClippingDistortion).
- Background noise is read with :func:`soundnet.audio.load_audio`, not
  AddBackgroundNoise's loader (``librosa.load``): this reads only the excerpt needed,
  resamples with soxr as extract does, opens names that are not UTF-8, refuses NaN
  samples and reports an unreadable file as a one-line SoundnetError; and the SNR is
  measured against the target events rather than the whole recording, so a quiet event
  in a loud recording is not buried below the drawn SNR.
- Reverberation uses impulse responses synthesised here (:func:`impulse_response`,
  exponentially decaying noise with the drawn RT60), not RoomSimulator: its
  pyroomacoustics ray tracer is seeded outside Python (the same seed gave other impulse
  responses) and missed the RT60 asked for (0.07 s and 0.39 s measured for 0.4 s), and
  the image-source model alone took over 5 minutes for one room. ApplyImpulseResponse
  only reads impulse responses from files, so the convolution is done here.

audiomentations draws from Python's ``random`` and numpy's global generator: while it
runs, both are seeded from ``seed`` and their earlier states are put back afterwards
(so :func:`augment` is not for threads that share those generators; extract runs
processes).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundnet.audio import audio_info, load_audio
from soundnet.config import AugmentConfig
from soundnet.errors import SoundnetError

log = logging.getLogger(__name__)

__all__ = ["augment", "augmentation_seed", "impulse_response"]

# Decibels of an RMS ratio -> amplitude gain.
_DB = 1.0 / 20.0
# The SNR of noise over digital silence is taken against this level (-60 dBFS).
_RMS_FLOOR = 1e-3
# Direct-to-reverberant ratios (dB): a room around a near source, and a far one.
_NEAR_DRR_DB = (0.0, 12.0)
_FAR_DRR_DB = (-6.0, 0.0)
# Distance's low-pass cutoff (Hz) and the small speaker's band edges (Hz).
_FAR_CUTOFF_HZ = (2000.0, 6000.0)
_SPEAKER_LOW_HZ = (250.0, 500.0)
_SPEAKER_HIGH_HZ = (3000.0, 5000.0)
_SPEAKER_DISTORTION = (0.05, 0.3)


def augmentation_seed(file_id: str, copy: int, seed: int) -> int:
    """The seed of augmented copy ``copy`` of the recording ``file_id``.

    The same in every process and Python version: a SHA-256 of the arguments, not
    ``hash()``, which is salted per process.

    Parameters
    ----------
    file_id : str
        The recording's dataset id; names that are not UTF-8 (surrogate escapes) work.
    copy : int >= 0
        Which copy of the recording.
    seed : int >= 0
        The run's seed (``AugmentConfig.seed``).

    Returns
    -------
    seed : int in [0, 2**64)
    """
    if copy < 0 or seed < 0:
        raise SoundnetError(f"copy and seed must be >= 0. Received: copy={copy}, seed={seed}")
    key = f"{seed}\0{copy}\0".encode() + file_id.encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


def impulse_response(rt60: float, *, drr_db: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: the direct sound, then a decaying noise tail.

    The tail is Gaussian noise under an envelope falling 60 dB in ``rt60`` seconds
    (``exp(-6.91 t / rt60)``), from 1 ms to ``rt60`` (its -60 dB point). The direct
    sound is sample 0 with gain 1, so convolving moves nothing in time.

    Parameters
    ----------
    rt60 : float > 0
        Reverberation time in seconds.
    drr_db : float
        Direct-to-reverberant energy ratio in dB (0: as much energy in the tail as in
        the direct sound; negative: a far source).
    sr : int > 0
        Sample rate in Hz.
    rng : np.random.Generator

    Returns
    -------
    h : np.ndarray [shape=(max(2, round(rt60 * sr)),), dtype=float64]
    """
    if not (0 < rt60 < math.inf and math.isfinite(drr_db) and sr > 0):
        raise SoundnetError(f"need rt60 > 0, a finite drr_db and sr > 0. Received: rt60={rt60}, drr_db={drr_db}, sr={sr}")
    length = max(2, round(rt60 * sr))
    start = min(length - 1, max(1, round(0.001 * sr)))
    t = np.arange(length - start) / sr
    tail = rng.standard_normal(len(t)) * np.exp(-6.91 * t / rt60)
    tail *= 10.0 ** (-drr_db / 20.0) / np.sqrt(np.sum(tail**2))  # tail energy 10 ** (-drr_db / 10)
    h = np.zeros(length)
    h[0] = 1.0
    h[start:] = tail
    return h


@dataclass(frozen=True)
class _Plan:
    """What one copy does: every draw is made up front, in a fixed order, so the
    choices of one transform never change with another's probability or the noise files."""

    gain_db: float | None
    noise: tuple[int, float, float] | None  # file index, SNR dB, offset fraction
    semitones: float | None
    rate: float | None
    eq: bool
    room: tuple[float, float] | None  # RT60 s, DRR dB
    speaker: tuple[float, float, float] | None  # high-pass Hz, low-pass Hz, distortion
    clipping_percent: int | None
    distance: tuple[float, float] | None  # attenuation dB, low-pass Hz
    library_seeds: tuple[int, int]  # Python's random, numpy's global generator


def _plan(config: AugmentConfig, rng: np.random.Generator, n_noise: int) -> _Plan:
    c = config
    u = rng.random(9)
    gain = rng.uniform(-c.gain_db, c.gain_db)
    noise = (int(rng.integers(max(1, n_noise))), rng.uniform(c.snr_db_min, c.snr_db_max), rng.random())
    semitones = rng.uniform(-c.pitch_semitones, c.pitch_semitones)
    rate = 1.0 + rng.uniform(-c.stretch, c.stretch)
    rt60 = rng.uniform(c.rt60_min, c.rt60_max)
    near_drr, far_drr = rng.uniform(*_NEAR_DRR_DB), rng.uniform(*_FAR_DRR_DB)
    speaker = (rng.uniform(*_SPEAKER_LOW_HZ), rng.uniform(*_SPEAKER_HIGH_HZ), rng.uniform(*_SPEAKER_DISTORTION))
    # ClippingDistortion clips int(percent / 2) % at each extreme: draw whole percents per side
    clipping = 2 * math.ceil(rng.random() * (c.clipping_percent // 2))
    distance = (rng.uniform(0.0, c.distance_db), rng.uniform(*_FAR_CUTOFF_HZ))
    seeds = (int(rng.integers(2**63)), int(rng.integers(2**32)))
    far = u[8] < c.distance_probability
    return _Plan(
        gain_db=gain if u[0] < c.gain_probability else None,
        noise=noise if u[1] < c.noise_probability and n_noise else None,
        semitones=semitones if u[2] < c.pitch_probability else None,
        rate=rate if u[3] < c.stretch_probability else None,
        eq=bool(u[4] < c.eq_probability),
        room=(rt60, far_drr if far else near_drr) if far or u[5] < c.reverb_probability else None,
        speaker=speaker if u[6] < c.small_speaker_probability else None,
        clipping_percent=clipping if u[7] < c.clipping_probability and clipping else None,
        distance=distance if far else None,
        library_seeds=seeds,
    )


#: Recordings shorter than this are returned as they are.
MIN_SECONDS = 0.1


def augment(
    y: np.ndarray,
    sr: int,
    events: Sequence[tuple[float, float]],
    *,
    config: AugmentConfig,
    seed: int | Sequence[int],
    noise: Sequence[Path] = (),
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """One augmented copy of a recording, and its events moved to match.

    Each transform of ``config`` applies with its probability, its values drawn from
    its range (see ``configs/default.yaml``); the chain is in the module docstring.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono recording, finite samples (converted to float32).
    sr : int > 0
        Its sample rate in Hz.
    events : sequence of (onset, offset)
        The target events in seconds, ``0 <= onset <= offset``.
    config : AugmentConfig
        Probabilities and ranges. ``copies == 0`` returns the input unchanged.
    seed : int >= 0 or sequence of int >= 0
        Seed of every draw (e.g. :func:`augmentation_seed`); the same seed gives the
        same bytes, whatever the state of Python's and numpy's global generators,
        which are left as they were.
    noise : sequence of Path
        Background or negative recordings (any format soundfile reads, any rate, mixed
        to mono). When noise is drawn, one of them is picked, a random excerpt as long
        as ``y`` is taken (a shorter file is looped) and added at an SNR drawn from
        ``[snr_db_min, snr_db_max]``: the RMS of ``y`` over its events (over all of
        ``y`` when it has none; -60 dBFS over digital silence) to the excerpt's RMS.
        Without files, no noise is mixed.

    Returns
    -------
    y : np.ndarray [shape=(m,), dtype=float32]
        The copy: finite, within [-1, 1]; ``m == n`` unless time-stretched (then
        ``m = round(n / rate)``, rate > 1 is faster).
    events : list of (onset, offset)
        The events in the copy's time (divided by the stretch rate, kept within it).

    Raises
    ------
    SoundnetError
        A bad argument, or a noise file that cannot be read.
    """
    y = _check(y, sr, events)
    events = [(float(on), float(off)) for on, off in events]
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as error:
        raise SoundnetError(f"seed must be an int >= 0 or a sequence of them. Received: seed={seed!r} ({error})") from None
    if config.copies == 0 or len(y) < MIN_SECONDS * sr:  # the filters need a few periods of signal
        return y.copy(), events
    plan = _plan(config, rng, len(noise))
    with _seeded_globals(*plan.library_seeds):
        y, events = _apply(plan, y, sr, events, config, [Path(p) for p in noise], rng)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 1.0:
        y = y.astype(np.float64) / peak
    return y.astype(np.float32), events


def _check(y: np.ndarray, sr: int, events: Sequence[tuple[float, float]]) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise SoundnetError(f"y must be a mono signal of shape (n,). Received: shape={y.shape}")
    if not np.issubdtype(y.dtype, np.floating) or not np.isfinite(y).all():
        raise SoundnetError(f"y must hold finite floating-point samples. Received: dtype={y.dtype}")
    if not (isinstance(sr, (int, np.integer)) and sr > 0):
        raise SoundnetError(f"sr must be a positive integer. Received: sr={sr!r}")
    for onset, offset in events:
        if not 0 <= onset <= offset < math.inf:
            raise SoundnetError(f"events need 0 <= onset <= offset, finite. Received: ({onset}, {offset})")
    return y.astype(np.float32)


@contextlib.contextmanager
def _seeded_globals(python_seed: int, numpy_seed: int) -> Iterator[None]:
    python_state, numpy_state = random.getstate(), np.random.get_state()
    random.seed(python_seed)
    np.random.seed(numpy_seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _apply(
    plan: _Plan,
    y: np.ndarray,
    sr: int,
    events: list[tuple[float, float]],
    config: AugmentConfig,
    noise: list[Path],
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    import audiomentations as am
    from scipy.signal import fftconvolve

    # The library's own draws (EQ bands, roll-offs) come from the seeded globals.
    if plan.semitones is not None:
        y = am.PitchShift(min_semitones=plan.semitones, max_semitones=plan.semitones, p=1.0)(y, sr)
    if plan.rate is not None:
        stretch = am.TimeStretch(min_rate=plan.rate, max_rate=plan.rate, leave_length_unchanged=False, p=1.0)
        y = stretch(y, sr)
        duration = len(y) / sr
        events = [(min(on / plan.rate, duration), min(off / plan.rate, duration)) for on, off in events]
    if plan.room is not None:
        rt60, drr_db = plan.room
        h = impulse_response(rt60, drr_db=drr_db, sr=sr, rng=rng)
        y = fftconvolve(y, h)[: len(y)].astype(np.float32)
    reference = _reference_rms(y, sr, events)
    if plan.distance is not None:
        attenuation_db, cutoff = plan.distance
        y = am.LowPassFilter(min_cutoff_freq=cutoff, max_cutoff_freq=cutoff, zero_phase=True, p=1.0)(y, sr)
        y = y * np.float32(10.0 ** (-attenuation_db * _DB))
    if plan.noise is not None:
        index, snr_db, offset = plan.noise
        excerpt = _noise_excerpt(noise[index], len(y), sr, offset)
        level = float(np.sqrt(np.mean(np.square(excerpt, dtype=np.float64))))
        if level > 0:
            y = y + (excerpt * (reference * 10.0 ** (-snr_db * _DB) / level)).astype(np.float32)
        else:
            log.warning("%s: digitally silent excerpt, no noise mixed", noise[index])
    if plan.speaker is not None:
        low, high, distortion = plan.speaker
        y = am.HighPassFilter(min_cutoff_freq=low, max_cutoff_freq=low, zero_phase=True, p=1.0)(y, sr)
        y = am.LowPassFilter(min_cutoff_freq=high, max_cutoff_freq=high, zero_phase=True, p=1.0)(y, sr)
        y = am.TanhDistortion(min_distortion=distortion, max_distortion=distortion, p=1.0)(y, sr)
    if plan.eq:
        y = am.SevenBandParametricEQ(min_gain_db=-config.eq_db, max_gain_db=config.eq_db, p=1.0)(y, sr)
    if plan.gain_db is not None:
        y = y * np.float32(10.0 ** (plan.gain_db * _DB))
    if plan.clipping_percent is not None:
        percent = plan.clipping_percent
        y = am.ClippingDistortion(min_percentile_threshold=percent, max_percentile_threshold=percent, p=1.0)(y, sr)
    if not np.isfinite(y).all():  # a filter gone unstable must not reach the features
        raise SoundnetError(f"augmentation produced non-finite samples ({plan})")
    return np.asarray(y, np.float32), events


def _reference_rms(y: np.ndarray, sr: int, events: list[tuple[float, float]]) -> float:
    """The level noise is mixed against: RMS over the events, else over all of ``y``."""
    inside = np.zeros(len(y), bool)
    for onset, offset in events:
        inside[round(onset * sr) : round(offset * sr)] = True
    part = y[inside] if inside.any() else y
    level = float(np.sqrt(np.mean(np.square(part, dtype=np.float64))))
    return level if level > 0 else _RMS_FLOOR


def _noise_excerpt(path: Path, n: int, sr: int, offset: float) -> np.ndarray:
    """``n`` samples of ``path`` at ``sr`` from ``offset`` (a fraction of the room left);
    a file shorter than that is looped."""
    info = audio_info(path)
    needed = math.ceil(n * info.samplerate / sr) + 1
    start = int(offset * max(0, info.frames - needed))
    excerpt = load_audio(path, sample_rate=sr, start=start, stop=start + needed)
    if len(excerpt) == 0:
        raise SoundnetError(f"{path}: no audio samples")
    return np.resize(excerpt, n)
