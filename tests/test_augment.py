"""Tests of soundnet.augment on audio made here, with answers known in advance.

A 1 kHz tone burst at a known onset and offset over quiet noise: wherever the
augmentation moves it, its energy envelope must still sit inside the returned event.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import soundfile as sf

from soundnet.augment import augment, augmentation_seed, impulse_response
from soundnet.config import AugmentConfig
from soundnet.errors import SoundnetError

SR = 16000
ONSET, OFFSET = 1.0, 1.6
PROBABILITIES = [f.name for f in dataclasses.fields(AugmentConfig) if f.name.endswith("_probability")]
OFF = AugmentConfig(copies=1, **dict.fromkeys(PROBABILITIES, 0.0))  # copies >= 1: augmentation on (the default is 0)
EVERYTHING = AugmentConfig(copies=1, **dict.fromkeys(PROBABILITIES, 1.0))


def burst_scene(seconds: float = 3.0, *, amplitude: float = 0.3, floor: float = 0.001, seed: int = 0) -> np.ndarray:
    """A 1 kHz burst from ONSET to OFFSET (5 ms fades) over white noise of RMS ``floor``."""
    t = np.arange(int(seconds * SR)) / SR
    inside = (t >= ONSET) & (t < OFFSET)
    ramp = np.clip(np.minimum(t - ONSET, OFFSET - t) / 0.005, 0, 1)
    y = np.where(inside, amplitude * ramp * np.sin(2 * np.pi * 1000 * t), 0.0)
    return (y + floor * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


def burst_extent(y: np.ndarray, *, below_db: float = 10.0) -> tuple[float, float]:
    """First and last 5 ms frame whose energy is within ``below_db`` of the loudest 10 % of frames."""
    hop = SR // 200
    frames = y[: len(y) // hop * hop].astype(np.float64).reshape(-1, hop)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    loud = np.flatnonzero(level >= np.percentile(level, 95) - below_db)
    return loud[0] * hop / SR, (loud[-1] + 1) * hop / SR


def write_noise(path, seconds: float, *, sr: int = SR, seed: int = 1):
    subtype = "FLOAT" if path.suffix == ".wav" else "PCM_24"
    sf.write(path, 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr)), sr, subtype=subtype)
    return path


def only(name: str, **ranges) -> AugmentConfig:
    return dataclasses.replace(OFF, **{name: 1.0}, **ranges)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    noise = [write_noise(tmp_path / "n.wav", 5.0)]
    y = burst_scene()
    a, events_a = augment(y, SR, [(ONSET, OFFSET)], config=EVERYTHING, seed=7, noise=noise)
    b, events_b = augment(y, SR, [(ONSET, OFFSET)], config=EVERYTHING, seed=7, noise=noise)
    c, _ = augment(y, SR, [(ONSET, OFFSET)], config=EVERYTHING, seed=8, noise=noise)
    assert a.tobytes() == b.tobytes() and events_a == events_b
    assert a.shape != c.shape or not np.array_equal(a, c)
    d, _ = augment(y, SR, [(ONSET, OFFSET)], config=EVERYTHING, seed=[7, 0, 3], noise=noise)
    assert d.shape != a.shape or not np.array_equal(a, d)


def test_global_random_state_is_untouched_and_unused(tmp_path):
    noise = [write_noise(tmp_path / "n.wav", 5.0)]
    y = burst_scene()
    outputs = []
    for global_seed in (1, 2):
        random.seed(global_seed)
        np.random.seed(global_seed)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        out, _ = augment(y, SR, [(ONSET, OFFSET)], config=EVERYTHING, seed=3, noise=noise)
        assert random.getstate() == python_state
        after = np.random.get_state()
        assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
        outputs.append(out)
    assert outputs[0].tobytes() == outputs[1].tobytes()


@pytest.mark.parametrize("seed", range(6))
def test_time_stretch_scales_the_events_with_the_burst(seed):
    config = only("stretch_probability", stretch=0.3)
    y = burst_scene()
    out, [(onset, offset)] = augment(y, SR, [(ONSET, OFFSET)], config=config, seed=seed)
    rate = len(y) / len(out)
    assert abs(rate - 1) > 0.01, "the seed drew no stretch worth testing"
    assert out.dtype == np.float32 and len(out) == round(len(y) / rate)
    start, end = burst_extent(out)
    assert abs(start - onset) <= 0.02 and abs(end - offset) <= 0.02, (rate, (start, end), (onset, offset))
    assert onset == pytest.approx(ONSET / rate, abs=1e-3) and offset == pytest.approx(OFFSET / rate, abs=1e-3)


def test_stretched_events_stay_within_the_output():
    out, events = augment(burst_scene(), SR, [(0.0, 3.0)], config=only("stretch_probability", stretch=0.3), seed=1)
    assert events[0][0] == 0.0 and events[0][1] <= len(out) / SR


@pytest.mark.parametrize("probability", PROBABILITIES)
def test_every_transform_keeps_the_events_aligned(tmp_path, probability):
    """The burst's envelope matches the events within 20 ms. The room is short (RT60
    50 ms) so that its tail, which by design stays unlabelled, ends inside that margin."""
    noise = [write_noise(tmp_path / "n.wav", 2.0, sr=22050)]
    ranges = {"rt60_min": 0.05, "rt60_max": 0.05, "snr_db_min": 20.0, "snr_db_max": 20.0}
    y = burst_scene()
    for seed in range(3):
        out, [(onset, offset)] = augment(y, SR, [(ONSET, OFFSET)], config=only(probability, **ranges), seed=seed, noise=noise)
        if probability != "stretch_probability":
            assert len(out) == len(y) and (onset, offset) == (ONSET, OFFSET)
        assert out.dtype == np.float32 and np.isfinite(out).all() and np.max(np.abs(out)) <= 1.0
        start, end = burst_extent(out)
        assert abs(start - onset) <= 0.02 and abs(end - offset) <= 0.02, (probability, seed, (start, end))


def test_each_transform_changes_the_audio(tmp_path):
    noise = [write_noise(tmp_path / "n.wav", 5.0)]
    y = burst_scene(amplitude=0.9)
    for probability in PROBABILITIES:
        out, _ = augment(y, SR, [(ONSET, OFFSET)], config=only(probability), seed=0, noise=noise)
        assert out.shape != y.shape or not np.array_equal(out, y), probability


def test_off_returns_the_input_unchanged(tmp_path):
    noise = [write_noise(tmp_path / "n.wav", 5.0)]
    y = burst_scene()
    for config in (OFF, dataclasses.replace(EVERYTHING, copies=0)):
        out, events = augment(y, SR, [(ONSET, OFFSET), (2.0, 2.5)], config=config, seed=5, noise=noise)
        assert out.dtype == np.float32 and out.tobytes() == y.tobytes() and out is not y
        assert events == [(ONSET, OFFSET), (2.0, 2.5)]


def test_no_noise_files_no_noise():
    y = burst_scene()
    out, _ = augment(y, SR, [(ONSET, OFFSET)], config=only("noise_probability"), seed=0)
    assert out.tobytes() == y.tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_output_is_finite_float32_within_full_scale(tmp_path, seed):
    noise = [write_noise(tmp_path / "n.wav", 5.0)]
    loud = dataclasses.replace(EVERYTHING, gain_db=40.0, snr_db_min=-30.0, snr_db_max=-30.0, eq_db=24.0)
    y = burst_scene(amplitude=1.0)
    for config in (EVERYTHING, loud):
        out, _ = augment(y, SR, [(ONSET, OFFSET)], config=config, seed=seed, noise=noise)
        assert out.dtype == np.float32 and np.isfinite(out).all() and np.max(np.abs(out)) <= 1.0
    out, events = augment(np.zeros(SR, np.float32), SR, [], config=EVERYTHING, seed=seed, noise=noise)
    assert np.isfinite(out).all() and np.max(np.abs(out)) <= 1.0 and events == []


def test_loud_gain_is_scaled_not_clipped():
    y = burst_scene(amplitude=0.9, floor=0.0)
    out, _ = augment(y, SR, [(ONSET, OFFSET)], config=only("gain_probability", gain_db=40.0), seed=2)
    assert np.max(np.abs(out)) == pytest.approx(1.0)
    np.testing.assert_allclose(out, y / np.max(np.abs(y)), atol=1e-6)


@pytest.mark.parametrize(("snr_db", "noise_seconds", "noise_sr"), [(10.0, 5.0, SR), (0.0, 0.7, 22050), (-5.0, 5.0, 8000)])
def test_noise_is_mixed_at_the_drawn_snr(tmp_path, snr_db, noise_seconds, noise_sr):
    """Against the events' RMS; a short file is looped, other rates resampled."""
    noise = [write_noise(tmp_path / "n.flac", noise_seconds, sr=noise_sr)]
    config = only("noise_probability", snr_db_min=snr_db, snr_db_max=snr_db)
    y = burst_scene(amplitude=0.1, floor=0.0)
    out, _ = augment(y, SR, [(ONSET, OFFSET)], config=config, seed=0, noise=noise)
    assert np.max(np.abs(out)) < 1.0, "the test needs a mix that is not scaled down"
    added = out.astype(np.float64) - y
    event = slice(int(ONSET * SR), int(OFFSET * SR))
    measured = 20 * np.log10(np.sqrt(np.mean(y[event].astype(np.float64) ** 2)) / np.sqrt(np.mean(added[event] ** 2)))
    assert measured == pytest.approx(snr_db, abs=1.0)


