"""Synthetic signals for tests, benchmarks and the default model's build.

Every generator here is a pure function of its parameters and, when it draws
anything, of the ``numpy.random.Generator`` passed to it: there is no module-level
randomness, so the same seed gives the same signal sample for sample (the default
model's clips and ``examples/smoke_alarm.wav`` are rebuilt byte for byte from them).
They need only numpy.

Conventions
    Every function here follows these; its own docstring says only what is
    particular to it.

    ``rng``
        A ``numpy.random.Generator``: the only source of randomness.
    ``sr``
        The sample rate in Hz; :data:`SR` (16 kHz) unless told.
    ``n``
        A length in samples.
    ``seconds``, ``duration``
        A length in seconds: ``int(seconds * sr)`` samples, or
        ``round(duration * sr)`` where the docstring says *rounded*.
    ``x``, ``y`` (inputs)
        Mono signals of shape ``(n,)``.
    Returned signals
        Mono arrays of shape ``(n,)``, float64 unless the docstring says float32.

Levels
    :func:`db`, :func:`rms`, :func:`set_level`.
Building blocks
    :func:`tone`, :func:`linear_chirp`, :func:`click_train`, :func:`white_noise`,
    :func:`colored_noise`, :func:`slow_noise`, :func:`ramp_envelope`, :func:`adsr`,
    :func:`fft_convolve`, :func:`spectral_shape`, :func:`time_varying_filter`,
    :func:`resonance`, :func:`room_response`, :func:`pattern`, :func:`mix_in`.
Alarms (the default model's target)
    :func:`piezo_beep`, :func:`square_beep`, :func:`alarm_clip`.
Backgrounds
    :func:`mains_hum`, :func:`babble`, :func:`music`, :func:`clicks`,
    :func:`near_silence`, :data:`BACKGROUND_KINDS`, :func:`background_clip`,
    :func:`noise_background`.
Distractors
    :func:`appliance_beep`, :func:`phone_ring`, :func:`whistle`, :data:`DISTRACTORS`,
    :func:`tone_or_clicks`.
Scenes
    :func:`harmonic_chirp` (a target of planted end-to-end checks),
    :func:`planted_scene` (noise with tone bursts at known times),
    :func:`kitchen_scene` (the bundled example).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SR = 16000

__all__ = [
    "BACKGROUND_KINDS",
    "DISTRACTORS",
    "SR",
    "adsr",
    "alarm_clip",
    "appliance_beep",
    "babble",
    "background_clip",
    "click_train",
    "clicks",
    "colored_noise",
    "db",
    "fft_convolve",
    "harmonic_chirp",
    "kitchen_scene",
    "linear_chirp",
    "mains_hum",
    "mix_in",
    "music",
    "near_silence",
    "noise_background",
    "pattern",
    "phone_ring",
    "piezo_beep",
    "planted_scene",
    "ramp_envelope",
    "resonance",
    "rms",
    "room_response",
    "set_level",
    "slow_noise",
    "spectral_shape",
    "square_beep",
    "time_varying_filter",
    "tone",
    "tone_or_clicks",
    "white_noise",
    "whistle",
]


# ---------------------------------------------------------------------------
# Levels


def db(value: float) -> float:
    """Amplitude gain of ``value`` decibels (20 log10 of an amplitude ratio): ``10 ** (value / 20)``."""
    return float(10.0 ** (value / 20.0))


def rms(y: np.ndarray) -> float:
    """Root mean square of ``y`` (any shape), accumulated in float64; 0 for an empty array."""
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if np.size(y) else 0.0


def set_level(y: np.ndarray, *, dbfs: float) -> np.ndarray:
    """``y`` scaled to an RMS of ``dbfs`` decibels re full scale (0 dBFS is an RMS of 1).

    A scaled copy, or ``y`` itself when it is all zeros.
    """
    level = rms(y)
    return y if level == 0.0 else y * (db(dbfs) / level)


# ---------------------------------------------------------------------------
# Building blocks


def tone(freq: float, seconds: float, *, sr: int = SR, amplitude: float = 0.3, fade: float = 0.01) -> np.ndarray:
    """A float32 sine burst at ``freq`` Hz, ``seconds`` long (rounded), with linear fades.

    Zero phase at the first sample and peak ``amplitude``; the fade-in and the fade-out
    last ``fade`` seconds each (0: none), so there are no clicks at the ends.
    """
    t = np.arange(int(round(seconds * sr))) / sr
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / fade) if fade > 0 else 1.0
    return (amplitude * ramp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def linear_chirp(
    f0: float,
    f1: float,
    seconds: float,
    *,
    sr: int = SR,
    amplitude: float = 0.3,
    second_harmonic: float = 0.3,
    fade: float = 0.02,
) -> np.ndarray:
    """A float32 sweep from ``f0`` to ``f1`` Hz over ``seconds``, linear in frequency.

    A harmonic at twice the frequency, ``second_harmonic`` times as strong, is added;
    the sum is scaled by ``amplitude`` (a peak of up to ``amplitude * (1 + second_harmonic)``)
    and faded in and out linearly over ``fade`` seconds.
    """
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    y = np.sin(phase) + second_harmonic * np.sin(2 * phase)
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / fade)
    return (amplitude * envelope * y).astype(np.float32)


def click_train(seconds: float, *, interval: float = 0.05, sr: int = SR, amplitude: float = 0.2) -> np.ndarray:
    """Float32 single-sample clicks of height ``amplitude``, the first at sample 0.

    They come every ``interval`` seconds (``int(interval * sr)`` samples).
    """
    y = np.zeros(int(seconds * sr))
    y[:: max(1, int(sr * interval))] = 1.0
    return (amplitude * y).astype(np.float32)


def white_noise(n: int, *, rng: np.random.Generator, std: float = 1.0) -> np.ndarray:
    """Float32 Gaussian white noise with standard deviation ``std``."""
    return (std * rng.standard_normal(n)).astype(np.float32)


def slow_noise(n: int, *, sr: int = SR, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random curve in [-1, 1] that wanders at ``rate`` knots per second.

    The knots are uniform random values, joined by cosine interpolation.
    """
    knots = max(2, int(np.ceil(n / sr * rate)) + 2)
    values = rng.uniform(-1.0, 1.0, knots)
    position = np.arange(n) / sr * rate
    i = np.minimum(position.astype(np.int64), knots - 2)
    frac = position - i
    w = 0.5 - 0.5 * np.cos(np.pi * frac)
    return values[i] * (1 - w) + values[i + 1] * w


