"""Tests of soundnet.plot: a valid PNG of the asked size, windows, errors, long files, no leftovers."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from numpy.testing import assert_allclose

from soundnet import plot
from soundnet.config import FeatureConfig
from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.plot import FIGURE_HEIGHT, plot_detection

SR = 16000
FRAME = 0.01
BURST = (2.0, 3.5)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def burst(tmp_path) -> Path:
    """6 s of quiet noise with a 1 kHz tone burst at 2.0-3.5 s."""
    rng = np.random.default_rng(0)
    t = np.arange(6 * SR) / SR
    y = 0.01 * rng.standard_normal(len(t))
    inside = (t >= BURST[0]) & (t < BURST[1])
    y[inside] += 0.5 * np.sin(2 * np.pi * 1000 * t[inside])
    path = tmp_path / "audio" / "burst.wav"
    path.parent.mkdir()
    sf.write(path, y.astype(np.float32), SR)
    return path


def fake_probabilities(seconds: float = 6.0) -> np.ndarray:
    times = (np.arange(round(seconds / FRAME)) + 0.5) * FRAME
    return np.where((times >= BURST[0]) & (times < BURST[1]), 0.9, 0.05).astype(np.float32)


def draw(out: Path, audio: Path, **kwargs) -> Path:
    args = {
        "sample_rate": SR,
        "probabilities": fake_probabilities(),
        "frame_seconds": FRAME,
        "threshold": 0.5,
        "events": [Event(audio.name, 2.02, 3.48, "tone", 0.9)],
        "reference": [Event(audio.name, *BURST, "tone"), Event(audio.name, 5.0, 5.5, "tone")],
        **kwargs,
    }
    return plot_detection(out, audio=audio, **args)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".part")


def test_writes_a_png_of_the_asked_size(tmp_path, burst):
    out = tmp_path / "plots" / "burst.png"  # the folder is created
    assert draw(out, burst) == out
    assert png_size(out) == (1200, round(FIGURE_HEIGHT * 100))
    assert leftovers(out.parent) == []


def test_width_and_dpi_set_the_size_and_matplotlib_reads_it(tmp_path, burst):
    import matplotlib.image

    out = draw(tmp_path / "small.png", burst, width=8.0, dpi=50, reference=None, title="a title")
    assert png_size(out) == (400, round(FIGURE_HEIGHT * 50))
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (round(FIGURE_HEIGHT * 50), 400)
    assert image[..., :3].std() > 0.05  # not a blank picture


def test_window_is_drawn_and_other_formats_follow_the_suffix(tmp_path, burst):
    out = draw(tmp_path / "window.png", burst, start=1.5, end=4.0)
    assert png_size(out) == (1200, round(FIGURE_HEIGHT * 100))
    # an end past the file is cut to the file's end; the suffix picks the format
    assert b"<svg" in draw(tmp_path / "past.svg", burst, start=5.0, end=60.0).read_bytes()[:1000]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("start", "end"),
    [(-1.0, 2.0), (3.0, 3.0), (4.0, 2.0), (None, 0.0), (7.0, None), (6.5, 9.0), (float("nan"), 2.0)],
)
def test_bad_window_is_an_error_and_keeps_the_old_picture(tmp_path, burst, start, end):
    out = tmp_path / "bad.png"
    out.write_bytes(b"old")
    with pytest.raises(SoundnetError, match="window") as error:
        draw(out, burst, start=start, end=end)
    assert "\n" not in str(error.value)
    assert out.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"frame_seconds": 0.0}, {"threshold": 1.5}, {"probabilities": np.zeros((3, 2))}, {"width": 0.0}, {"sample_rate": 0}],
)
def test_bad_arguments_are_errors(tmp_path, burst, kwargs):
    with pytest.raises(SoundnetError):
        draw(tmp_path / "bad.png", burst, **kwargs)
    assert list(tmp_path.glob("*.png")) == [] and leftovers(tmp_path) == []


def test_unreadable_audio_and_unknown_format_are_errors(tmp_path, burst):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(SoundnetError, match="junk.wav"):
        draw(tmp_path / "x.png", junk)
    with pytest.raises(SoundnetError, match="xyz"):
        draw(tmp_path / "x.xyz", burst)
    assert leftovers(tmp_path) == [] and not (tmp_path / "x.png").exists()


def test_pooled_power_matches_librosa_whole_signal():
    import librosa

    rng = np.random.default_rng(1)
    y = rng.standard_normal(16000 + 123).astype(np.float32)
    hop, n_fft, win = plot._stft_sizes(FeatureConfig(), SR)
    expected = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, center=True, pad_mode="constant")) ** 2
    expected = expected[:, : -(-len(y) // hop)]
    blocks = np.split(y, [1, 700, 5000, 5001, 12000])  # odd block boundaries, one of one sample
    for pool in (1, 3, 7):
        power, n_frames = plot._pooled_power(iter(blocks), hop=hop, n_fft=n_fft, win=win, pool=pool, chunk_frames=13)
        assert n_frames == expected.shape[1]
        assert power.shape == (n_fft // 2 + 1, -(-n_frames // pool))
        for j in range(power.shape[1]):
            assert_allclose(power[:, j], expected[:, j * pool : (j + 1) * pool].mean(axis=1), rtol=1e-3, atol=1e-3)


def test_long_file_is_summarised_in_little_memory(tmp_path, monkeypatch):
    """10 minutes: the spectrogram is pooled to the figure's width and read block by block."""
    seconds = 600
    rng = np.random.default_rng(2)
    audio = tmp_path / "long.wav"
    sf.write(audio, (0.01 * rng.standard_normal(seconds * SR)).astype(np.float32), SR, subtype="PCM_16")
    n_frames = round(seconds / FRAME)
    probabilities = (0.2 * rng.random(n_frames)).astype(np.float32)
    probabilities[30000] = 0.95  # one lone peak
    events = [Event(audio.name, 300.0, 300.01, "tone", 0.95)]

    pooled_power = plot._pooled_power
    seen = {}

    def traced(*args, **kwargs):  # measure the memory of reading and summarising the audio
        tracemalloc.start()
        try:
            seen["power"], seen["frames"] = result = pooled_power(*args, **kwargs)
            seen["peak"] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return result

    monkeypatch.setattr(plot, "_pooled_power", traced)
    out = plot_detection(
        tmp_path / "long.png",
        audio=audio,
        sample_rate=SR,
        probabilities=probabilities,
        frame_seconds=FRAME,
        threshold=0.5,
        events=events,
        reference=[],
    )
    assert seen["frames"] == n_frames and seen["power"].shape[1] <= 1200  # pooled to at most one column a pixel
    assert seen["peak"] < 16e6  # the whole file as float32 would be 38 MB
    assert png_size(out) == (1200, round(FIGURE_HEIGHT * 100))
    assert leftovers(tmp_path) == []