def test_noise_snr_is_drawn_in_its_range(tmp_path):
    noise = [write_noise(tmp_path / "n.wav", 5.0)]
    config = only("noise_probability", snr_db_min=5.0, snr_db_max=15.0)
    y = burst_scene(amplitude=0.1, floor=0.0)
    event = slice(int(ONSET * SR), int(OFFSET * SR))
    measured = []
    for seed in range(8):
        added = augment(y, SR, [(ONSET, OFFSET)], config=config, seed=seed, noise=noise)[0].astype(np.float64) - y
        measured.append(20 * np.log10(np.sqrt(np.mean(y[event] ** 2.0)) / np.sqrt(np.mean(added[event] ** 2))))
    assert 4.0 <= min(measured) < max(measured) <= 16.0 and max(measured) - min(measured) > 2.0


def test_unreadable_noise_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(SoundnetError, match="bad.wav: cannot read audio") as info:
        augment(burst_scene(), SR, [], config=only("noise_probability"), seed=0, noise=[bad])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("rt60", "drr_db"), [(0.2, 0.0), (0.5, 6.0), (1.2, -3.0)])
def test_impulse_response_has_the_asked_rt60_and_drr(rt60, drr_db):
    """RT60 measured by pyroomacoustics (Schroeder backward integration, T30 extrapolated)."""
    from pyroomacoustics.experimental import measure_rt60

    h = impulse_response(rt60, drr_db=drr_db, sr=SR, rng=np.random.default_rng(0))
    assert h[0] == 1.0 and np.argmax(np.abs(h)) == 0
    assert measure_rt60(h[1:], SR, decay_db=30) == pytest.approx(rt60, rel=0.1)
    assert 10 * np.log10(1.0 / np.sum(h[1:] ** 2)) == pytest.approx(drr_db, abs=1e-6)


