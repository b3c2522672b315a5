"""Build soundnet's bundled default detector: smoke and CO alarms, from synthetic audio.

Usage::

    python scripts/build_default_model.py --work build/alarm [--seed 0] [--install]

Nothing is downloaded. Every sound is made here by the pure-numpy generators below
(each takes its data first, then keyword options, and draws from the
``numpy.random.Generator`` it is given; there is no module-level randomness), so the
same ``--seed`` gives the same clips, mixtures and examples, byte for byte.

What is built
-------------
``WORK/clips/`` holds isolated clips, one folder per label:

* ``smoke_alarm`` (the target):
  - ISO 8201 temporal-three (T3) smoke alarms: three 0.5 s beeps 0.5 s apart, then
    1.5 s of silence (timing within +-7 %), one or two cycles per clip, from a piezo
    sounder at 2.8-3.6 kHz (a sine with some 2nd/3rd harmonic, slight detuning and
    drift, a random amplitude envelope) or from a newer low-frequency sounder (a
    520 Hz square wave) in the same T3 pattern;
  - temporal-four (T4) CO alarms: four 0.1 s beeps 0.1 s apart at 3.1-3.4 kHz (one
    group per clip; the 5 s pause that separates groups in a sounding CO alarm lies
    between events, never inside one);
  - about half of them through a random simple room response (an exponentially
    decaying noise impulse response, RT60 0.15-0.8 s).
* ``backgrounds`` (no label): white, pink and brown noise, mains hum (50/60 Hz with
  harmonics), speech-like babble (glottal pulse trains at 90-250 Hz with random pitch
  contours through four formant resonators, amplitude-modulated at syllable rate),
  music-like textures (random notes of harmonic tones with ADSR envelopes),
  clicks and knocks, and near-silence; 20-40 s each at -50 to -15 dBFS RMS, often
  with a second, quieter kind mixed in.
* distractors, which teach the detector what is *not* an alarm: ``beep`` (single
  appliance beeps of 0.1-0.3 s at 0.8-2.5 kHz), ``ring`` (telephone rings: two
  tones at 400-480 Hz, alternated or together, in 0.4-2 s bursts) and ``whistle``
  (sine glides of at least a third of an octave, 0.8-3.8 kHz, with vibrato).

Labelling decision
------------------
**An alarm clip is one event from the onset of its first beep to the offset of its
last beep.** The silences *inside* a T3 cycle (and between the two cycles of a
two-cycle clip) belong to the event: the whole pattern is "the alarm sounding". Each
clip starts at its first beep's onset and ends at its last beep's offset (a room
response's tail is faded out there), so ``soundnet synth``'s annotation of a placed
clip is exactly that event. A T4 event is one group of four beeps (0.7 s).

Pipeline
--------
The clips feed the real command line of the ``soundnet`` installed beside this
Python: ``synth`` (training mixtures; tuning mixtures from the same clips with another
seed; a held-out set from freshly generated clips with other seeds), ``extract``,
``train`` (with a small config written to ``WORK/train.yaml``, sized for about 15
minutes on 2 cores) and ``evaluate`` on the held-out set (``WORK/heldout.json``).
Between training and evaluation the post-processing is re-tuned on the tuning
mixtures with soundnet's own search, but with merge gaps up to 2 s (``soundnet train``
stops at 0.5 s): under the labelling decision above a sounding T3 alarm is one event
across its 1.5 s inter-cycle silence, longer than the network's 1 s window can bridge.
With ``--install`` the run folder (all but its history and log) is copied to
``soundnet/models/default/``, its card extended with a ``description`` and a
``heldout`` section (the held-out sed_eval figures and the rebuild command).

The script also writes ``examples/smoke_alarm.wav`` (a kitchen-like scene: babble,
mains hum, appliance beeps and one T3 alarm sounding twice, from seeds never used for
training) and its Audacity label file ``examples/smoke_alarm.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

SR = 16000
TARGET = "smoke_alarm"
REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "soundnet" / "models" / "default"
BUNDLE_LIMIT = 1_000_000  # bytes
NOT_BUNDLED = {"history.csv", "train.log"}

# Random streams: each clip draws from default_rng([seed, stream, kind, index]).
STREAM_TRAIN, STREAM_TEST, STREAM_EXAMPLE = 1, 2, 3
TEST_SYNTH_OFFSET = 1000  # held-out mixtures use synth seed = seed + this
TUNE_SYNTH_OFFSET = 2000  # post-processing tuning mixtures (training clips) use seed + this

DESCRIPTION = (
    "Detects smoke and CO alarms sounding: the ISO 8201 temporal-three pattern (three 0.5 s beeps "
    "0.5 s apart, then 1.5 s silence) from piezo sounders at 2.8-3.6 kHz or 520 Hz square-wave "
    "sounders, and the CO temporal-four pattern (four 0.1 s beeps 0.1 s apart) at 3.1-3.4 kHz. "
    "One event runs from the first beep's onset to the last beep's offset of a sounding pattern. "
    "Trained only on synthetic audio (scripts/build_default_model.py): it is not trained on, and "
    "not meant for, other alarms (sirens, car and burglar alarms, timers, low-battery chirps), "
    "single beeps, rings or whistles, and acoustic conditions not simulated (real rooms and "
    "microphones, distance, heavy reverberation, clipping, compression). Check it on your own "
    "recordings before relying on it; it is not a life-safety device."
)


# ---------------------------------------------------------------------------
# Small signal helpers


def db(value: float) -> float:
    """Amplitude gain of ``value`` decibels."""
    return float(10.0 ** (value / 20.0))


def rms(y: np.ndarray) -> float:
    """Root mean square of ``y`` (0 for an empty array)."""
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if len(y) else 0.0


def set_level(y: np.ndarray, *, dbfs: float) -> np.ndarray:
    """``y`` scaled to an RMS of ``dbfs`` decibels re full scale."""
    level = rms(y)
    return y if level == 0.0 else y * (db(dbfs) / level)


def slow_noise(n: int, *, sr: int = SR, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random curve in about [-1, 1]: uniform values at ``rate`` knots per
    second, joined by cosine interpolation. Shape ``(n,)``."""
    knots = max(2, int(np.ceil(n / sr * rate)) + 2)
    values = rng.uniform(-1.0, 1.0, knots)
    position = np.arange(n) / sr * rate
    i = np.minimum(position.astype(np.int64), knots - 2)
    frac = position - i
    w = 0.5 - 0.5 * np.cos(np.pi * frac)
    return values[i] * (1 - w) + values[i + 1] * w


