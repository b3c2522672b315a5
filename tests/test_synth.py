"""Tests of soundnet.synth on tiny generated clips whose answer is known."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.synth import PEAK_LIMIT, RMS_FLOOR, synthesize

SR = 16000


def write(path: Path, y: np.ndarray, sr: int = SR, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, **kwargs)
    return path


def tone(seconds: float, freq: float = 1000.0, sr: int = SR, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)  # 10 ms ramps, no clicks
    return amplitude * fade * np.sin(2 * np.pi * freq * t)


def noise(seconds: float, rms: float, seed: int, sr: int = SR) -> np.ndarray:
    return rms * np.random.default_rng(seed).standard_normal(round(seconds * sr))


def pink(seconds: float, rms: float, seed: int, sr: int = SR) -> np.ndarray:
    white = np.fft.rfft(np.random.default_rng(seed).standard_normal(round(seconds * sr)))
    white[1:] /= np.sqrt(np.arange(1, len(white)))
    white[0] = 0
    y = np.fft.irfft(white, n=round(seconds * sr))
    return rms * y / np.sqrt(np.mean(y**2))


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def span(event: Event, sr: int = SR) -> slice:
    return slice(round(event.onset * sr), round(event.offset * sr))


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    """Target beeps in mixed formats, mixed backgrounds, and a folder of distractors."""
    events = tmp_path / "beep"
    write(events / "a.wav", tone(0.3))
    write(events / "b.flac", tone(0.25, sr=22050, amplitude=0.3), sr=22050)
    write(events / "sub" / "c.ogg", tone(0.3, amplitude=0.8))
    backgrounds = tmp_path / "backgrounds"
    write(backgrounds / "white.wav", noise(3.0, 0.01, seed=1))
    stereo = np.stack([pink(3.0, 0.02, seed=2, sr=44100), pink(3.0, 0.02, seed=3, sr=44100)], axis=1)
    write(backgrounds / "deep" / "pink_stereo.wav", stereo, sr=44100)
    write(backgrounds / "short.flac", noise(0.4, 0.01, seed=4))
    (backgrounds / "notes.txt").write_text("not audio")
    dog = tmp_path / "dog"
    write(dog / "bark.wav", tone(0.2, freq=3000.0))
    return {"events": events, "backgrounds": backgrounds, "dog": dog, "tmp": tmp_path}


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_gives_identical_bytes(data):
    kwargs = {"n": 6, "duration": 1.0, "distractor_dirs": [data["dog"]], "seed": 7}
    first = synthesize(data["events"], data["backgrounds"], data["tmp"] / "one", **kwargs)
    second = synthesize(data["events"], data["backgrounds"], data["tmp"] / "two", **kwargs)
    one, two = files_of(data["tmp"] / "one"), files_of(data["tmp"] / "two")
    assert sorted(one) == ["annotations.tsv"] + [f"mixture_{i:04d}.wav" for i in range(6)]
    assert one == two
    assert first == second


def test_different_seeds_differ(data):
    synthesize(data["events"], data["backgrounds"], data["tmp"] / "one", n=4, duration=1.0, seed=1)
    synthesize(data["events"], data["backgrounds"], data["tmp"] / "two", n=4, duration=1.0, seed=2)
    one, two = files_of(data["tmp"] / "one"), files_of(data["tmp"] / "two")
    assert all(one[name] != two[name] for name in one if name.endswith(".wav"))


def test_smaller_n_is_a_prefix(data):
    synthesize(data["events"], data["backgrounds"], data["tmp"] / "few", n=3, duration=1.0)
    synthesize(data["events"], data["backgrounds"], data["tmp"] / "many", n=5, duration=1.0)
    few, many = files_of(data["tmp"] / "few"), files_of(data["tmp"] / "many")
    assert all(few[f"mixture_{i:04d}.wav"] == many[f"mixture_{i:04d}.wav"] for i in range(3))


def test_output_files_and_annotations(data):
    out = data["tmp"] / "out"
    events = synthesize(data["events"], data["backgrounds"], out, n=12, duration=1.5, distractor_dirs=[data["dog"]], seed=3)
    for i in range(12):
        info = sf.info(str(out / f"mixture_{i:04d}.wav"))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 1, 24000, "PCM_16")
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"

    rows = read_tsv(out / "annotations.tsv")
    assert rows[0] == ["filename", "onset", "offset", "event_label", "group"]
    expected = []
    for i in range(12):
        name = f"mixture_{i:04d}.wav"
        mine = [e for e in events if e.filename == name]
        group = f"fold{i % 3 + 1}"  # 3 clips and backgrounds: 3 folds, dealt in turn
        expected += [[e.filename, f"{e.onset:.3f}", f"{e.offset:.3f}", e.label, group] for e in mine] or [
            [name, "", "", "", group]
        ]
    assert rows[1:] == expected
    assert {e.label for e in events} == {"beep", "dog"}
    clip_lengths = {"beep": (0.3, 0.25), "dog": (0.2,)}
    for e in events:
        assert 0 <= e.onset < e.offset <= 1.5
        assert any(abs(e.offset - e.onset - d) <= 0.002 for d in clip_lengths[e.label])


def test_target_label_option_and_default_from_folder(data, monkeypatch):
    events = synthesize(
        data["events"], data["backgrounds"], data["tmp"] / "out", n=3, duration=1.0, presence=1.0,
        target_label="smoke_alarm",
    )  # fmt: skip
    assert [e.label for e in events] == ["smoke_alarm"] * 3
    monkeypatch.chdir(data["events"])  # "." is labelled by the folder it stands for
    events = synthesize(Path("."), data["backgrounds"], data["tmp"] / "out2", n=2, duration=1.0, presence=1.0)
    assert [e.label for e in events] == ["beep", "beep"]


def test_presence_zero_and_one(data):
    none = synthesize(data["events"], data["backgrounds"], data["tmp"] / "none", n=5, duration=1.0, presence=0.0)
    assert none == []
    assert [row[0] for row in read_tsv(data["tmp"] / "none" / "annotations.tsv")[1:]] == [
        f"mixture_{i:04d}.wav" for i in range(5)
    ]

    every = synthesize(data["events"], data["backgrounds"], data["tmp"] / "all", n=5, duration=1.0, presence=1.0)
    assert [e.filename for e in every] == [f"mixture_{i:04d}.wav" for i in range(5)]
    assert {e.label for e in every} == {"beep"}


def test_annotations_mark_where_energy_was_injected(data):
    quiet = data["tmp"] / "quiet"
    write(quiet / "hiss.wav", noise(3.0, 0.003, seed=5))
    out = data["tmp"] / "out"
    events = synthesize(data["events"], quiet, out, n=6, duration=1.0, ebrs=[20.0], presence=1.0, seed=11)
    assert len(events) == 6
    for e in events:
        y, _ = sf.read(str(out / e.filename))
        inside = np.zeros(len(y), bool)
        inside[span(e)] = True
        assert rms(y[inside]) > 5 * rms(y[~inside])
        # the energy inside is the 1 kHz beep
        spectrum = np.abs(np.fft.rfft(y[inside]))
        assert np.fft.rfftfreq(inside.sum(), 1 / SR)[spectrum.argmax()] == pytest.approx(1000, abs=10)


@pytest.mark.parametrize("ebr", [-6.0, 0.0, 6.0])
def test_measured_ebr_matches_requested(tmp_path, ebr):
    # A background exactly one mixture long is taken whole, so the test knows it.
    background = noise(1.0, 0.05, seed=6)
    write(tmp_path / "bg" / "bg.wav", background)
    write(tmp_path / "beep" / "a.wav", tone(0.3, amplitude=0.2))
    events = synthesize(
        tmp_path / "beep",
        tmp_path / "bg",
        tmp_path / "out",
        n=3,
        duration=1.0,
        ebrs=[ebr],
        presence=1.0,
        seed=12,
    )
    for e in events:
        y, _ = sf.read(str(tmp_path / "out" / e.filename))
        part = span(e)
        measured = 20 * math.log10(rms(y[part] - background[part]) / rms(background[part]))
        assert measured == pytest.approx(ebr, abs=0.5)


def test_loud_mixture_is_scaled_not_clipped_and_keeps_its_ebr(tmp_path):
    background = 0.9 * np.sign(noise(1.0, 1.0, seed=8))  # square-ish noise at 0.9 peak
    write(tmp_path / "bg" / "bg.wav", background, subtype="FLOAT")
    write(tmp_path / "beep" / "a.wav", tone(0.3))
    events = synthesize(tmp_path / "beep", tmp_path / "bg", tmp_path / "out", n=2, duration=1.0, ebrs=[6.0], presence=1)
    for e in events:
        y, _ = sf.read(str(tmp_path / "out" / e.filename))
        assert np.max(np.abs(y)) <= PEAK_LIMIT + 1e-4
        outside = np.ones(len(y), bool)
        outside[span(e)] = False
        scale = y[outside] @ background[outside] / (background[outside] @ background[outside])
        assert scale < 0.9
        part = span(e)
        measured = 20 * math.log10(rms(y[part] / scale - background[part]) / rms(background[part]))
        assert measured == pytest.approx(6.0, abs=0.5)


def test_silent_background_uses_the_floor(tmp_path):
    write(tmp_path / "bg" / "silence.wav", np.zeros(SR))
    write(tmp_path / "beep" / "a.wav", tone(0.3))
    (event,) = synthesize(tmp_path / "beep", tmp_path / "bg", tmp_path / "out", n=1, duration=1.0, ebrs=[0.0], presence=1)
    y, _ = sf.read(str(tmp_path / "out" / event.filename))
    assert rms(y[span(event)]) == pytest.approx(RMS_FLOOR, rel=0.05)


def test_stereo_44k_background_is_mixed_to_mono_and_resampled(tmp_path):
    t = np.arange(3 * 44100) / 44100
    sine = np.sin(2 * np.pi * 440 * t)
    write(tmp_path / "bg" / "stereo.wav", np.stack([0.6 * sine, 0.2 * sine], axis=1), sr=44100)
    write(tmp_path / "beep" / "a.wav", tone(0.3))
    synthesize(tmp_path / "beep", tmp_path / "bg", tmp_path / "out", n=2, duration=1.0, presence=0.0)
    y, sr = sf.read(str(tmp_path / "out" / "mixture_0000.wav"))
    assert (sr, y.ndim, len(y)) == (SR, 1, SR)
    assert rms(y[100:-100]) == pytest.approx(0.4 / math.sqrt(2), rel=0.02)
    assert np.fft.rfftfreq(len(y), 1 / SR)[np.abs(np.fft.rfft(y)).argmax()] == pytest.approx(440, abs=2)


def test_short_background_is_looped(tmp_path):
    write(tmp_path / "bg" / "short.wav", noise(0.25, 0.1, seed=9))
    write(tmp_path / "beep" / "a.wav", tone(0.3))
    synthesize(tmp_path / "beep", tmp_path / "bg", tmp_path / "out", n=1, duration=1.0, presence=0.0)
    y, _ = sf.read(str(tmp_path / "out" / "mixture_0000.wav"))
    assert len(y) == SR
    assert all(rms(quarter) == pytest.approx(0.1, rel=0.1) for quarter in np.split(y, 4))


# Error paths: each message is one line naming the culprit.


def raises(text: str):
    return pytest.raises(SoundnetError, match=re.escape(text))


def test_missing_folder(data):
    missing = data["tmp"] / "nope"
    with raises(f"{missing}: no such folder"):
        synthesize(missing, data["backgrounds"], data["tmp"] / "out")
    with raises(f"{missing}: no such folder"):
        synthesize(data["events"], data["backgrounds"], data["tmp"] / "out", distractor_dirs=[missing])


def test_folder_without_audio(data):
    empty = data["tmp"] / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no audio here")
    with raises(f"{empty}: no audio files"):
        synthesize(data["events"], empty, data["tmp"] / "out")


def test_event_longer_than_mixture(data):
    long_clip = write(data["events"] / "long.wav", tone(1.2))
    with raises(f"{long_clip}: clip of 1.200 s is longer than the mixture duration of 1.000 s"):
        synthesize(data["events"], data["backgrounds"], data["tmp"] / "out", duration=1.0)


def test_unreadable_clip(data):
    broken = data["backgrounds"] / "broken.wav"
    broken.write_bytes(b"RIFF, but not really a wave file")
    with raises(f"{broken}: cannot read audio"):
        synthesize(data["events"], data["backgrounds"], data["tmp"] / "out", duration=1.0)


def test_silent_event_clip(data):
    silent = write(data["events"] / "silent.wav", np.zeros(1000))
    with raises(f"{silent}: clip is silent"):
        synthesize(data["events"], data["backgrounds"], data["tmp"] / "out", n=20, duration=1.0, presence=1.0)


def test_distractor_with_the_target_label(data):
    same = write(data["tmp"] / "other" / "beep" / "x.wav", tone(0.2)).parent
    with raises(f"{same}: distractor folder has the target label 'beep'"):
        synthesize(data["events"], data["backgrounds"], data["tmp"] / "out", distractor_dirs=[same])


@pytest.mark.parametrize(
    "option, match",
    [
        ({"n": 0}, "n=0"),
        ({"duration": 0.0}, "duration=0.0"),
        ({"duration": -1.0}, "duration=-1.0"),
        ({"presence": 1.5}, "presence=1.5"),
        ({"presence": -0.1}, "presence=-0.1"),
        ({"ebrs": ()}, "ebrs=[]"),
        ({"ebrs": [0.0, math.nan]}, "ebrs="),
        ({"seed": -1}, "seed=-1"),
        ({"sr": 0}, "sr=0"),
    ],
)
def test_bad_arguments(data, option, match):
    with raises(match):
        synthesize(data["events"], data["backgrounds"], data["tmp"] / "out", **option)
    assert not (data["tmp"] / "out").exists(), "arguments are checked before anything is written"


def test_failed_write_leaves_no_temporary_file(data, monkeypatch):
    from soundnet import synth

    def failing_write(path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise sf.LibsndfileError(0, "disk full")

    monkeypatch.setattr(synth.sf, "write", failing_write)
    out = data["tmp"] / "out"
    with raises(f"{out / 'mixture_0000.wav'}: cannot write"):
        synthesize(data["events"], data["backgrounds"], out, n=2, duration=1.0)
    assert list(out.iterdir()) == []


def test_clips_are_found_as_soundnet_finds_audio(data):
    """Rule change (one discovery, soundnet.audio.audio_files): only the extensions of
    AUDIO_EXTENSIONS count (before: also every format libsndfile names, such as .raw)."""
    (data["events"] / "headerless.raw").write_bytes(b"\x00\x01" * 100)  # unreadable without a header
    (data["events"] / "._a.wav").write_bytes(b"\x00\x05\x16\x07")  # hidden: skipped
    (data["events"] / ".trash").mkdir()
    (data["events"] / ".trash" / "old.wav").write_bytes(b"junk")
    events = synthesize(data["events"], data["backgrounds"], data["tmp"] / "out", n=4, duration=1.0, presence=1.0)
    assert len(events) == 4
    assert (data["tmp"] / "out" / "mixture_0003.wav").exists()
