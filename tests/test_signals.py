"""soundnet.signals: every generator is finite, of the right length at the right rate,
deterministic for a seed and within its peak; and each does what its name says."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from soundnet import signals as s

SR = s.SR


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def peak_frequency(y: np.ndarray, sr: int = SR) -> float:
    """The frequency (Hz) of the largest bin of the Hann-windowed spectrum."""
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)), 8 * len(y)))
    return float(np.fft.rfftfreq(8 * len(y), 1.0 / sr)[np.argmax(spectrum)])


def onsets(y: np.ndarray, sr: int = SR, *, frame: float = 0.005, threshold: float = 0.1) -> np.ndarray:
    """Start times (s) of the stretches whose frame RMS is above ``threshold`` of the highest."""
    hop = int(frame * sr)
    level = np.sqrt(np.mean(y[: len(y) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    on = level > threshold * level.max()
    starts = np.flatnonzero(on & ~np.r_[False, on[:-1]])
    return starts * frame


def band_level(y: np.ndarray, low: float, high: float, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(len(y), 1.0 / sr)
    return float(spectrum[(f >= low) & (f < high)].sum())


# ---------------------------------------------------------------- every generator
# name: (make(rng, sr) -> array, expected length in seconds (exact or (low, high)), peak bound)
GENERATORS = {
    "tone": (lambda g, sr: s.tone(1000.0, 0.5, sr=sr), 0.5, 0.3),
    "linear_chirp": (lambda g, sr: s.linear_chirp(1000.0, 3000.0, 0.5, sr=sr), 0.5, 0.39),
    "click_train": (lambda g, sr: s.click_train(0.5, sr=sr), 0.5, 0.2),
    "white_noise": (lambda g, sr: s.white_noise(sr // 2, rng=g, std=0.1), 0.5, 1.0),
    "colored_noise": (lambda g, sr: s.colored_noise(sr // 2, exponent=1.0, rng=g, sr=sr), 0.5, 8.0),
    "slow_noise": (lambda g, sr: s.slow_noise(sr // 2, sr=sr, rate=5.0, rng=g), 0.5, 1.0),
    "ramp_envelope": (lambda g, sr: s.ramp_envelope(sr // 2, sr=sr, attack=0.01, release=0.02), 0.5, 1.0),
    "adsr": (lambda g, sr: s.adsr(sr // 2, sr=sr, attack=0.01, decay=0.05, sustain=0.5, release=0.1), 0.5, 1.0),
    "room_response": (lambda g, sr: s.room_response(s.tone(1000.0, 0.5, sr=sr), rng=g, sr=sr), 0.5, 1.0),
    "piezo_beep": (lambda g, sr: s.piezo_beep(0.5, frequency=3000.0, rng=g, sr=sr), 0.5, 1.2),
    "square_beep": (lambda g, sr: s.square_beep(0.5, frequency=520.0, rng=g, sr=sr), 0.5, 1.5),
    "alarm_clip": (lambda g, sr: s.alarm_clip(g, sr=sr)[0], (0.6, 6.2), 0.5),
    "mains_hum": (lambda g, sr: s.mains_hum(2 * sr, rng=g, sr=sr), 2.0, 5.0),
    "babble": (lambda g, sr: s.babble(2 * sr, rng=g, sr=sr), 2.0, 30.0),
    "music": (lambda g, sr: s.music(2 * sr, rng=g, sr=sr), 2.0, 30.0),
    "clicks": (lambda g, sr: s.clicks(2 * sr, rng=g, sr=sr), 2.0, 200.0),
    "near_silence": (lambda g, sr: s.near_silence(2 * sr, rng=g, sr=sr), 2.0, 8.0),
    "background_clip": (lambda g, sr: s.background_clip(g, kind="pink", sr=sr)[0], (20.0, 40.0), 0.9),
    "noise_background": (lambda g, sr: s.noise_background(2.0, rng=g, sr=sr), 2.0, 1.0),
    "appliance_beep": (lambda g, sr: s.appliance_beep(g, sr=sr), (0.1, 0.3), 0.5),
    "phone_ring": (lambda g, sr: s.phone_ring(g, sr=sr), (0.8, 2.0), 0.5),
    "whistle": (lambda g, sr: s.whistle(g, sr=sr), (0.3, 2.5), 0.5),
    "tone_or_clicks": (lambda g, sr: s.tone_or_clicks(g, sr=sr), (0.1, 0.6), 0.2),
    "harmonic_chirp": (lambda g, sr: s.harmonic_chirp(g, sr=sr), (0.2, 0.8), 0.39),
    "planted_scene": (lambda g, sr: s.planted_scene(3.0, [(1.0, 1.5)], rng=g, sr=sr), 3.0, 1.0),
}
DRAWS = set(GENERATORS) - {"tone", "linear_chirp", "click_train", "ramp_envelope", "adsr"}


@pytest.mark.parametrize("sr", [SR, 8000])
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_every_generator_is_finite_sized_bounded_and_seeded(name, sr):
    make, seconds, peak = GENERATORS[name]
    y = make(rng(3), sr)
    assert y.ndim == 1 and np.all(np.isfinite(y))
    low, high = (seconds, seconds) if isinstance(seconds, float) else seconds
    assert round(low * sr) - 1 <= len(y) <= round(high * sr) + 1
    assert 0 < np.max(np.abs(y)) <= peak + 1e-6
    assert np.array_equal(make(rng(3), sr), y)  # the same seed, the same samples
    if name in DRAWS:
        other = make(rng(4), sr)
        assert len(other) != len(y) or not np.array_equal(other, y)


def test_generators_draw_only_from_the_generator_given():
    np.random.seed(123)
    for make, _, _ in GENERATORS.values():
        make(rng(1), SR)
    after = np.random.random()
    np.random.seed(123)
    assert np.random.random() == after  # numpy's global random state is untouched


def test_every_public_generator_is_smoke_tested():
    tested = set(GENERATORS) | {"db", "rms", "set_level", "fft_convolve", "spectral_shape", "time_varying_filter"}
    tested |= {"resonance", "pattern", "mix_in", "kitchen_scene", "BACKGROUND_KINDS", "DISTRACTORS", "SR"}
    assert set(s.__all__) == tested


@pytest.mark.parametrize("kind", sorted(s.BACKGROUND_KINDS))
def test_background_kinds_are_unit_rms(kind):
    y = s.BACKGROUND_KINDS[kind](SR, rng(1), SR)
    assert len(y) == SR and np.all(np.isfinite(y))
    assert s.rms(y) == pytest.approx(1.0, rel=0.01)


@pytest.mark.parametrize("label", sorted(s.DISTRACTORS))
def test_distractors_peak_at_half(label):
    assert np.max(np.abs(s.DISTRACTORS[label](rng(2)))) == pytest.approx(0.5)


# ---------------------------------------------------------------- levels
def test_db_rms_and_set_level():
    assert s.db(0) == 1.0 and s.db(-20) == pytest.approx(0.1) and s.db(6) == pytest.approx(1.995, abs=1e-3)
    assert s.rms(np.array([])) == 0.0
    assert s.rms(np.full(10, -0.5, dtype=np.float32)) == pytest.approx(0.5)
    assert s.rms(np.sin(2 * np.pi * np.arange(SR) / 100)) == pytest.approx(1 / np.sqrt(2))
    y = s.set_level(s.white_noise(SR, rng=rng()), dbfs=-30)
    assert 20 * np.log10(s.rms(y)) == pytest.approx(-30)
    silence = np.zeros(10)
    assert s.set_level(silence, dbfs=-10) is silence


# ---------------------------------------------------------------- building blocks
@pytest.mark.parametrize("sr", [SR, 8000])
def test_tone_frequency_and_fades(sr):
    y = s.tone(1234.0, 0.5, sr=sr, amplitude=0.4)
    assert len(y) == sr // 2 and y.dtype == np.float32
    assert peak_frequency(y, sr) == pytest.approx(1234.0, abs=2.0)
    assert y[0] == 0.0 and abs(y[-1]) < 1e-6
    assert np.max(np.abs(y)) == pytest.approx(0.4, rel=1e-3)
    assert np.max(np.abs(y[: int(0.005 * sr)])) < 0.25  # still fading in at 5 ms
    assert np.max(np.abs(s.tone(1000.0, 0.1, fade=0.0)[:3])) > 0.1  # no fade: full level at once


def test_linear_chirp_sweeps_from_f0_to_f1():
    y = s.linear_chirp(1000.0, 3000.0, 1.0, second_harmonic=0.0)
    fifth = len(y) // 5
    assert peak_frequency(y[:fifth]) == pytest.approx(1200.0, abs=60)  # mean of the first fifth
    assert peak_frequency(y[-fifth:]) == pytest.approx(2800.0, abs=60)


def test_click_train_spacing():
    y = s.click_train(1.0, interval=0.05, amplitude=0.7)
    assert np.array_equal(np.flatnonzero(y), np.arange(0, SR, 800))
    assert np.allclose(y[y != 0], 0.7)


def test_white_noise_std_and_flat_spectrum():
    y = s.white_noise(4 * SR, rng=rng(), std=0.5)
    assert y.dtype == np.float32 and np.std(y) == pytest.approx(0.5, rel=0.02)
    assert band_level(y, 200, 1200) == pytest.approx(band_level(y, 5000, 6000), rel=0.1)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_colored_noise_spectral_slope(exponent):
    y = s.colored_noise(8 * SR, exponent=exponent, rng=rng())
    assert s.rms(y) == pytest.approx(1.0) and abs(np.mean(y)) < 1e-9
    f, p = welch(y, fs=SR, nperseg=4096)
    band = (f > 100) & (f < 4000)
    slope = np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.15)


def test_slow_noise_is_smooth_and_bounded():
    y = s.slow_noise(4 * SR, rate=5.0, rng=rng())
    assert np.max(np.abs(y)) <= 1.0
    assert np.max(np.abs(np.diff(y))) < 2 * np.pi * 5 / SR * 2  # no jumps: at most a few knots' slope
    assert np.std(y) > 0.2  # and it does wander


def test_ramp_envelope_and_adsr_shapes():
    env = s.ramp_envelope(1000, sr=1000, attack=0.1, release=0.2)
    assert env[0] == 0.0 and np.all(env[100:800] == 1.0) and env[-1] < 1e-3
    assert np.all(np.diff(env[:100]) > 0) and np.all(np.diff(env[800:]) < 0)
    a = s.adsr(1000, sr=1000, attack=0.1, decay=0.1, sustain=0.4, release=0.2)
    assert len(a) == 1000 and a.max() == pytest.approx(1.0, abs=0.011) and a[-1] == 0.0
    assert np.allclose(a[200:800], 0.4)
    assert len(s.adsr(5, sr=1000, attack=0.1, decay=0.1, sustain=0.4, release=0.2)) == 5  # shortened to fit


def test_fft_convolve_is_np_convolve():
    x, h = rng().standard_normal(1000), rng(1).standard_normal(77)
    assert np.allclose(s.fft_convolve(x, h), np.convolve(x, h))


def test_spectral_shape_and_time_varying_filter():
    x = rng().standard_normal(4096)  # a power of two: no zero padding, so no leakage
    assert np.allclose(s.spectral_shape(x, gain=np.ones_like), x)
    low = s.spectral_shape(x, gain=lambda f: (f < 1000) * 1.0)
    assert band_level(low, 2000, 8000) < 1e-6 * band_level(x, 2000, 8000)
    assert np.allclose(s.time_varying_filter(x, gain=lambda t, f: np.ones((len(t), len(f)))), x)
    # a gain of 0 for the first half-second, 1 after: silent, then the input
    y = s.time_varying_filter(np.tile(x, 4), gain=lambda t, f: np.repeat((t > 0.5)[:, None] * 1.0, len(f), axis=1))
    assert s.rms(y[: int(0.4 * SR)]) < 1e-3 and s.rms(y[int(0.6 * SR) :]) > 0.9


def test_resonance_peaks_at_its_centre():
    f = np.linspace(0, 8000, 8001)
    g = s.resonance(f, centre=1500.0, bandwidth=100.0)
    assert g[0] == 1.0 and abs(f[np.argmax(g)] - 1500) < 10 and g.max() == pytest.approx(15, rel=0.05)


def test_room_response_keeps_the_direct_sound_and_adds_a_tail():
    y = np.zeros(SR)
    y[0] = 1.0
    out = s.room_response(y, rng=rng())
    assert len(out) == SR
    assert out[0] == pytest.approx(1.0) and np.allclose(out[1 : int(0.002 * SR)], 0.0, atol=1e-9)  # pre-delay
    assert s.rms(out[int(0.02 * SR) : int(0.1 * SR)]) > 0  # the tail
    assert s.rms(out[int(0.1 * SR) : int(0.15 * SR)]) > s.rms(out[int(0.5 * SR) : int(0.55 * SR)])  # decaying


def test_pattern_and_mix_in_place_clips():
    y = s.pattern([np.ones(10), 2 * np.ones(5)], [0.0, 0.01], sr=1000)
    assert len(y) == 15 and np.all(y[:10] == 1) and np.all(y[10:] == 2)
    z = np.zeros(10)
    s.mix_in(z, np.arange(1, 5.0), -2)  # cropped at the start
    s.mix_in(z, np.ones(5), 8)  # and at the end
    s.mix_in(z, np.ones(3), 20)  # wholly outside
    assert z.tolist() == [3, 4, 0, 0, 0, 0, 0, 0, 1, 1]


# ---------------------------------------------------------------- alarms
def test_piezo_and_square_beeps_sound_at_their_frequency():
    piezo = s.piezo_beep(0.5, frequency=3100.0, rng=rng())
    assert peak_frequency(piezo) == pytest.approx(3100.0, rel=0.01)
    square = s.square_beep(0.5, frequency=520.0, rng=rng())
    assert peak_frequency(square) == pytest.approx(520.0, rel=0.01)
    # a square wave: odd harmonics, no even ones
    assert band_level(square, 1500, 1620) > 100 * band_level(square, 1000, 1080)


@pytest.mark.parametrize("seed", range(4))
def test_t3_alarm_timing(seed):
    y, info = s.alarm_clip(rng(seed), kind="t3_piezo", cycles=2, room=False)
    assert info["kind"] == "t3_piezo" and info["cycles"] == 2 and info["room"] is False
    assert np.max(np.abs(y)) == pytest.approx(0.5) and info["duration"] == len(y) / SR
    t = onsets(y)
    assert len(t) == 6 and t[0] <= 0.02  # the clip starts at its first beep (attacks take up to 20 ms)
    gaps = np.diff(t)
    # 0.5 s on, 0.5 s off (1 s onset to onset), then 1.5 s silence; all scaled by 0.93-1.07
    assert np.all((gaps[[0, 1, 3, 4]] > 0.91) & (gaps[[0, 1, 3, 4]] < 1.09))
    assert 1.85 < gaps[2] < 2.15
    assert 6.5 * 0.92 < info["duration"] < 6.5 * 1.08  # 4 s a cycle, then 2.5 s: ends at the last beep's offset
    assert 2800 <= info["frequency"] <= 3600


def test_t4_co_and_520_hz_alarms():
    y, info = s.alarm_clip(rng(), kind="t4_co", room=False)
    t = onsets(y, frame=0.002)
    assert info["cycles"] == 1 and len(t) == 4 and np.all(np.abs(np.diff(t) - 0.2) < 0.02)
    assert 3100 <= peak_frequency(y) <= 3400 and 0.6 < info["duration"] < 0.76
    y, info = s.alarm_clip(rng(), kind="t3_520", cycles=1, room=True)
    assert peak_frequency(y) == pytest.approx(520, rel=0.03) and info["room"] is True
    assert 2.5 * 0.92 < info["duration"] < 2.5 * 1.08
    y, info = s.alarm_clip(rng(), kind="t3_piezo", frequency=3333.0, room=False)
    assert info["frequency"] == 3333.0 and peak_frequency(y) == pytest.approx(3333.0, rel=0.01)
    with pytest.raises(ValueError, match="unknown alarm kind"):
        s.alarm_clip(rng(), kind="siren")


# ---------------------------------------------------------------- backgrounds
def test_mains_hum_is_harmonics_of_50_or_60_hz():
    for seed in range(4):
        y = s.mains_hum(4 * SR, rng=rng(seed))
        f = peak_frequency(y)
        assert f < 1600
        assert any(abs(f / base - round(f / base)) < 0.02 for base in (50.0, 60.0))
        assert band_level(y, 20, 1600) > 100 * band_level(y, 2000, 8000)


def test_babble_music_and_clicks_character():
    b = s.babble(4 * SR, rng=rng(), talkers=1)
    assert band_level(b, 80, 4500) > 0.8 * band_level(b, 0, SR / 2)  # speech band
    level = np.sqrt(np.mean(b[: 4 * SR // 160 * 160].reshape(-1, 160) ** 2, axis=1))
    assert np.sum(level < 0.1 * level.max()) > 20  # pauses between syllables and phrases
    m = s.music(4 * SR, rng=rng())
    assert 100 < peak_frequency(m) < 4000
    c = s.clicks(4 * SR, rng=rng(1))
    assert np.max(np.abs(c)) > 4 * s.rms(c)  # impulsive
    assert s.rms(s.near_silence(SR, rng=rng())) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", sorted(s.BACKGROUND_KINDS))
def test_background_clip_level_and_info(kind):
    y, info = s.background_clip(rng(5), kind=kind)
    assert info["kind"] == kind and info["duration"] == len(y) / SR and 20 <= info["duration"] <= 40
    assert info["second"] is None or info["second"] not in (kind, "silence")
    assert 20 * np.log10(s.rms(y)) == pytest.approx(info["dbfs"], abs=0.06)
    assert (-50 <= info["dbfs"] <= -42) if kind == "silence" else (info["dbfs"] <= -15)
    assert np.max(np.abs(y)) <= 0.9 + 1e-9


def test_noise_background_level():
    for seed in range(6):
        y = s.noise_background(2.0, rng=rng(seed))
        assert -40.05 <= 20 * np.log10(s.rms(y)) <= -19.95


# ---------------------------------------------------------------- distractors
@pytest.mark.parametrize("seed", range(4))
def test_distractor_frequencies(seed):
    assert 780 <= peak_frequency(s.appliance_beep(rng(seed))) <= 2520
    assert 395 <= peak_frequency(s.phone_ring(rng(seed))) <= 485
    w = s.whistle(rng(seed))
    hop = 1024
    frames = [w[i : i + hop] for i in range(0, len(w) - hop, hop // 2)]
    strong = [f for f in frames if s.rms(f) > 0.3 * max(s.rms(g) for g in frames)]
    freqs = [peak_frequency(f) for f in strong]
    assert 760 <= min(freqs) and max(freqs) <= 3950
    assert np.log2(max(freqs) / min(freqs)) >= 0.33 * 0.9  # a glide of at least a third of an octave


def test_tone_or_clicks_is_a_low_tone_or_a_click_train():
    kinds = set()
    for seed in range(8):
        y = s.tone_or_clicks(rng(seed))
        if np.count_nonzero(y) < len(y) // 100:
            assert np.all(np.diff(np.flatnonzero(y)) == 800)
            kinds.add("clicks")
        else:
            assert 300 <= peak_frequency(y) <= 1200
            kinds.add("tone")
    assert kinds == {"clicks", "tone"}


# ---------------------------------------------------------------- targets and scenes
def test_harmonic_chirp_rises():
    for seed in range(4):
        y = s.harmonic_chirp(rng(seed))
        fifth = len(y) // 5
        start, end = peak_frequency(y[:fifth]), peak_frequency(y[-fifth:])
        assert 1500 <= start < end <= 4000


def test_planted_scene_bursts_where_told():
    y = s.planted_scene(4.0, [(1.0, 1.5), (2.5, 3.2)], rng=rng(), freq=2000.0, distractors=2)
    assert len(y) == 4 * SR and y.dtype == np.float32
    inside = band_level(y[SR : int(1.5 * SR)], 1900, 2100)
    outside = band_level(y[int(1.6 * SR) : int(2.4 * SR)], 1900, 2100)
    assert inside > 100 * outside
    assert peak_frequency(y[int(2.5 * SR) : int(3.2 * SR)]) == pytest.approx(2000, abs=3)
    quiet = s.planted_scene(4.0, [], rng=rng(), distractors=0)
    assert np.std(quiet) == pytest.approx(0.03, rel=0.05)


def test_kitchen_scene_events():
    y, events = s.kitchen_scene(rng())
    assert len(y) == 26 * SR and np.max(np.abs(y)) <= 1.0
    assert [on for on, _ in events] == [3.0, 15.5]
    assert 6.5 * 0.92 < events[0][1] - 3.0 < 6.5 * 1.08  # two T3 cycles
    assert 2.5 * 0.92 < events[1][1] - 15.5 < 2.5 * 1.08  # one
    alarm_band = (2800, 3500)
    inside = band_level(y[int(3.0 * SR) : int(3.4 * SR)], *alarm_band)
    before = band_level(y[int(2.4 * SR) : int(2.8 * SR)], *alarm_band)
    assert inside > 10 * before
