"""Tests of soundnet.audio: sample formats, channels, rates, containers, names, errors, finding files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from numpy.testing import assert_allclose

from soundnet.audio import audio_duration, audio_files, find_audio, is_audio, iter_audio, load_audio
from soundnet.errors import SoundnetError

SR = 16000


def sine(freq: float, seconds: float, sr: int = SR, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float64)


def write(path: Path, y: np.ndarray, sr: int = SR, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, **kwargs)
    return path


def peak_frequency(y: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("subtype", "atol"),
    [("PCM_U8", 1 / 64), ("PCM_16", 1 / 16000), ("PCM_24", 1e-6), ("PCM_32", 1e-7), ("FLOAT", 1e-7), ("DOUBLE", 1e-7)],
)
def test_sample_formats_give_the_same_signal(tmp_path, subtype, atol):
    y = sine(440, 0.5) + 0.1 * sine(3000, 0.5)
    path = write(tmp_path / f"x_{subtype}.wav", y, subtype=subtype)
    got = load_audio(path, sample_rate=SR)
    assert got.dtype == np.float32 and got.ndim == 1
    assert len(got) == len(y)
    assert_allclose(got, y, atol=atol)


@pytest.mark.parametrize("channels", [2, 6])
def test_channels_are_mixed_to_mono_by_mean(tmp_path, channels):
    rng = np.random.default_rng(channels)
    y = 0.2 * rng.standard_normal((4000, channels))
    path = write(tmp_path / "multi.wav", y, subtype="FLOAT")
    got = load_audio(path, sample_rate=SR)
    assert got.shape == (4000,)
    assert_allclose(got, y.mean(axis=1), atol=1e-6)


def test_stereo_opposite_channels_cancel(tmp_path):
    y = sine(440, 0.2)
    path = write(tmp_path / "stereo.wav", np.stack([y, -y], axis=1), subtype="PCM_16")
    assert_allclose(load_audio(path, sample_rate=SR), 0.0, atol=1e-4)


@pytest.mark.parametrize("sr", [44100, 8000, 96000, 22050, 48000])
def test_resampled_to_16k(tmp_path, sr):
    y = sine(1000, 1.3, sr=sr)
    path = write(tmp_path / f"r{sr}.wav", y, sr=sr, subtype="FLOAT")
    got = load_audio(path, sample_rate=SR)
    assert got.dtype == np.float32
    assert abs(len(got) - len(y) * SR / sr) <= 1
    assert abs(peak_frequency(got) - 1000) <= 2
    interior = got[800:-800]  # away from the resampler's edge transients
    assert_allclose(np.sqrt(np.mean(interior**2)), 0.5 / np.sqrt(2), rtol=0.02)


@pytest.mark.parametrize("sr", [44100, 8000])
def test_resampling_streams_the_same_in_small_blocks(tmp_path, sr):
    y = sine(1000, 2.0, sr=sr) + 0.05 * np.random.default_rng(0).standard_normal(2 * sr)
    path = write(tmp_path / "r.wav", y, sr=sr, subtype="FLOAT")
    whole = load_audio(path, sample_rate=SR)
    for block_seconds in (0.05, 0.5, 1.0, 0.37):  # 1.0 s: the file is exactly two blocks long
        blocks = list(iter_audio(path, sample_rate=SR, block_seconds=block_seconds))
        assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
        got = np.concatenate(blocks)
        assert len(got) == len(whole)
        assert_allclose(got, whole, atol=1e-5)


def test_no_resampling_blocks_concatenate_to_the_file(tmp_path):
    y = np.random.default_rng(1).uniform(-0.5, 0.5, 16000)
    path = write(tmp_path / "n.wav", y, subtype="FLOAT")
    for block_seconds in (0.01, 0.25, 1.0, 3.0):
        got = np.concatenate(list(iter_audio(path, sample_rate=SR, block_seconds=block_seconds)))
        assert_allclose(got, y, atol=1e-7)


def test_flac_reads(tmp_path):
    y = sine(1000, 0.5)
    path = write(tmp_path / "x.flac", y, format="FLAC", subtype="PCM_16")
    got = load_audio(path, sample_rate=SR)
    assert_allclose(got, y, atol=1 / 16000)


def test_ogg_reads(tmp_path):
    y = sine(1000, 1.0, sr=44100)
    path = write(tmp_path / "x.ogg", y, sr=44100, format="OGG", subtype="VORBIS")
    got = load_audio(path, sample_rate=SR)
    assert abs(len(got) - SR) <= 1
    assert abs(peak_frequency(got) - 1000) <= 2
    assert is_audio(path)


@pytest.mark.parametrize("name", ["with spaces in name.wav", "café naïve 音声.wav", "ümlaut ß.flac"])
def test_odd_file_names(tmp_path, name):
    y = sine(500, 0.1)
    path = write(tmp_path / "sub dir é" / name, y, format="FLAC" if name.endswith(".flac") else "WAV", subtype="PCM_16")
    assert_allclose(load_audio(path, sample_rate=SR), y, atol=1 / 16000)
    assert find_audio([tmp_path]) == [path]


def test_audio_duration(tmp_path):
    path = write(tmp_path / "d.wav", np.zeros(44100 * 2 + 441), sr=44100)
    assert audio_duration(path) == pytest.approx(2.01)


def test_find_audio_recursive(tmp_path):
    root = tmp_path / "root"
    for rel in ["b.wav", "a.flac", "sub/z.WAV", "sub/deeper/c.ogg", "sub/notes.txt", "x.npy"]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".txt") or rel.endswith(".npy"):
            p.write_text("not audio")
        else:
            write(p, np.zeros(10), format={"flac": "FLAC", "ogg": "OGG"}.get(rel.rsplit(".", 1)[1], "WAV"))
    found = find_audio([root])
    assert set(found) == {root / "b.wav", root / "a.flac", root / "sub/z.WAV", root / "sub/deeper/c.ogg"}
    assert len(found) == len(set(found)) == 4
    # files of one folder come sorted
    top = [p for p in found if p.parent == root]
    assert top == sorted(top)


def test_find_audio_is_deterministic_whatever_the_creation_order(tmp_path):
    names = ["m.wav", "a.wav", "q/b.wav", "c/d.wav", "z.wav", "c/a.wav"]
    orders = []
    for k, order in enumerate([names, names[::-1]]):
        root = tmp_path / f"r{k}"
        for rel in order:
            write(root / rel, np.zeros(10))
        orders.append([p.relative_to(root).as_posix() for p in find_audio([root])])
    assert orders[0] == orders[1]


def test_find_audio_result_is_sorted(tmp_path):
    for rel in ["b.wav", "a/z.wav"]:
        write(tmp_path / rel, np.zeros(10))
    found = find_audio([tmp_path])
    assert found == sorted(found)


def test_find_audio_unique_and_explicit_files(tmp_path):
    a = write(tmp_path / "a.wav", np.zeros(10))
    odd = tmp_path / "recording.dat"
    odd.write_bytes(a.read_bytes())
    found = find_audio([tmp_path, a, a, odd])
    assert found.count(a) == 1
    assert odd in found  # a file named explicitly is taken whatever its extension
    assert_allclose(load_audio(odd, sample_rate=SR), np.zeros(10))


def test_find_audio_folder_without_audio(tmp_path):
    folder = tmp_path / "empty folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "readme.txt").write_text("hi")
    with pytest.raises(SoundnetError, match="empty folder"):
        find_audio([folder])


def test_find_audio_missing_path(tmp_path):
    with pytest.raises(SoundnetError, match="nowhere.wav"):
        find_audio([tmp_path / "nowhere.wav"])


def test_find_audio_symlink_loop_does_not_hang(tmp_path):
    root = tmp_path / "root"
    write(root / "a" / "x.wav", np.zeros(10))
    os.symlink(root, root / "a" / "loop")
    os.symlink(root / "a", root / "a" / "self")
    result: list = []
    worker = threading.Thread(target=lambda: result.append(find_audio([root])), daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "find_audio hangs on a symbolic link loop"
    assert result == [[root / "a" / "x.wav"]]


def _assert_error_names(path: Path) -> None:
    with pytest.raises(SoundnetError) as info:
        load_audio(path, sample_rate=SR)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero bytes.wav"
    path.write_bytes(b"")
    _assert_error_names(path)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    _assert_error_names(path)


def test_truncated_header(tmp_path):
    good = write(tmp_path / "good.wav", sine(440, 0.2), subtype="PCM_16")
    path = tmp_path / "truncated.wav"
    path.write_bytes(good.read_bytes()[:20])
    _assert_error_names(path)


def test_nan_samples(tmp_path):
    y = sine(440, 0.2)
    y[100] = np.nan
    path = write(tmp_path / "nan.wav", y, subtype="FLOAT")
    _assert_error_names(path)


def test_infinite_samples(tmp_path):
    y = sine(440, 0.2)
    y[-1] = np.inf
    path = write(tmp_path / "inf.wav", y, subtype="DOUBLE")
    _assert_error_names(path)


def test_nan_in_a_later_block_while_resampling(tmp_path):
    y = sine(440, 1.0, sr=44100)
    y[-10] = np.nan
    path = write(tmp_path / "late nan.wav", y, sr=44100, subtype="FLOAT")
    with pytest.raises(SoundnetError, match="late nan.wav"):
        list(iter_audio(path, sample_rate=SR, block_seconds=0.1))


def test_empty_wav(tmp_path):
    path = write(tmp_path / "empty.wav", np.zeros(0), subtype="PCM_16")
    _assert_error_names(path)
    with pytest.raises(SoundnetError, match="empty.wav"):
        audio_duration(path)


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(SoundnetError, match=str(tmp_path)):
        load_audio(tmp_path, sample_rate=SR)


def test_missing_file(tmp_path):
    _assert_error_names(tmp_path / "missing.wav")


@pytest.mark.parametrize("target", ["self.wav", "missing.wav"])
def test_looping_or_broken_symlink_is_named_as_such(tmp_path, target):
    link = tmp_path / "self.wav"
    os.symlink(target, link)
    with pytest.raises(SoundnetError, match="self.wav: cannot read audio \\(broken or looping symbolic link\\)"):
        load_audio(link, sample_rate=16000)


def test_find_audio_skips_hidden_names_in_folders_but_takes_them_when_named(tmp_path):
    """Rule change (one discovery, as synth had it): hidden files and folders are skipped
    when a folder is searched, such as macOS's ``._x.wav`` resource files."""
    a = write(tmp_path / "a.wav", np.zeros(10))
    resource = tmp_path / "._a.wav"
    resource.write_bytes(b"\x00\x05\x16\x07 not audio")
    write(tmp_path / ".cache" / "b.wav", np.zeros(10))
    hidden = write(tmp_path / ".hidden.wav", np.zeros(10))
    assert find_audio([tmp_path]) == [a]
    assert find_audio([tmp_path, hidden]) == [a, hidden]