def ramp_envelope(n: int, *, sr: int = SR, attack: float, release: float) -> np.ndarray:
    """A flat envelope of 1 with raised-cosine ramps ``attack`` and ``release`` seconds long.

    Each ramp is shortened to fit and lasts at least one sample; the envelope is 0 at
    the first sample and small at the last.
    """
    env = np.ones(n)
    a = min(n // 2, max(1, int(attack * sr)))
    r = min(n - a, max(1, int(release * sr)))
    env[:a] = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
    env[n - r :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, r + 1) / r)
    return env


def adsr(n: int, *, sr: int = SR, attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """An attack-decay-sustain-release envelope spanning a whole note of ``n`` samples.

    It rises to 1 over ``attack`` seconds, falls to the ``sustain`` level over ``decay``,
    holds it and falls to 0 at the last sample over ``release`` (each shortened to fit).
    """
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
    """Linear convolution of ``x`` and ``h`` through the FFT.

    The full convolution, ``len(x) + len(h) - 1`` samples, as ``np.convolve(x, h)``.
    """
    n = len(x) + len(h) - 1
    size = 1 << int(np.ceil(np.log2(max(n, 2))))
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]


def spectral_shape(x: np.ndarray, *, gain: Callable[[np.ndarray], np.ndarray], sr: int = SR) -> np.ndarray:
    """``x`` filtered by a zero-phase magnitude response.

    ``gain(frequencies_in_hz)`` returns the gains, of the same shape.
    """
    size = 1 << int(np.ceil(np.log2(max(len(x), 2))))  # a fast FFT length; the zero padding is cut off
    spectrum = np.fft.rfft(x, size)
    return np.fft.irfft(spectrum * gain(np.fft.rfftfreq(size, 1.0 / sr)), size)[: len(x)]


