"""soundnet listen over a run's life: SIGINT and SIGTERM close the open event, a sound
device (sounddevice replaced at the device boundary only) that overruns or disappears,
a missing PortAudio, and memory that stays flat over a long stream (the 10-hour soak is
bench/live.py soak; this one is minutes long to stay fast)."""

from __future__ import annotations

import _thread
import json
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
from clirun import child_env, cli, fails, ok, soundnet
from test_live import alarm_scene, json_lines

from soundnet.signals import SR, alarm_clip, mix_in, noise_background
from soundnet.streams import DeviceSource

LIVE = ("--min-duration", "0.2", "--on", "0.9", "--off", "0.5")


def pcm(y: np.ndarray) -> bytes:
    return (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()


def read_line(process, timeout: float = 60.0) -> dict:
    found: list = []
    reader = threading.Thread(target=lambda: found.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert found and found[0], "no line from listen"
    return json.loads(found[0])


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_listen_cleanly_with_the_open_event_closed(tmp_path, stop):
    y, _ = alarm_scene(6.0, [2.0], seed=4)
    log = tmp_path / "events.log"
    args = ["listen", "-i", "-", "--format", "s16le", "--rate", SR, *LIVE, "--hold", "30", "--log", log]
    process = subprocess.Popen(
        soundnet(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()
    )
    try:
        process.stdin.write(pcm(y))  # the stream stays open: the event too (30 s hold)
        process.stdin.flush()
        start = read_line(process)
        assert start["event"] == "start"
        process.send_signal(stop)
        end = read_line(process)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert end["event"] == "end" and start["stream_time"] < end["stream_time"] <= 6.0  # closed at the stop (30 s hold)
    assert f"stopped by {stop.name} after" in err.decode()
    assert [line["event"] for line in json_lines(log.read_text())] == ["start", "end"]


class FakeSounddevice(types.ModuleType):
    """sounddevice at the device boundary: one input device that plays ``audio`` in
    blocks from its own thread (as PortAudio's callback would, faster than real time),
    stops after ``lose_after`` blocks (unplugged), refuses ``refuse`` reopenings, then
    plays the rest; when all is played it stops listen as Ctrl-C would."""

    class PortAudioError(Exception):
        pass

    def __init__(self, audio: np.ndarray, *, rate: int = 48000, lose_after: int | None = None, refuse: int = 1):
        super().__init__("sounddevice")
        self.audio, self.rate, self.lose_after, self.refuse = audio.astype(np.float32), rate, lose_after, refuse
        self.position, self.opened = 0, 0
        self.default = types.SimpleNamespace(device=(0, 0))
        fake = self

        class InputStream:
            def __init__(self, *, device, channels, samplerate, blocksize, dtype, callback):
                if fake.opened and fake.refuse > 0:
                    fake.refuse -= 1
                    raise fake.PortAudioError("Device unavailable [PaErrorCode -9985]")
                assert samplerate == fake.rate and channels == 1 and dtype == "float32"
                fake.opened += 1
                self.blocksize, self.callback, self.active = blocksize, callback, False

            def start(self):
                self.active = True
                threading.Thread(target=self._play, daemon=True).start()

            def _play(self):
                blocks = 0
                while fake.position < len(fake.audio):
                    if fake.lose_after is not None and blocks == fake.lose_after and fake.opened == 1:
                        self.active = False  # unplugged
                        return
                    block = fake.audio[fake.position : fake.position + self.blocksize]
                    fake.position += len(block)
                    self.callback(block[:, None], len(block), None, None)
                    blocks += 1
                    time.sleep(0.001)
                time.sleep(1.0)  # let listen take the last blocks, then press Ctrl-C
                _thread.interrupt_main(signal.SIGINT)

            def abort(self):
                self.active = False

            def close(self):
                pass

        self.InputStream = InputStream

    def query_devices(self, device=None, kind=None):
        info = {"name": "Fake USB Mic", "max_input_channels": 1, "default_samplerate": float(self.rate)}
        if device not in (None, 0, "Fake", "Fake USB Mic"):
            raise ValueError(f"No input device matching {device!r}")
        return info if kind == "input" or device is not None else [info, {**info, "name": "Speaker", "max_input_channels": 0}]

    def check_input_settings(self, *, device, channels, samplerate, dtype):
        if samplerate != self.rate:
            raise self.PortAudioError("Invalid sample rate")


def device_scene(seed: int, onsets: list[float], seconds: float, rate: int = 48000) -> np.ndarray:
    import soxr

    y, _ = alarm_scene(seconds, onsets, seed=seed)
    return soxr.resample(y, SR, rate).astype(np.float32)


def test_a_device_is_listened_to_at_its_own_rate_and_listed(monkeypatch):
    fake = FakeSounddevice(device_scene(6, [1.5], 6.0))
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    listed = ok(cli("listen", "--list-devices")).stdout
    assert listed == "0\tFake USB Mic\t1 channel(s)\t48000 Hz (default)\n"
    result = ok(cli("listen", "--device", "Fake", *LIVE))
    assert [line["event"] for line in json_lines(result.stdout)] == ["start", "end"]
    assert "device 'Fake USB Mic' (48000 Hz)" in result.stderr and "stopped by SIGINT after 6.0 s" in result.stderr
    fails(cli("listen", "--device", "7"), "input device 7", "--list-devices")


def test_a_device_that_disappears_is_reopened_and_the_stream_time_skips_the_gap(monkeypatch):
    audio = device_scene(7, [1.0, 6.0], 9.0)
    fake = FakeSounddevice(audio, lose_after=int(4.0 * 48000 / (0.02 * 48000)), refuse=1)  # lost at 4 s of audio
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    result = ok(cli("listen", "-d", "0", *LIVE, "--hold", "0.5"))
    err = result.stderr
    assert "device 'Fake USB Mic' (48000 Hz): lost (its stream stopped); trying to reopen it" in err
    assert "reopening failed (attempt 1: Device unavailable" in err and "back after" in err
    assert "1 gap(s)" in err
    lines = json_lines(result.stdout)
    assert [line["event"] for line in lines] == ["start", "end", "start", "end"]
    assert 0.9 <= lines[0]["stream_time"] <= 1.2
    assert lines[2]["stream_time"] > 6.0 + 1.0  # the second alarm, after the gap (>= 1.5 s away)


def test_overruns_are_counted_and_the_dropped_audio_becomes_silence(monkeypatch):
    fake = FakeSounddevice(np.zeros(48000, np.float32))
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    source = DeviceSource(0, sample_rate=SR, block_seconds=0.02, queue_seconds=0.06)  # room for 3 blocks
    source._open = types.MethodType(DeviceSource._open, source)
    captured = {}
    fake.InputStream = lambda **kw: types.SimpleNamespace(
        start=lambda: captured.update(kw), active=True, abort=lambda: None, close=lambda: None
    )
    source._open()
    callback = captured["callback"]
    block = np.ones((960, 1), np.float32)
    for _ in range(5):
        callback(block, 960, None, None)
    callback(block, 960, None, types.SimpleNamespace(input_overflow=True))  # PortAudio's own overflow, dropped too
    assert source.overruns == 4 and source.dropped_seconds == pytest.approx(3 * 0.02)
    source._open = lambda: None  # the stream is open already
    got = []
    for item in source:
        got.append(item)
        if len(got) == 3:  # the queue is drained: the next block goes in, after the dropped audio as silence
            callback(block * 2, 960, None, None)
        if len(got) == 5:
            source.close()
    assert [len(b) for b in got] == [960, 960, 960, 3 * 960, 960]
    assert not got[3].any() and (got[4] == 2).all()


def test_a_missing_portaudio_or_sounddevice_says_what_to_install(monkeypatch, tmp_path):
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    fails(cli("listen"), "needs the PortAudio library", "apt-get install libportaudio2", "--input -")
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    fails(cli("listen", "--list-devices"), "needs the sounddevice package", "soundnet[live]")


def vm_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_soak_memory_stays_flat_over_a_long_stream():
    """6 minutes of audio with an alarm every 30 s, fed as fast as listen takes it: the
    peak memory after 6 minutes is that after 1.5 (+4 MiB), every alarm found."""
    minutes, period = 6, 30.0
    rng = np.random.default_rng(9)
    piece = noise_background(period, rng=rng).astype(np.float64)
    clip, _ = alarm_clip(rng, kind="t3_piezo", cycles=1, room=False)
    piece = pcm(mix_in(piece, clip * 0.5, int(10.0 * SR)))  # the alarm at 10 s of each piece
    args = ["listen", "-i", "-", "--format", "s16le", "--rate", SR, *LIVE]
    process = subprocess.Popen(
        soundnet(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()
    )
    peaks = {}
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(process.stdout.read()), daemon=True)
    reader.start()
    try:
        pieces = int(minutes * 60 / period)
        for i in range(pieces):
            process.stdin.write(piece)  # blocks while listen is behind: as fast as it is taken
            if i + 1 in (pieces // 4, pieces):
                process.stdin.flush()
                time.sleep(0.3)
                peaks[i + 1] = vm_peak_kib(process.pid)
        process.stdin.close()
        process.wait(120)
        reader.join(10)
    finally:
        process.kill()
    err = process.stderr.read().decode()
    assert process.returncode == 0, err
    lines = json_lines(out[0].decode())
    assert [line["event"] for line in lines] == ["start", "end"] * pieces
    assert f"after {minutes * 60:.1f} s of stream" in err
    early, late = peaks[pieces // 4], peaks[pieces]
    assert late - early <= 4096, peaks
