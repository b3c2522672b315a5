"""soundnet listen: latency of the start line and CPU at real time; memory over a 10-hour soak.

    /tmp/venv/bin/python bench/live.py                    # latency + CPU, 24 alarms, ~4 minutes
    /tmp/venv/bin/python bench/live.py --events 60
    /tmp/venv/bin/python bench/live.py soak --hours 10    # 10 h of audio as fast as it is taken

latency (default): a stream of noise backgrounds with smoke alarms planted at known
onsets (soundnet.signals: one-cycle ISO 8201 T3 and T4 patterns, 8-14 s apart; none
of the reserved audio) is written to ``soundnet listen --input - --format s16le`` in
10 ms pieces paced by the wall clock (real time, as a sound card would). Each
configuration (the default hop 0.1 s with ``--min-duration 0``, the alerting set-up,
at the card's threshold and at ``--on 0.9 --off 0.5``; the card's own post-processing,
whose minimum duration of 2 s delays every start by design; ``--hop`` values given) runs in its own process on the same stream at the
same time. The latency of an alarm is the wall time its start line arrived minus the
wall time its onset was written. CPU: the process's user + system time (from
/proc/PID/stat) over the steady part of the run (after the first 5 s), as a share of
one core.

soak: ``--hours`` of the same kind of stream written as fast as listen takes it: wall
time, the listener's peak RSS (VmHWM) after the first hour and at the end, events and
overruns from its summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PYTHON, QUIET_ENV, loadavg, machine_header  # noqa: E402

from soundnet.signals import SR, alarm_clip, mix_in, noise_background  # noqa: E402

PIECE = 0.01  # seconds of audio per write at real time
TICKS = os.sysconf("SC_CLK_TCK")


def scene(events: int, *, seed: int) -> tuple[np.ndarray, list[float]]:
    """Noise (a new background every 30 s) with ``events`` alarms 8-14 s apart: int16 samples, onsets."""
    rng = np.random.default_rng(seed)
    onsets, t = [], 4.0
    for _ in range(events):
        onsets.append(round(t, 3))
        t += rng.uniform(8.0, 14.0)
    seconds = t + 4.0
    parts = [noise_background(30.0, rng=rng) for _ in range(int(seconds // 30) + 1)]
    y = np.concatenate(parts)[: int(seconds * SR)].astype(np.float64)
    for onset in onsets:
        kind = str(rng.choice(["t3_piezo", "t3_520", "t4_co"], p=[0.6, 0.2, 0.2]))
        clip, _ = alarm_clip(rng, kind=kind, cycles=1, room=False)
        y = mix_in(y, clip * rng.uniform(0.3, 0.6), int(onset * SR))
    return (np.clip(y, -1, 1) * 32767).astype("<i2"), onsets


def listener(args: list[str]) -> subprocess.Popen:
    command = [PYTHON, "-m", "soundnet.cli", "listen", "--input", "-", "--format", "s16le", "--rate", str(SR), *args]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=QUIET_ENV)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def vm_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def latency(options) -> None:
    samples, onsets = scene(options.events, seed=options.seed)
    configs = {
        "hop 0.1 s, --min-duration 0": ["--min-duration", "0"],
        "hop 0.1 s, --min-duration 0 --on 0.9 --off 0.5": ["--min-duration", "0", "--on", "0.9", "--off", "0.5"],
        "card's post-processing (min. duration 2 s)": [],
    }
    for hop in options.hops:
        configs[f"hop {hop:g} s, --min-duration 0"] = ["--hop", str(hop), "--min-duration", "0"]
    processes = {name: listener(args) for name, args in configs.items()}
    lines: dict[str, list[tuple[float, dict]]] = {name: [] for name in configs}
    ready = {name: threading.Event() for name in configs}
    errors: dict[str, list[str]] = {name: [] for name in configs}

    def read(name: str, process) -> None:
        for raw in process.stdout:
            lines[name].append((time.monotonic(), json.loads(raw)))

    def read_errors(name: str, process) -> None:
        for raw in process.stderr:
            errors[name].append(raw.decode().rstrip())
            if raw.startswith(b"listening to"):  # loaded and warmed up
                ready[name].set()

    readers = [threading.Thread(target=read, args=item, daemon=True) for item in processes.items()]
    readers += [threading.Thread(target=read_errors, args=item, daemon=True) for item in processes.items()]
    for reader in readers:
        reader.start()
    for name, event in ready.items():
        if not event.wait(300):
            raise SystemExit(f"{name}: listen did not start: {errors[name]}")
    time.sleep(options.startup)
    piece = int(PIECE * SR)
    started = time.monotonic()
    cpu_start: dict[str, float] = {}
    for k in range(0, len(samples), piece):
        due = started + k / SR
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        data = samples[k : k + piece].tobytes()
        for process in processes.values():
            process.stdin.write(data)
            process.stdin.flush()
        if not cpu_start and k / SR >= 5.0:
            cpu_start = {name: cpu_seconds(p.pid) for name, p in processes.items()}
            cpu_wall = time.monotonic()
    wall = time.monotonic() - cpu_wall
    cpu = {name: (cpu_seconds(p.pid) - cpu_start[name]) / wall for name, p in processes.items()}
    load = loadavg()
    for process in processes.values():
        process.stdin.close()
    for process in processes.values():
        process.wait(60)
    for reader in readers:
        reader.join(10)
    print(machine_header())
    for name in configs:
        print(f"# {name}: {errors[name][-1] if errors[name] else '?'}")
    print(f"# stream {len(samples) / SR:.0f} s, {len(onsets)} alarms, seed {options.seed}, load at the end {load}")
    print("config | alarms found | median latency s | p95 s | max s | false starts | CPU % of one core")
    results = {}
    for name in configs:
        starts = [(t, line) for t, line in lines[name] if line["event"] == "start"]
        found, delays = set(), []
        for t, line in starts:
            near = [o for o in onsets if o - 0.5 <= line["stream_time"] <= o + 3.0 and o not in found]
            if near:
                found.add(near[0])
                delays.append(t - (started + near[0]))
        false_starts = len(starts) - len(found)
        p95 = float(np.percentile(delays, 95)) if delays else float("nan")
        med = statistics.median(delays) if delays else float("nan")
        worst = max(delays) if delays else float("nan")
        results[name] = {"found": len(found), "median": med, "p95": p95, "max": worst, "false": false_starts, "cpu": cpu[name]}
        print(
            f"{name} | {len(found)}/{len(onsets)} | {med:.3f} | {p95:.3f} | {worst:.3f} | {false_starts} | {100 * cpu[name]:.1f}"
        )
    print(json.dumps(results))


def soak(options) -> None:
    hours = options.hours
    samples, _ = scene(5, seed=options.seed)  # 58.7 s holding 5 alarms, repeated
    piece = len(samples) / SR
    block = samples.tobytes()
    pieces = int(np.ceil(hours * 3600 / piece))
    hour = int(np.ceil(3600 / piece))
    process = listener(["--min-duration", "0"])
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(process.stdout.read()), daemon=True)
    reader.start()
    started = time.monotonic()
    peaks = {}
    for i in range(1, pieces + 1):
        process.stdin.write(block)  # blocks while listen is behind: as fast as it is taken
        if i in (min(hour, pieces), pieces):
            process.stdin.flush()
            audio_hours = i * piece / 3600
            peaks[round(audio_hours, 2)] = vm_peak_mib(process.pid)
            print(
                f"# {audio_hours:.2f} h of audio after {time.monotonic() - started:.0f} s: peak RSS {peaks[round(audio_hours, 2)]:.1f} MiB",
                flush=True,
            )
    process.stdin.close()
    process.wait()
    reader.join()
    wall = time.monotonic() - started
    err = process.stderr.read().decode()
    events = sum(1 for line in out[0].splitlines() if b'"start"' in line)
    seconds = pieces * piece
    print(machine_header())
    print(f"# soak: {seconds / 3600:.2f} h of audio in {wall:.0f} s wall ({seconds / wall:.0f}x real time), load {loadavg()}")
    print(f"# peak RSS (MiB) by hours of audio: {peaks}; start lines: {events} for {5 * pieces} planted alarms")
    print("# " + err.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("latency", "soak"), default="latency")
    parser.add_argument("--events", type=int, default=24, help="planted alarms (latency)")
    parser.add_argument("--hops", type=float, nargs="*", default=[], help="more hops to measure with --min-duration 0")
    parser.add_argument("--hours", type=float, default=10.0, help="audio of the soak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup", type=float, default=1.0, help="seconds between the listeners' ready line and the stream")
    options = parser.parse_args()
    (latency if options.mode == "latency" else soak)(options)


if __name__ == "__main__":
    main()