def test_probabilities_longer_than_max_points_keep_their_peaks():
    from matplotlib.figure import Figure

    curve = np.zeros(100_003, np.float32)
    curve[54_321] = 1.0
    ax = Figure().subplots()
    plot._draw_probabilities(ax, curve, FRAME, 0.5, 0.0, len(curve) * FRAME)
    (line,) = [line for line in ax.get_lines() if line.get_label().startswith("probability")]
    x, y = line.get_data()
    assert len(x) <= plot.MAX_POINTS + 2
    assert y.max() == 1.0 and abs(x[np.argmax(y)] - 543.21) < 1.0


def test_spectrogram_frames_come_from_the_feature_config():
    """The spectrogram has the detector's frames: FeatureConfig's own at its rate, the same
    durations at another (n_fft up to a power of two), as the fixed 10/32/25 ms gave before."""
    default = FeatureConfig()
    assert plot._stft_sizes(default, 16000) == (160, 512, 400)
    assert plot._stft_sizes(default, 44100) == (441, 2048, 1102)
    assert plot._stft_sizes(default, 8000) == (80, 256, 200)
    other = FeatureConfig(sample_rate=22050, hop_length=256, n_fft=1000, win_length=800, n_mels=40, n_mfcc=20)
    assert plot._stft_sizes(other, 22050) == (256, 1000, 800)
    assert plot._stft_sizes(other, 44100) == (512, 2048, 1600)


def test_features_set_the_mel_bands_and_the_default_rate(tmp_path, burst, monkeypatch):
    seen = {}
    draw_spectrogram = plot._draw_spectrogram

    def spy(ax, *args, **kwargs):
        draw_spectrogram(ax, *args, **kwargs)
        seen["rate"], seen["ylim"] = args[1], ax.get_ylim()

    monkeypatch.setattr(plot, "_draw_spectrogram", spy)
    config = FeatureConfig(n_mels=40, n_mfcc=20)
    draw(tmp_path / "a.png", burst, sample_rate=None, features=config)
    assert seen == {"rate": 16000, "ylim": (0.0, 40.0)}