def test_augmentation_seed_is_stable_and_distinct():
    assert augmentation_seed("site_A__rec", 0, 0) == 7923178523647938678
    seeds = {augmentation_seed(i, c, s) for i in ("a", "b", "caf\udce9") for c in (0, 1) for s in (0, 1)}
    assert len(seeds) == 12 and all(0 <= s < 2**64 for s in seeds)
    with pytest.raises(SoundnetError, match="copy"):
        augmentation_seed("a", -1, 0)


def test_bad_arguments_are_refused():
    y = burst_scene()
    for bad, word in [
        (dict(y=np.zeros((2, 10), np.float32)), "mono"),
        (dict(y=np.array([0.0, np.nan], np.float32)), "finite"),
        (dict(sr=0), "sr"),
        (dict(events=[(1.0, 0.5)]), "onset"),
        (dict(events=[(-1.0, 0.5)]), "onset"),
        (dict(seed=-1), "seed"),
    ]:
        kwargs = dict(y=y, sr=SR, events=[], config=EVERYTHING, seed=0) | bad
        with pytest.raises(SoundnetError, match=word):
            augment(kwargs.pop("y"), kwargs.pop("sr"), kwargs.pop("events"), **kwargs)


@pytest.mark.parametrize(
    ("values", "word"),
    [
        ({"copies": -1}, "copies"),
        ({"seed": 2**32}, "seed"),
        ({"gain_probability": 1.5}, "gain_probability"),
        ({"noise_probability": -0.1}, "noise_probability"),
        ({"distance_probability": float("nan")}, "distance_probability"),
        ({"gain_db": -1.0}, "gain_db"),
        ({"gain_db": float("nan")}, "gain_db"),
        ({"snr_db_min": 10.0, "snr_db_max": 5.0}, "snr_db_min"),
        ({"snr_db_max": float("inf")}, "snr_db_max"),
        ({"pitch_semitones": 13.0}, "pitch_semitones"),
        ({"stretch": 0.6}, "stretch"),
        ({"eq_db": float("nan")}, "eq_db"),
        ({"rt60_min": 0.0}, "rt60_min"),
        ({"rt60_min": 0.9, "rt60_max": 0.5}, "rt60_min"),
        ({"clipping_percent": 60}, "clipping_percent"),
        ({"distance_db": -3.0}, "distance_db"),
    ],
)
def test_config_ranges_are_checked(values, word):
    with pytest.raises(SoundnetError, match=word) as info:
        AugmentConfig(**values)
    assert "\n" not in str(info.value)