def test_audio_files_of_one_folder(tmp_path):
    for rel in ["z.wav", "sub/c.flac", "b.WAVE", "notes.txt", "x.raw"]:
        p = tmp_path / "root" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    root = tmp_path / "root"
    assert audio_files(root) == [root / "b.WAVE", root / "sub" / "c.flac", root / "z.wav"]
    with pytest.raises(SoundnetError, match="nope: no such folder"):
        audio_files(tmp_path / "nope")
    with pytest.raises(SoundnetError, match="notes.txt: not a folder"):
        audio_files(root / "notes.txt")
    (tmp_path / "none").mkdir()
    with pytest.raises(SoundnetError, match="none: no audio files"):
        audio_files(tmp_path / "none")


def test_a_window_of_frames(tmp_path):
    y = np.random.default_rng(3).uniform(-0.5, 0.5, 20000)
    path = write(tmp_path / "w.wav", y, subtype="FLOAT")
    assert_allclose(load_audio(path, sample_rate=SR, start=1234, stop=5678), y[1234:5678], atol=1e-7)
    for block_seconds in (0.01, 0.1):
        got = np.concatenate(list(iter_audio(path, sample_rate=SR, block_seconds=block_seconds, start=100, stop=19000)))
        assert_allclose(got, y[100:19000], atol=1e-7)
    assert_allclose(load_audio(path, sample_rate=SR, start=19990, stop=10**9), y[19990:], atol=1e-7)
    assert len(load_audio(path, sample_rate=SR, start=30000)) == 0


def test_a_window_is_resampled_as_the_whole_file_is(tmp_path):
    sr = 44100
    y = sine(1000, 1.0, sr=sr)
    path = write(tmp_path / "r.wav", y, sr=sr, subtype="FLOAT")
    got = load_audio(path, sample_rate=SR, start=4410, stop=4410 + 22050)
    assert abs(len(got) - 8000) <= 1
    part = write(tmp_path / "part.wav", y[4410 : 4410 + 22050], sr=sr, subtype="FLOAT")
    whole = load_audio(part, sample_rate=SR)
    assert_allclose(got, whole, atol=1e-6)