def time_varying_filter(x: np.ndarray, *, gain, sr: int = SR, n_fft: int = 512) -> np.ndarray:
    """``x`` filtered by a magnitude response that changes over time.

    Short-time Fourier overlap-add with sqrt-Hann windows at 50 % overlap (which
    reconstruct exactly when the gain is 1). Good for resonances whose impulse
    responses are much shorter than ``n_fft`` samples.

    Parameters
    ----------
    gain : callable
        ``gain(times, freqs) -> (frames, bins)``: the frame centre times ``(frames,)``
        in seconds and the bin frequencies ``(bins,)`` in Hz give the gains.
    n_fft : int
        Frame length (even).
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
    """Gains at ``freqs`` (Hz) of a two-pole resonator with unit gain at 0 Hz.

    ``centre`` and ``bandwidth`` are the resonance frequency and bandwidth in Hz (floats
    or arrays broadcast against ``freqs``); the peak, near ``centre``, is about
    ``centre / bandwidth``.
    """
    ratio = freqs / centre
    return 1.0 / np.sqrt((1.0 - ratio**2) ** 2 + (freqs * bandwidth / centre**2) ** 2)


def room_response(y: np.ndarray, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """``y`` in a random simple room, cut to the length of ``y``.

    The direct sound plus an exponentially decaying noise tail: RT60 0.15-0.8 s,
    direct-to-reverberant ratio -3 to +12 dB, 2-12 ms of pre-delay, duller with time.
    """
    rt60 = rng.uniform(0.15, 0.8)
    length = int(min(rt60, 0.6) * sr)
    t = np.arange(length) / sr
    tail = rng.standard_normal(length) * np.exp(-6.91 * t / rt60)
    tail = spectral_shape(tail, gain=lambda f: 1.0 / np.sqrt(1.0 + (f / rng.uniform(2500, 7000)) ** 2), sr=sr)
    tail *= db(-rng.uniform(-3, 12)) / np.sqrt(np.sum(tail**2))
    delay = int(rng.uniform(0.002, 0.012) * sr)
    h = np.zeros(delay + length)
    h[0] = 1.0
    h[delay:] += tail
    return fft_convolve(y, h)[: len(y)]


def pattern(beeps: list[np.ndarray], onsets: list[float], *, sr: int = SR) -> np.ndarray:
    """The clips ``beeps`` laid at their ``onsets`` (seconds, one per clip) and summed.

    The result ends where the clip that ends last ends.
    """
    starts = [int(round(t * sr)) for t in onsets]
    y = np.zeros(max(s + len(b) for s, b in zip(starts, beeps, strict=True)))
    for s, b in zip(starts, beeps, strict=True):
        y[s : s + len(b)] += b
    return y


def mix_in(y: np.ndarray, clip: np.ndarray, start: int) -> np.ndarray:
    """Add ``clip`` into ``y`` in place from sample ``start``, cropped to ``y``; returns ``y``.

    ``start`` may be negative or past the end: what falls outside ``y`` is dropped.
    """
    lo, hi = max(0, start), min(len(y), start + len(clip))
    if hi > lo:
        y[lo:hi] += clip[lo - start : hi - start]
    return y


# ---------------------------------------------------------------------------
# Alarm sounds (the default model's target)


def piezo_beep(duration: float, *, frequency: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """One piezo beep at ``frequency`` Hz lasting ``duration`` (rounded); peak about 1, at most 1.2.

    A sine with a little 2nd and 3rd harmonic (below Nyquist), slight frequency drift
    and wobble, a random attack and release and a ripple of the amplitude.
    """
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
    """One beep of a low-frequency (520 Hz class) sounder; peak below 1.5.

    A band-limited square wave at ``frequency`` Hz (odd harmonics below 0.47 ``sr``, 1/k)
    with a random high-frequency tilt of the loudspeaker and a slight drift of pitch,
    lasting ``duration`` (rounded).
    """
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


def alarm_clip(
    rng: np.random.Generator,
    *,
    kind: str | None = None,
    cycles: int | None = None,
    frequency: float | None = None,
    room: bool | None = None,
    sr: int = SR,
) -> tuple[np.ndarray, dict]:
    """One alarm event, from its first beep's onset to its last beep's offset.

    ``t3_piezo`` and ``t3_520``: the ISO 8201 temporal-three pattern (three 0.5 s
    beeps 0.5 s apart, then 1.5 s of silence; every interval scaled by one factor
    within +-7 %), from a piezo sounder at 2.8-3.6 kHz or a 520 Hz square-wave
    sounder. ``t4_co``: the CO temporal-four pattern (four 0.1 s beeps 0.1 s apart)
    at 3.1-3.4 kHz. Each beep has its own small detuning, length and level jitter;
    the clip a slow level drift.

    Returns ``(clip, info)``: the clip, peak exactly 0.5, and a dict of its kind,
    frequency, cycles, room (bool) and duration (seconds).

    Parameters
    ----------
    kind : {"t3_piezo", "t3_520", "t4_co"} or None
        None draws one (55 %, 20 %, 25 %).
    cycles : int or None
        T3 cycles (None: 1 or 2, 60/40); a T4 clip is always one group.
    frequency : float or None
        Sounder frequency in Hz (None: drawn for the kind).
    room : bool or None
        Apply a random :func:`room_response` (None: half the time); its tail is
        faded out at the last beep's offset.
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
    """Gaussian noise with power spectrum ``1 / f ** exponent``, flat below 20 Hz.

    ``exponent`` 0 is white, 1 pink, 2 brown; zero mean, unit RMS.
    """
    low = 20.0
    y = spectral_shape(rng.standard_normal(n), gain=lambda f: np.maximum(f, low) ** (-exponent / 2), sr=sr)
    y -= y.mean()
    return y / rms(y)