def test_config_section_loads_from_yaml(tmp_path):
    from soundnet.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("augmentation:\n  copies: 0\n  rt60_max: 1.5\n")
    assert load_config(path).augmentation == AugmentConfig(copies=0, rt60_max=1.5)
    path.write_text("augmentation:\n  reverb_probability: 2\n")
    with pytest.raises(SoundnetError, match=r"c.yaml.augmentation: reverb_probability must be in \[0, 1\]"):
        load_config(path)


def dominant_hz(y: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / SR)[np.argmax(spectrum)])


def test_pitch_shift_moves_the_tone_within_the_range():
    config = only("pitch_probability", pitch_semitones=2.0)
    y = burst_scene(floor=0.0)
    event = slice(int((ONSET + 0.1) * SR), int((OFFSET - 0.1) * SR))
    shifts = [12 * np.log2(dominant_hz(augment(y, SR, [], config=config, seed=s)[0][event]) / 1000) for s in range(5)]
    assert all(abs(shift) <= 2.0 + 0.1 for shift in shifts) and max(map(abs, shifts)) > 0.5, shifts


@pytest.mark.parametrize("seed", range(3))
def test_clipping_flattens_the_drawn_share_of_samples(seed):
    y = burst_scene(floor=0.01, seed=seed)
    out, _ = augment(y, SR, [], config=only("clipping_probability", clipping_percent=6), seed=seed)
    at_limits = np.mean((out == out.max()) | (out == out.min()))
    assert 0.015 <= at_limits <= 0.065, at_limits


def test_reverberation_leaves_a_tail_after_the_event():
    config = only("reverb_probability", rt60_min=0.5, rt60_max=0.5)
    y = burst_scene(floor=0.0)
    out, _ = augment(y, SR, [(ONSET, OFFSET)], config=config, seed=0)
    after = slice(int((OFFSET + 0.05) * SR), int((OFFSET + 0.15) * SR))
    assert np.all(y[after] == 0) and np.sqrt(np.mean(out[after] ** 2)) > 0.003
    assert np.max(np.abs(out[: int(ONSET * SR)])) < 1e-6, "nothing comes before the direct sound (FFT rounding aside)"


def test_distance_is_quieter_and_duller():
    config = only("distance_probability", distance_db=12.0)
    t = np.arange(3 * SR) / SR
    y = (0.1 * (np.sin(2 * np.pi * 500 * t) + np.sin(2 * np.pi * 7000 * t))).astype(np.float32)
    out, _ = augment(y, SR, [], config=config, seed=4)
    spectrum_in, spectrum_out = (np.abs(np.fft.rfft(x[SR:])) for x in (y, out))
    low, high = 500 * 2, 7000 * 2  # bins of the 2 s excerpt
    assert spectrum_out[high] / spectrum_out[low] < 0.5 * spectrum_in[high] / spectrum_in[low]
    assert np.sqrt(np.mean(out**2)) < np.sqrt(np.mean(y**2))