def ramp_envelope(n: int, *, sr: int = SR, attack: float, release: float) -> np.ndarray:
    """A flat envelope of ``n`` samples with raised-cosine attack and release (seconds)."""
    env = np.ones(n)
    a = min(n // 2, max(1, int(attack * sr)))
    r = min(n - a, max(1, int(release * sr)))
    env[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
    env[n - r :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, r + 1) / r)
    return env


def adsr(n: int, *, sr: int = SR, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """An attack-decay-sustain-release envelope of ``n`` samples; the release is the
    last ``release`` seconds of the note (shortened to fit)."""
    a = min(n, max(1, int(attack * sr)))
    d = min(n - a, max(1, int(decay * sr)))
    r = min(n - a - d, max(1, int(release * sr)))
    s = n - a - d - r
    return np.concatenate(
        [
            np.linspace(0.0, 1.0, a, endpoint=False),
            np.linspace(1.0, sustain, d, endpoint=False),
            np.full(s, sustain),
            np.linspace(sustain, 0.0, r),
        ]
    )


def fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Linear convolution of ``x`` and ``h`` through the FFT (full length)."""
    n = len(x) + len(h) - 1
    size = 1 << int(np.ceil(np.log2(max(n, 2))))
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]


def spectral_shape(x: np.ndarray, *, gain) -> np.ndarray:
    """``x`` filtered by the zero-phase magnitude response ``gain(frequency_in_hz)``."""
    size = 1 << int(np.ceil(np.log2(max(len(x), 2))))  # a fast FFT length; the zero padding is cut off
    spectrum = np.fft.rfft(x, size)
    return np.fft.irfft(spectrum * gain(np.fft.rfftfreq(size, 1.0 / SR)), size)[: len(x)]


def time_varying_filter(x: np.ndarray, *, gain, sr: int = SR, n_fft: int = 512) -> np.ndarray:
    """``x`` filtered by a magnitude response that changes over time.

    Short-time Fourier overlap-add with sqrt-Hann windows at 50 % overlap (which
    reconstruct exactly when the gain is 1). ``gain(times, freqs)`` gets the frame
    centre times ``(frames,)`` in seconds and bin frequencies ``(bins,)`` in Hz and
    returns gains ``(frames, bins)``. Good for resonances whose impulse responses
    are much shorter than ``n_fft`` samples.
    """
    hop = n_fft // 2
    n = len(x)
    frames = int(np.ceil((n + hop) / hop)) + 1
    padded = np.zeros((frames + 1) * hop)
    padded[hop : hop + n] = x
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft))
    starts = np.arange(frames) * hop
    blocks = padded[starts[:, None] + np.arange(n_fft)] * window
    times = (starts + n_fft / 2 - hop) / sr
    spectra = np.fft.rfft(blocks, axis=1) * gain(times, np.fft.rfftfreq(n_fft, 1.0 / sr))
    blocks = np.fft.irfft(spectra, n_fft, axis=1) * window
    out = np.zeros_like(padded)
    for parity in (0, 1):  # frames of one parity do not overlap: add them as one strip
        strip = blocks[parity::2].ravel()
        out[parity * hop : parity * hop + len(strip)] += strip[: len(out) - parity * hop]
    return out[hop : hop + n]


def resonance(freqs: np.ndarray, *, centre, bandwidth) -> np.ndarray:
    """Magnitude response of a two-pole resonator (unit gain at 0 Hz), broadcast over
    ``freqs`` and the arrays ``centre`` and ``bandwidth`` (Hz)."""
    ratio = freqs / centre
    return 1.0 / np.sqrt((1.0 - ratio**2) ** 2 + (freqs * bandwidth / centre**2) ** 2)


# ---------------------------------------------------------------------------
# Alarm sounds (the target)


def piezo_beep(duration: float, *, frequency: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """One piezo beep: a sine with a little 2nd and 3rd harmonic (below Nyquist), slight
    frequency drift and wobble, and a random attack, release and amplitude ripple."""
    n = int(round(duration * sr))
    wobble = rng.uniform(0.0005, 0.004) * slow_noise(n, sr=sr, rate=rng.uniform(3, 20), rng=rng)
    chirp = rng.uniform(-0.004, 0.004) * np.linspace(-1, 1, n)
    phase = 2 * np.pi * np.cumsum(frequency * (1 + wobble + chirp)) / sr + rng.uniform(0, 2 * np.pi)
    y = np.sin(phase)
    for k, low, high in ((2, -36, -12), (3, -40, -18)):
        if k * frequency < 0.47 * sr:
            y += db(rng.uniform(low, high)) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    ripple = 1 + rng.uniform(0, 0.08) * slow_noise(n, sr=sr, rate=rng.uniform(5, 40), rng=rng)
    env = ramp_envelope(n, sr=sr, attack=rng.uniform(0.002, 0.02), release=rng.uniform(0.003, 0.03))
    return y * ripple * env


def square_beep(duration: float, *, frequency: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """One beep of a low-frequency (520 Hz class) sounder: a band-limited square wave
    (odd harmonics, 1/k) with a random high-frequency tilt of the loudspeaker."""
    n = int(round(duration * sr))
    drift = rng.uniform(0.0005, 0.003) * slow_noise(n, sr=sr, rate=rng.uniform(2, 10), rng=rng)
    phase = 2 * np.pi * np.cumsum(frequency * (1 + drift)) / sr + rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(0.0, 0.8)
    y = np.zeros(n)
    for k in range(1, 200, 2):
        if k * frequency >= 0.47 * sr:
            break
        y += np.sin(k * phase) / k ** (1.0 + tilt)
    env = ramp_envelope(n, sr=sr, attack=rng.uniform(0.002, 0.015), release=rng.uniform(0.003, 0.02))
    return y * env


def pattern(beeps: list[np.ndarray], onsets: list[float], *, sr: int = SR) -> np.ndarray:
    """Beeps laid at their onsets (seconds); the result ends at the last beep's end."""
    starts = [int(round(t * sr)) for t in onsets]
    y = np.zeros(max(s + len(b) for s, b in zip(starts, beeps, strict=True)))
    for s, b in zip(starts, beeps, strict=True):
        y[s : s + len(b)] += b
    return y


def room_response(y: np.ndarray, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """``y`` in a random simple room: the direct sound plus an exponentially decaying
    noise tail (RT60 0.15-0.8 s, direct-to-reverberant ratio -3 to +12 dB, a few ms of
    pre-delay, duller with time). Same length as ``y``; the tail past the end is cut."""
    rt60 = rng.uniform(0.15, 0.8)
    length = int(min(rt60, 0.6) * sr)
    t = np.arange(length) / sr
    tail = rng.standard_normal(length) * np.exp(-6.91 * t / rt60)
    tail = spectral_shape(tail, gain=lambda f: 1.0 / np.sqrt(1.0 + (f / rng.uniform(2500, 7000)) ** 2))
    tail *= db(-rng.uniform(-3, 12)) / np.sqrt(np.sum(tail**2))
    delay = int(rng.uniform(0.002, 0.012) * sr)
    h = np.zeros(delay + length)
    h[0] = 1.0
    h[delay:] += tail
    return fft_convolve(y, h)[: len(y)]


def alarm_clip(
    rng: np.random.Generator,
    *,
    kind: str | None = None,
    cycles: int | None = None,
    frequency: float | None = None,
    room: bool | None = None,
    sr: int = SR,
) -> tuple[np.ndarray, dict]:
    """One alarm event: a T3 piezo, T3 520 Hz or T4 CO pattern, from its first beep's
    onset to its last beep's offset.

    Parameters
    ----------
    rng : numpy.random.Generator
    kind : {"t3_piezo", "t3_520", "t4_co"} or None
        None draws one (55 %, 20 %, 25 %).
    cycles : int or None
        T3 cycles (None: 1 or 2, 60/40); a T4 clip is always one group.
    frequency : float or None
        Sounder frequency in Hz (None: drawn for the kind).
    room : bool or None
        Apply a random room response (None: half the time).

    Returns
    -------
    clip : np.ndarray [shape=(n,), float64], peak 0.5
    info : dict
        kind, frequency, cycles, room (bool), duration.
    """
    if kind is None:
        kind = str(rng.choice(["t3_piezo", "t3_520", "t4_co"], p=[0.55, 0.20, 0.25]))
    scale = rng.uniform(0.93, 1.07)  # ISO 8201 allows +-10 % on each interval
    if kind == "t4_co":
        drawn = rng.uniform(3100, 3400)
        cycles, on, off, pause = 1, 0.1 * scale, 0.1 * scale, 0.0
        per_cycle = 4
    elif kind in ("t3_piezo", "t3_520"):
        drawn = rng.uniform(2800, 3600) if kind == "t3_piezo" else 520 * rng.uniform(0.98, 1.02)
        drawn_cycles = int(rng.choice([1, 2], p=[0.6, 0.4]))
        cycles = drawn_cycles if cycles is None else cycles
        on, off, pause = 0.5 * scale, 0.5 * scale, 1.5 * scale
        per_cycle = 3
    else:
        raise ValueError(f"unknown alarm kind {kind!r}")
    frequency = drawn if frequency is None else frequency
    onsets, beeps = [], []
    for c in range(cycles):
        cycle_start = c * (per_cycle * on + (per_cycle - 1) * off + pause)
        for b in range(per_cycle):
            jitter = rng.uniform(-0.01, 0.01) * on if (c, b) != (0, 0) else 0.0
            onsets.append(cycle_start + b * (on + off) + jitter)
            detune = frequency * (1 + rng.uniform(-0.003, 0.003))
            length = on * rng.uniform(0.98, 1.02)
            if kind == "t3_520":
                beep = square_beep(length, frequency=detune, rng=rng, sr=sr)
            else:
                beep = piezo_beep(length, frequency=detune, rng=rng, sr=sr)
            beeps.append(beep * db(rng.uniform(-1.5, 1.5)))
    y = pattern(beeps, onsets, sr=sr)
    drawn_room = bool(rng.random() < 0.5)
    room = drawn_room if room is None else room
    if room:
        y = room_response(y, rng=rng, sr=sr)
        fade = min(len(y), int(0.015 * sr))
        y[-fade:] *= np.linspace(1.0, 0.0, fade)
    # a slow level drift across the clip (the sounder's battery, a door, a listener moving)
    y *= 1 + rng.uniform(0, 0.25) * slow_noise(len(y), sr=sr, rate=0.5, rng=rng)
    y *= 0.5 / np.max(np.abs(y))
    return y, {"kind": kind, "frequency": round(float(frequency), 1), "cycles": cycles, "room": room, "duration": len(y) / sr}


# ---------------------------------------------------------------------------
# Backgrounds


def colored_noise(n: int, *, exponent: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Gaussian noise with power spectrum 1/f**exponent (0 white, 1 pink, 2 brown),
    flat below 20 Hz, unit RMS."""
    low = 20.0
    y = spectral_shape(rng.standard_normal(n), gain=lambda f: np.maximum(f, low) ** (-exponent / 2))
    y -= y.mean()
    return y / rms(y)


def mains_hum(n: int, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and harmonics up to about 1.5 kHz (odd ones stronger, as
    in transformer buzz), slowly drifting in pitch and level, over faint noise. Unit RMS."""
    mains = float(rng.choice([50.0, 60.0])) * (1 + rng.uniform(-0.004, 0.004))
    drift = 1 + 0.002 * slow_noise(n, sr=sr, rate=0.2, rng=rng)
    phase = 2 * np.pi * mains * np.cumsum(drift) / sr
    buzz = rng.uniform(0, 1)  # 0: mostly fundamental, 1: rich odd harmonics
    y = np.zeros(n)
    for k in range(1, int(1500 / mains) + 1):
        level = -rng.uniform(0, 6) - (3 + 12 * (1 - buzz)) * np.log2(k) * (1.0 if k % 2 else 1.6)
        y += db(level) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    y *= 1 + 0.15 * slow_noise(n, sr=sr, rate=0.3, rng=rng)
    y /= rms(y)
    return y + db(-35) * colored_noise(n, exponent=1, rng=rng, sr=sr)


def babble(n: int, *, rng: np.random.Generator, talkers: int | None = None, sr: int = SR) -> np.ndarray:
    """Speech-like babble of 1-6 talkers, unit RMS.

    Each talker: a glottal pulse train at 90-250 Hz with a random pitch contour and
    declination, tilted -12 dB/octave, through four formant resonators whose
    frequencies move from syllable to syllable (vowel-like targets), plus short
    fricative noise bursts; the sum is amplitude-modulated at syllable rate (3-7 Hz)
    with pauses between phrases.
    """
    talkers = int(rng.integers(1, 7)) if talkers is None else talkers
    total = np.zeros(n)
    for _ in range(talkers):
        total += _talker(n, rng=rng, sr=sr) * db(rng.uniform(-8, 0))
    return total / rms(total)


def _talker(n: int, *, rng: np.random.Generator, sr: int) -> np.ndarray:
    """One babble voice (see :func:`babble`); unit RMS."""
    f0 = rng.uniform(90, 250)
    seconds = n / sr
    t = np.arange(n) / sr
    contour = f0 * 2 ** (0.25 * slow_noise(n, sr=sr, rate=rng.uniform(1.5, 4), rng=rng))
    # syllables and phrases: amplitude envelope and formant targets per syllable
    centres, formants, env = [], [], np.zeros(n)
    fric = np.zeros(n)
    clock = rng.uniform(0, 0.5)
    while clock < seconds:
        phrase_end = clock + rng.uniform(0.8, 3.5)
        while clock < min(phrase_end, seconds):
            length = rng.uniform(0.12, 0.33)
            a, b = int(clock * sr), min(n, int((clock + length) * sr))
            if b > a:
                env[a:b] = np.maximum(env[a:b], np.sin(np.pi * np.linspace(0, 1, b - a)) ** 0.7 * rng.uniform(0.4, 1))
                if rng.random() < 0.3:  # a fricative onset
                    c = min(n, a + int(rng.uniform(0.03, 0.08) * sr))
                    fric[a:c] += rng.uniform(0.1, 0.4) * np.hanning(c - a)
            centres.append(clock + length / 2)
            formants.append([rng.uniform(300, 850), rng.uniform(850, 2300), rng.uniform(2300, 3100), rng.uniform(3300, 4200)])
            clock += length + rng.uniform(0.0, 0.08)
        clock += rng.uniform(0.2, 0.9)  # pause between phrases
    centres.append(seconds + 1)
    formants.append(formants[-1] if formants else [500, 1500, 2500, 3500])
    # declining pitch over each stretch, voiced only while the envelope is up
    contour *= 1 - 0.08 * ((t * rng.uniform(0.3, 0.6)) % 1)
    phase = np.cumsum(contour) / sr
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal period
    source = spectral_shape(pulses, gain=lambda f: 1.0 / (1.0 + (f / 120.0) ** 2))
    source += db(-30) * rng.standard_normal(n)  # aspiration
    centres_a = np.asarray(centres)
    formants_a = np.asarray(formants)
    bandwidths = np.array([80.0, 110.0, 160.0, 220.0]) * rng.uniform(0.8, 1.4)

    def vowel_gain(times: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        gain = np.ones((len(times), len(freqs)))
        for k in range(4):
            centre = np.interp(times, centres_a, formants_a[:, k])[:, None]
            gain *= resonance(freqs[None, :], centre=centre, bandwidth=bandwidths[k])
        return gain * (freqs[None, :] / 1000.0 + 0.1)  # lip radiation

    voiced = time_varying_filter(source, gain=vowel_gain, sr=sr)
    voiced /= rms(voiced) + 1e-12
    hiss = spectral_shape(rng.standard_normal(n), gain=lambda f: (f > rng.uniform(2500, 4500)) * 1.0)
    hiss /= rms(hiss)
    y = voiced * env + hiss * fric
    return y / (rms(y) + 1e-12)


def music(n: int, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A music-like texture: 1-3 voices of random notes from a scale (110 Hz-1 kHz
    fundamentals) on a beat grid, harmonic tones with random spectra, ADSR envelopes
    and vibrato. Unit RMS."""
    y = np.zeros(n)
    root = rng.integers(45, 58)
    scale = np.array([0, 2, 4, 5, 7, 9, 11]) if rng.random() < 0.5 else np.array([0, 2, 3, 5, 7, 8, 10])
    beat = rng.uniform(0.18, 0.6)
    for voice in range(int(rng.integers(1, 4))):
        octave = 12 * voice
        clock = 0.0
        harmonics = int(rng.integers(3, 13))
        rolloff = rng.uniform(0.7, 2.0)
        level = db(rng.uniform(-10, 0))
        while clock < n / sr:
            length = beat * int(rng.choice([1, 1, 2, 2, 3, 4]))
            if rng.random() < 0.85:
                note = root + octave + scale[rng.integers(len(scale))] + 12 * int(rng.integers(0, 2))
                freq = 440.0 * 2 ** ((note - 69) / 12)
                m = min(int(length * rng.uniform(0.6, 1.1) * sr), n - int(clock * sr))
                if m > 8:
                    tt = np.arange(m) / sr
                    vib = 1 + 0.004 * np.sin(2 * np.pi * rng.uniform(4, 7) * tt) * (rng.random() < 0.5)
                    phase = 2 * np.pi * freq * np.cumsum(vib) / sr
                    tone = sum(
                        np.sin(k * phase + rng.uniform(0, 6.3)) / k**rolloff
                        for k in range(1, harmonics + 1)
                        if k * freq < 0.45 * sr
                    )
                    env = adsr(
                        m,
                        sr=sr,
                        attack=rng.uniform(0.005, 0.08),
                        decay=rng.uniform(0.05, 0.3),
                        sustain=rng.uniform(0.2, 0.8),
                        release=rng.uniform(0.05, 0.4),
                    )
                    start = int(clock * sr)
                    y[start : start + m] += level * tone * env
            clock += length
    y += db(-40) * colored_noise(n, exponent=1, rng=rng, sr=sr)
    return y / rms(y)


def clicks(n: int, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Clicks, ticks and knocks: short noise bursts and damped resonances (1-50 ms) at a
    Poisson rate of 0.3-5 per second, levels over 20 dB, over a faint noise floor. Unit RMS."""
    y = db(-30) * colored_noise(n, exponent=rng.uniform(0, 2), rng=rng, sr=sr)
    rate = rng.uniform(0.3, 5.0)
    count = int(rng.poisson(rate * n / sr))
    for start in np.sort(rng.integers(0, n, count)):
        decay = rng.uniform(0.001, 0.05)
        m = min(n - start, int(5 * decay * sr) + 1)
        t = np.arange(m) / sr
        if rng.random() < 0.5:
            burst = rng.standard_normal(m)
        else:
            burst = np.sin(2 * np.pi * rng.uniform(150, 4000) * t + rng.uniform(0, 6.3))
        y[start : start + m] += db(rng.uniform(-20, 0)) * 8 * burst * np.exp(-t / decay)
    return y / rms(y)


def near_silence(n: int, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A quiet room: faint pink-ish noise (set to a very low level by the caller). Unit RMS."""
    return colored_noise(n, exponent=rng.uniform(0.5, 1.5), rng=rng, sr=sr)


BACKGROUND_KINDS = {
    "white": lambda n, rng: colored_noise(n, exponent=0.0, rng=rng),
    "pink": lambda n, rng: colored_noise(n, exponent=1.0, rng=rng),
    "brown": lambda n, rng: colored_noise(n, exponent=2.0, rng=rng),
    "hum": lambda n, rng: mains_hum(n, rng=rng),
    "babble": lambda n, rng: babble(n, rng=rng),
    "music": lambda n, rng: music(n, rng=rng),
    "clicks": lambda n, rng: clicks(n, rng=rng),
    "silence": lambda n, rng: near_silence(n, rng=rng),
}


def background_clip(rng: np.random.Generator, *, kind: str | None = None, sr: int = SR) -> tuple[np.ndarray, dict]:
    """A 20-40 s background: one kind, with (half the time) a second kind 6-20 dB
    below it, at -50 to -15 dBFS RMS (near-silence at -50 to -42 dBFS).

    Returns the clip and a dict describing it (kinds, level).
    """
    kinds = list(BACKGROUND_KINDS)
    kind = kind or kinds[int(rng.integers(len(kinds)))]
    n = int(rng.uniform(20, 40) * sr)
    y = BACKGROUND_KINDS[kind](n, rng)
    second = None
    if kind != "silence" and rng.random() < 0.5:
        second = [k for k in kinds if k not in (kind, "silence")][int(rng.integers(len(kinds) - 2))]
        y = y + db(-rng.uniform(6, 20)) * BACKGROUND_KINDS[second](n, rng)
    level = rng.uniform(-50, -42) if kind == "silence" else rng.uniform(-50, -15)
    y = set_level(y, dbfs=level)
    peak = float(np.max(np.abs(y)))
    if peak > 0.9:  # loud clicks: keep the peaks, lower the level
        y *= 0.9 / peak
        level += 20 * np.log10(0.9 / peak)
    return y, {"kind": kind, "second": second, "dbfs": round(float(level), 1), "duration": n / sr}


# ---------------------------------------------------------------------------
# Distractors


def appliance_beep(rng: np.random.Generator, *, sr: int = SR) -> np.ndarray:
    """A single appliance beep (microwave, oven, washing machine): 0.1-0.3 s at
    0.8-2.5 kHz, a sine or a buzzy tone, sometimes in a room. Peak 0.5."""
    duration = rng.uniform(0.1, 0.3)
    frequency = rng.uniform(800, 2500)
    if rng.random() < 0.6:
        y = piezo_beep(duration, frequency=frequency, rng=rng, sr=sr)
    else:
        y = square_beep(duration, frequency=frequency, rng=rng, sr=sr)
    if rng.random() < 0.4:
        y = room_response(y, rng=rng, sr=sr)
    return 0.5 * y / np.max(np.abs(y))


def phone_ring(rng: np.random.Generator, *, sr: int = SR) -> np.ndarray:
    """A telephone ring: two tones at 400-480 Hz, either alternated at 15-25 Hz (a
    trill) or sounding together, in one continuous 0.8-2 s burst or a UK-style
    double burst (0.4 s on, 0.2 s off, 0.4 s on). Peak 0.5."""
    low = rng.uniform(400, 440)
    high = min(480.0, low + rng.uniform(25, 60))
    if rng.random() < 0.5:
        segments = [(0.0, rng.uniform(0.8, 2.0))]
    else:
        on = rng.uniform(0.35, 0.45)
        segments = [(0.0, on), (on + rng.uniform(0.18, 0.25), on)]
    trill = rng.random() < 0.5
    rate = rng.uniform(15, 25)
    out = []
    for start, length in segments:
        n = int(length * sr)
        t = np.arange(n) / sr
        a = np.sin(2 * np.pi * low * t + rng.uniform(0, 6.3))
        b = np.sin(2 * np.pi * high * t + rng.uniform(0, 6.3))
        if trill:
            switch = (np.sin(2 * np.pi * rate * t) > 0).astype(float)
            switch = spectral_shape(switch, gain=lambda f: 1.0 / (1.0 + (f / 300.0) ** 2))
            tone = a * switch + b * (1 - switch)
        else:
            tone = a + b
        tone = tone + db(rng.uniform(-30, -15)) * np.sign(tone)  # a little distortion
        out.append((start, tone * ramp_envelope(n, sr=sr, attack=0.01, release=0.02)))
    y = pattern([seg for _, seg in out], [start for start, _ in out], sr=sr)
    return 0.5 * y / np.max(np.abs(y))


def whistle(rng: np.random.Generator, *, sr: int = SR) -> np.ndarray:
    """A whistle or kettle: a sine gliding at least a third of an octave (up, down or
    up-and-down) between 0.8 and 3.8 kHz over 0.3-2.5 s, with vibrato and breath
    noise. Peak 0.5."""
    duration = rng.uniform(0.3, 2.5)
    n = int(duration * sr)
    start = rng.uniform(800, 3000)
    octaves = rng.uniform(0.33, 1.2) * rng.choice([-1, 1])
    end = float(np.clip(start * 2**octaves, 800, 3800))
    if abs(np.log2(end / start)) < 0.33:  # clipped: glide the other way
        end = start * 2 ** (-np.sign(octaves) * 0.5)
    x = np.linspace(0, 1, n)
    shape = x if rng.random() < 0.5 else np.sin(np.pi * x)  # straight glide or up-and-back
    freq = start * (end / start) ** shape
    freq *= 1 + rng.uniform(0.0, 0.03) * np.sin(2 * np.pi * rng.uniform(3, 7) * x * duration)
    y = np.sin(2 * np.pi * np.cumsum(freq) / sr)
    y += db(rng.uniform(-35, -18)) * colored_noise(n, exponent=0.0, rng=rng, sr=sr)
    y *= ramp_envelope(n, sr=sr, attack=rng.uniform(0.02, 0.2), release=rng.uniform(0.02, 0.2))
    return 0.5 * y / np.max(np.abs(y))


DISTRACTORS = {"beep": appliance_beep, "ring": phone_ring, "whistle": whistle}


# ---------------------------------------------------------------------------
# Files


def write_wav(path: Path, y: np.ndarray, *, sr: int = SR) -> None:
    """Write mono 16-bit PCM WAV (clipped to [-1, 1])."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(y, -1.0, 1.0) * 32767).astype("<i2")
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sr)
        out.writeframes(pcm.tobytes())
    os.replace(tmp, path)


def make_clips(root: Path, *, seed: int, stream: int, alarms: int, backgrounds: int, distractors: int) -> dict:
    """Generate the clip folders under ``root`` (replacing them); returns a summary."""
    if root.exists():
        shutil.rmtree(root)
    summary: dict = {"alarms": {}, "backgrounds": {}, "distractors": {}}
    for i in range(alarms):
        y, info = alarm_clip(np.random.default_rng([seed, stream, 0, i]))
        write_wav(root / TARGET / f"alarm_{i:03d}_{info['kind']}.wav", y)
        summary["alarms"][info["kind"]] = summary["alarms"].get(info["kind"], 0) + 1
    for i in range(backgrounds):
        kind = list(BACKGROUND_KINDS)[i % len(BACKGROUND_KINDS)]  # every kind equally often
        y, info = background_clip(np.random.default_rng([seed, stream, 1, i]), kind=kind)
        write_wav(root / "backgrounds" / f"bg_{i:03d}_{info['kind']}.wav", y)
        summary["backgrounds"][info["kind"]] = summary["backgrounds"].get(info["kind"], 0) + 1
    for k, (label, make) in enumerate(DISTRACTORS.items()):
        for i in range(distractors):
            write_wav(root / label / f"{label}_{i:03d}.wav", make(np.random.default_rng([seed, stream, 2 + k, i])))
        summary["distractors"][label] = distractors
    return summary


def kitchen_example(
    rng: np.random.Generator, *, sr: int = SR, seconds: float = 26.0
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The demo scene: kitchen-like background (babble, mains hum, a few appliance
    beeps) with one T3 piezo alarm sounding twice (two cycles, then later one cycle);
    returns the audio and the true events (onset, offset) in seconds."""
    n = int(seconds * sr)
    bed = babble(n, rng=rng, talkers=3) + db(-12) * mains_hum(n, rng=rng, sr=sr)
    bed += db(-25) * colored_noise(n, exponent=1.0, rng=rng, sr=sr)
    y = set_level(bed, dbfs=-30)
    for start in (1.2, 11.0, 21.8):  # appliance beeps, none overlapping the alarm
        beep = appliance_beep(rng, sr=sr)
        s = int(start * sr)
        y[s : s + len(beep)] += db(-16) * beep / 0.5
    frequency = rng.uniform(2900, 3400)
    alarm = np.zeros(n)
    events = []
    for onset, cycles in ((3.0, 2), (15.5, 1)):  # the same alarm, sounding twice
        clip, _ = alarm_clip(rng, kind="t3_piezo", cycles=cycles, frequency=frequency, room=False, sr=sr)
        s = int(onset * sr)
        alarm[s : s + len(clip)] += clip / 0.5
        events.append((onset, onset + len(clip) / sr))
    alarm = room_response(alarm, rng=rng, sr=sr)
    y += db(-14) * alarm
    return np.clip(y, -1, 1), events


def write_example(folder: Path, *, seed: int) -> list[tuple[float, float]]:
    """Write ``folder/smoke_alarm.wav`` and its Audacity labels ``smoke_alarm.txt``."""
    y, events = kitchen_example(np.random.default_rng([seed, STREAM_EXAMPLE]))
    write_wav(folder / "smoke_alarm.wav", y)
    labels = "".join(f"{a:.6f}\t{b:.6f}\t{TARGET}\n" for a, b in events)
    (folder / "smoke_alarm.txt").write_text(labels, encoding="utf-8")
    return events


# ---------------------------------------------------------------------------
# The pipeline


def soundnet(*args, log: Path) -> str:
    """Run the ``soundnet`` beside this Python with ``args``; echo and log; return stdout."""
    exe = Path(sys.executable).parent / "soundnet"
    command = [str(exe), *map(str, args)]
    print("$", " ".join(command[1:]).replace(str(REPO) + "/", ""), flush=True)
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n[{time.monotonic() - started:.1f} s]\n\n")
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"soundnet {args[0]} failed (exit {result.returncode}); see {log}")
    print(result.stdout.rstrip() + f"\n  [{time.monotonic() - started:.1f} s]", flush=True)
    return result.stdout


def training_config(args: argparse.Namespace) -> str:
    """The YAML training section for this build (everything else at soundnet's defaults)."""
    return (
        "# written by scripts/build_default_model.py\n"
        "training:\n"
        f"  epochs: {args.epochs}\n"
        f"  patience: {args.patience}\n"
        f"  stride: {args.stride}\n"
        f"  batch_size: {args.batch_size}\n"
        f"  learning_rate: {args.learning_rate}\n"
        f"  validation_fraction: {args.validation_fraction}\n"
        f"  seed: {args.seed}\n"
    )


def rebuild_command(args: argparse.Namespace) -> str:
    parts = ["python scripts/build_default_model.py", "--work", str(args.work_arg), "--seed", str(args.seed)]
    for name, default in DEFAULTS.items():
        value = getattr(args, name)
        if value != default:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    return " ".join(parts + ["--install"])


def heldout_summary(evaluation: dict) -> dict:
    keep = ("f_measure", "precision", "recall", "error_rate")
    return {
        "files": len(evaluation.get("files", {})),
        "event_onset": {k: evaluation["event_onset"][k] for k in keep},
        "event_onset_offset": {k: evaluation["event_onset_offset"][k] for k in keep},
        "segment": {k: evaluation["segment"][k] for k in keep},
        "frame": evaluation.get("frame"),
        "metrics": "sed_eval: event-based with 0.5 s onset collar (offsets ignored), "
        "onset+offset (offset collar 50 % of length), segment-based on 1 s segments; frame-level average precision",
    }


MERGE_GAPS = (0.0, 0.1, 0.2, 0.5, 1.0, 1.6, 2.0)


def retune(run: Path, folder: Path, *, work: Path) -> dict:
    """Re-tune the run's post-processing on the tuning mixtures in ``folder``, with
    merge gaps up to 2 s, and write it to the run's card.

    Why: under the labelling decision a two-cycle T3 event spans the 1.5 s silence
    between cycles, which a 1 s window cannot bridge, so the detection of one
    sounding alarm splits at every cycle; ``soundnet train`` searches merge gaps only
    up to 0.5 s. The search here is soundnet's own (``soundnet.evaluate.tune``, the
    same objective: event F1 with a 0.5 s onset collar) over its grid with
    :data:`MERGE_GAPS`. Returns what it found (for the card and the log).
    """
    from dataclasses import replace

    from soundnet.config import to_dict
    from soundnet.detect import Detector
    from soundnet.evaluate import GRID, reference_events, tune
    from soundnet.run import write_card

    detector = Detector(run)
    card = detector.card
    target, names, reference = reference_events([folder], folder / "annotations.tsv", target=card.target)
    probabilities, durations = {}, {}
    for name, path in names.items():
        probabilities[name], durations[name] = detector.probabilities(path)
    grid = {**GRID, "merge_gap": MERGE_GAPS}
    result = tune(
        probabilities, reference, label=target, frame_seconds=card.features.frame_seconds, durations=durations, grid=grid
    )
    retuned = {
        "tuned_on": f"{folder.relative_to(work)}: {len(names)} synthetic mixtures (training clips, synth seed of its own)",
        "grid": {k: list(v) for k, v in grid.items()},
        "train_postprocessing": to_dict(card.postprocessing),
        "postprocessing": to_dict(result.post),
        **{k: v for k, v in result.scores.items() if k != "files"},
    }
    write_card(run, replace(card, postprocessing=result.post, validation={**card.validation, "retuned": retuned}))
    return retuned


def install(run: Path, *, evaluation: dict, command: str, work: Path) -> int:
    """Copy the run folder (all but history and log) to the bundle with an extended card."""
    if BUNDLE.exists():
        shutil.rmtree(BUNDLE)
    BUNDLE.mkdir(parents=True)
    for path in sorted(run.iterdir()):
        if path.is_file() and path.name not in NOT_BUNDLED:
            shutil.copy2(path, BUNDLE / path.name)
    card_path = BUNDLE / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["description"] = DESCRIPTION
    card["heldout"] = {**heldout_summary(evaluation), "rebuild": command}
    card = _repo_relative(card)  # no absolute path of the build machine in the bundle
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in BUNDLE.iterdir())
    if total >= BUNDLE_LIMIT:
        raise SystemExit(f"{BUNDLE}: {total} bytes, over the {BUNDLE_LIMIT}-byte limit for a bundled model")
    return total


def _repo_relative(value):
    """``value`` (JSON data) with every absolute path inside the repository made relative to it."""
    if isinstance(value, dict):
        return {k: _repo_relative(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_repo_relative(v) for v in value]
    if isinstance(value, str) and value.startswith(str(REPO) + os.sep):
        return Path(value).relative_to(REPO).as_posix()
    return value


DEFAULTS = {
    "mixtures": 240,
    "test_mixtures": 60,
    "tune_mixtures": 40,
    "alarms": 160,
    "backgrounds": 48,
    "distractors": 60,
    "epochs": 8,
    "patience": 3,
    "stride": 100,
    "batch_size": 32,
    "learning_rate": 0.002,
    "validation_fraction": 0.08,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, type=Path, help="Build folder (clips, mixtures, dataset, run).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of everything (default 0).")
    parser.add_argument("--install", action="store_true", help="Copy the trained detector to soundnet/models/default/.")
    parser.add_argument("--skip-train", action="store_true", help="Only generate clips, mixtures and the example.")
    for name, default in DEFAULTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default, help=f"(default {default})")
    args = parser.parse_args(argv)
    args.work_arg = args.work
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    log.write_text("", encoding="utf-8")
    seed = args.seed
    sizes = dict(alarms=args.alarms, backgrounds=args.backgrounds, distractors=args.distractors)

    print(f"generating clips in {work / 'clips'} and {work / 'clips_test'}", flush=True)
    train_clips = make_clips(work / "clips", seed=seed, stream=STREAM_TRAIN, **sizes)
    test_sizes = {k: max(8, v // 2) for k, v in sizes.items()}
    test_clips = make_clips(work / "clips_test", seed=seed, stream=STREAM_TEST, **test_sizes)
    print(f"  train clips {train_clips}\n  test clips {test_clips}", flush=True)
    events = write_example(REPO / "examples", seed=seed)
    print(f"example: examples/smoke_alarm.wav with events {events}  [{time.monotonic() - started:.0f} s]", flush=True)

    for name, clips, count, synth_seed in (
        ("train", work / "clips", args.mixtures, seed),
        ("tune", work / "clips", args.tune_mixtures, seed + TUNE_SYNTH_OFFSET),
        ("test", work / "clips_test", args.test_mixtures, seed + TEST_SYNTH_OFFSET),
    ):
        if (work / name).exists():
            shutil.rmtree(work / name)
        distractor_args = [a for label in DISTRACTORS for a in ("--distractors", clips / label)]
        soundnet(
            "synth", "--events", clips / TARGET, "--backgrounds", clips / "backgrounds", *distractor_args,
            "--out", work / name, "-n", count, "--duration", 10, "--ebr", "-6,0,6", "--presence", 0.6,
            "--seed", synth_seed, log=log,
        )  # fmt: skip
    if args.skip_train:
        return 0

    for stale in ("data", "run"):
        if (work / stale).exists():
            shutil.rmtree(work / stale)
    config = work / "train.yaml"
    config.write_text(training_config(args), encoding="utf-8")
    soundnet(
        "extract", work / "train", "--annotations", work / "train" / "annotations.tsv", "--target", TARGET,
        "--out", work / "data", "--jobs", 2, log=log,
    )  # fmt: skip
    soundnet("train", work / "data", "--out", work / "run", "--config", config, "--seed", seed, log=log)
    step = time.monotonic()
    retuned = retune(work / "run", work / "tune", work=work)
    print(
        f"re-tuned post-processing on {retuned['tuned_on']}: {retuned['postprocessing']}; event F1 "
        f"{retuned['event_onset']['f_measure']:.3f} (soundnet train chose {retuned['train_postprocessing']})"
        f"\n  [{time.monotonic() - step:.1f} s]",
        flush=True,
    )
    heldout = work / "heldout.json"
    soundnet(
        "evaluate", work / "test", "--annotations", work / "test" / "annotations.tsv", "--target", TARGET,
        "--model", work / "run", "--output", heldout, log=log,
    )  # fmt: skip
    evaluation = json.loads(heldout.read_text(encoding="utf-8"))
    summary = heldout_summary(evaluation)
    print(json.dumps({k: v for k, v in summary.items() if k != "metrics"}, indent=1), flush=True)
    if args.install:
        total = install(work / "run", evaluation=evaluation, command=rebuild_command(args), work=work)
        print(f"installed {BUNDLE.relative_to(REPO)}: {total} bytes", flush=True)
        soundnet("detect", REPO / "examples" / "smoke_alarm.wav", log=log)  # the bundled detector
    else:
        soundnet("detect", REPO / "examples" / "smoke_alarm.wav", "--model", work / "run", log=log)
    print(f"done in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