def mains_hum(n: int, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Mains hum at unit RMS over pink noise 35 dB below it.

    50 or 60 Hz and its harmonics up to about 1.5 kHz (odd ones stronger, as in
    transformer buzz), slowly drifting in pitch and level.
    """
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
    """Speech-like babble of ``talkers`` voices (None: 1-6), at unit RMS.

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
    source = spectral_shape(pulses, gain=lambda f: 1.0 / (1.0 + (f / 120.0) ** 2), sr=sr)
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
    hiss = spectral_shape(rng.standard_normal(n), gain=lambda f: (f > min(rng.uniform(2500, 4500), 0.4 * sr)) * 1.0, sr=sr)
    hiss /= rms(hiss)
    y = voiced * env + hiss * fric
    return y / (rms(y) + 1e-12)


def music(n: int, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A music-like texture at unit RMS.

    1-3 voices of random notes from a major or minor scale (110 Hz-1 kHz
    fundamentals) on a beat grid: harmonic tones with random spectra, ADSR envelopes
    and sometimes vibrato, over faint pink noise.
    """
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
                    note_tone = sum(
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
                    y[start : start + m] += level * note_tone * env
            clock += length
    y += db(-40) * colored_noise(n, exponent=1, rng=rng, sr=sr)
    return y / rms(y)


def clicks(n: int, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Clicks, ticks and knocks over a faint noise floor, at unit RMS.

    Short noise bursts and damped resonances (1-50 ms decay) at a Poisson rate of
    0.3-5 per second, their levels spread over 20 dB.
    """
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
    """A quiet room: pink-ish noise at unit RMS (the caller sets it to a very low level)."""
    return colored_noise(n, exponent=rng.uniform(0.5, 1.5), rng=rng, sr=sr)


#: The background generators by name: ``make(n, rng, sr)`` -> unit-RMS signal.
BACKGROUND_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "white": lambda n, rng, sr=SR: colored_noise(n, exponent=0.0, rng=rng, sr=sr),
    "pink": lambda n, rng, sr=SR: colored_noise(n, exponent=1.0, rng=rng, sr=sr),
    "brown": lambda n, rng, sr=SR: colored_noise(n, exponent=2.0, rng=rng, sr=sr),
    "hum": lambda n, rng, sr=SR: mains_hum(n, rng=rng, sr=sr),
    "babble": lambda n, rng, sr=SR: babble(n, rng=rng, sr=sr),
    "music": lambda n, rng, sr=SR: music(n, rng=rng, sr=sr),
    "clicks": lambda n, rng, sr=SR: clicks(n, rng=rng, sr=sr),
    "silence": lambda n, rng, sr=SR: near_silence(n, rng=rng, sr=sr),
}


def background_clip(rng: np.random.Generator, *, kind: str | None = None, sr: int = SR) -> tuple[np.ndarray, dict]:
    """A 20-40 s background for mixing, with its description.

    One kind of :data:`BACKGROUND_KINDS` (``kind``, or drawn when None), with (half the
    time, except near-silence) a second kind 6-20 dB below it, at -50 to -15 dBFS RMS
    (near-silence at -50 to -42 dBFS); lowered further when its peak would pass 0.9.

    Returns ``(clip, info)``: the clip, peak at most 0.9, and a dict of its kind, second
    (kind or None), dbfs (the RMS level) and duration (seconds).
    """
    kinds = list(BACKGROUND_KINDS)
    kind = kind or kinds[int(rng.integers(len(kinds)))]
    n = int(rng.uniform(20, 40) * sr)
    y = BACKGROUND_KINDS[kind](n, rng, sr)
    second = None
    if kind != "silence" and rng.random() < 0.5:
        second = [k for k in kinds if k not in (kind, "silence")][int(rng.integers(len(kinds) - 2))]
        y = y + db(-rng.uniform(6, 20)) * BACKGROUND_KINDS[second](n, rng, sr)
    level = rng.uniform(-50, -42) if kind == "silence" else rng.uniform(-50, -15)
    y = set_level(y, dbfs=level)
    peak = float(np.max(np.abs(y)))
    if peak > 0.9:  # loud clicks: keep the peaks, lower the level
        y *= 0.9 / peak
        level += 20 * np.log10(0.9 / peak)
    return y, {"kind": kind, "second": second, "dbfs": round(float(level), 1), "duration": n / sr}


def noise_background(seconds: float, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A float32 plain background at -40 to -20 dBFS RMS.

    White, pink or brown noise or mains hum, one drawn, each a quarter of the time.
    """
    n = int(seconds * sr)
    kind = ("white", "pink", "brown", "hum")[int(rng.integers(4))]
    y = BACKGROUND_KINDS[kind](n, rng, sr)
    return set_level(y, dbfs=rng.uniform(-40, -20)).astype(np.float32)


# ---------------------------------------------------------------------------
# Distractors


def appliance_beep(rng: np.random.Generator, *, sr: int = SR) -> np.ndarray:
    """A single appliance beep (microwave, oven, washing machine); peak exactly 0.5.

    0.1-0.3 s at 0.8-2.5 kHz, a piezo sine (60 %) or a buzzy square tone, in a room
    40 % of the time.
    """
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
    """A telephone ring; peak exactly 0.5.

    Two tones at 400-480 Hz, either alternated at 15-25 Hz (a trill) or sounding
    together, in one continuous 0.8-2 s burst or a UK-style double burst (0.4 s on,
    0.2 s off, 0.4 s on), slightly distorted.
    """
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
            switch = spectral_shape(switch, gain=lambda f: 1.0 / (1.0 + (f / 300.0) ** 2), sr=sr)
            ring = a * switch + b * (1 - switch)
        else:
            ring = a + b
        ring = ring + db(rng.uniform(-30, -15)) * np.sign(ring)  # a little distortion
        out.append((start, ring * ramp_envelope(n, sr=sr, attack=0.01, release=0.02)))
    y = pattern([seg for _, seg in out], [start for start, _ in out], sr=sr)
    return 0.5 * y / np.max(np.abs(y))


def whistle(rng: np.random.Generator, *, sr: int = SR) -> np.ndarray:
    """A whistle or kettle; peak exactly 0.5.

    A sine gliding at least a third of an octave (straight, or up-and-back) between
    0.8 and 3.8 kHz over 0.3-2.5 s, with vibrato and breath noise.
    """
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


#: The distractor generators of the default model's build by label: ``make(rng, sr=...)``.
DISTRACTORS: dict[str, Callable[..., np.ndarray]] = {"beep": appliance_beep, "ring": phone_ring, "whistle": whistle}


def tone_or_clicks(rng: np.random.Generator, *, sr: int = SR) -> np.ndarray:
    """A plain float32 distractor, peak at most 0.2.

    0.1-0.6 s of a steady 300-1200 Hz sine or of a 20 Hz click train (half the time
    each), amplitude 0.2.
    """
    seconds = rng.uniform(0.1, 0.6)
    if rng.random() < 0.5:
        return tone(rng.uniform(300, 1200), seconds, sr=sr, amplitude=0.2, fade=0.0)
    return click_train(seconds, interval=0.05, sr=sr, amplitude=0.2)


# ---------------------------------------------------------------------------
# Targets and scenes


def harmonic_chirp(rng: np.random.Generator, *, sr: int = SR) -> np.ndarray:
    """A rising float32 harmonic chirp, amplitude 0.3 (peak below 0.39).

    0.2-0.8 s from 1.5-2.5 kHz up to 3-4 kHz (see :func:`linear_chirp`).
    """
    seconds = rng.uniform(0.2, 0.8)
    f0, f1 = rng.uniform(1500, 2500), rng.uniform(3000, 4000)
    return linear_chirp(f0, f1, seconds, sr=sr)


def planted_scene(
    seconds: float,
    events: list[tuple[float, float]],
    *,
    rng: np.random.Generator,
    freq: float = 2000.0,
    distractors: int = 1,
    noise: float = 0.03,
    sr: int = SR,
) -> np.ndarray:
    """Float32 noise with target tone bursts at known times and 500 Hz distractor bursts.

    Parameters
    ----------
    events : list of (onset, offset)
        Seconds: a :func:`tone` burst at ``freq`` (amplitude 0.3) fills each.
    freq : float
        The target's frequency in Hz.
    distractors : int
        0.4 s bursts at 500 Hz at random onsets (they may overlap events).
    noise : float
        Standard deviation of the white noise bed.
    """
    y = white_noise(int(seconds * sr), rng=rng, std=noise)
    for onset, offset in events:
        mix_in(y, tone(freq, offset - onset, sr=sr), int(onset * sr))
    for _ in range(distractors):
        onset = rng.uniform(0, seconds - 0.5)
        mix_in(y, tone(500.0, 0.4, sr=sr), int(onset * sr))
    return y


def kitchen_scene(
    rng: np.random.Generator, *, sr: int = SR, seconds: float = 26.0
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The bundled example's scene: a kitchen with one smoke alarm sounding twice.

    Babble of three talkers, mains hum and pink noise at -30 dBFS, three appliance
    beeps (at 1.2, 11.0 and 21.8 s) and one T3 piezo alarm, in a room, sounding two
    cycles from 3.0 s and one cycle from 15.5 s. ``seconds`` must be at least 20 for
    the alarm to fit.

    Returns ``(audio, events)``: the audio, clipped to [-1, 1], and the alarm's true
    events as (onset, offset) in seconds.
    """
    n = int(seconds * sr)
    bed = babble(n, rng=rng, talkers=3, sr=sr) + db(-12) * mains_hum(n, rng=rng, sr=sr)
    bed += db(-25) * colored_noise(n, exponent=1.0, rng=rng, sr=sr)
    y = set_level(bed, dbfs=-30)
    for start in (1.2, 11.0, 21.8):  # appliance beeps, none overlapping the alarm
        mix_in(y, db(-16) * appliance_beep(rng, sr=sr) / 0.5, int(start * sr))
    frequency = rng.uniform(2900, 3400)
    alarm = np.zeros(n)
    events = []
    for onset, cycles in ((3.0, 2), (15.5, 1)):  # the same alarm, sounding twice
        clip, _ = alarm_clip(rng, kind="t3_piezo", cycles=cycles, frequency=frequency, room=False, sr=sr)
        mix_in(alarm, clip / 0.5, int(onset * sr))
        events.append((onset, onset + len(clip) / sr))
    alarm = room_response(alarm, rng=rng, sr=sr)
    y += db(-14) * alarm
    return np.clip(y, -1, 1), events
