"""False alarms of `soundnet listen` on real audio without the target, per live setting.

Usage::

    python scripts/real_negatives.py --out NEG          # real non-alarm audio, held-out part in NEG/heldout
    python bench/live_false_alarms.py NEG/heldout [--model RUN] [--setting "--min-duration 0" ...]

Every WAV of the folder (sorted by name; 16 kHz mono, as real_negatives.py writes them)
goes, one after the other, as one raw s16le stream through ``soundnet listen --input -``
as fast as it takes it, once per setting (the options given to listen; by default the
card's post-processing, the card's threshold without a minimum duration, and the
low-latency point of BENCHMARKS.md's latency table). Each start line is a false alarm:
the folder holds no target. Prints the count and the rate per hour of each setting.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

SETTINGS = ("", "--min-duration 0", "--min-duration 0 --on 0.9 --off 0.5")
RATE = 16000


def feed(files: list[Path], pipe) -> None:
    try:
        for path in files:
            y, _ = sf.read(path, dtype="int16", always_2d=True)
            pipe.write(np.ascontiguousarray(y[:, 0]).tobytes())
    finally:
        pipe.close()


def starts(files: list[Path], setting: str, model: Path | None) -> int:
    command = [sys.executable, "-m", "soundnet", "listen", "--input", "-", "--format", "s16le", "--rate", str(RATE)]
    command += [*shlex.split(setting), *(["--model", str(model)] if model else [])]
    listener = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    feeder = threading.Thread(target=feed, args=(files, listener.stdin))
    feeder.start()
    count = sum(json.loads(line)["event"] == "start" for line in listener.stdout)
    feeder.join()
    if listener.wait() != 0:
        raise SystemExit(f"listen {setting}: exit {listener.returncode}")
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", type=Path, default=None, help="Run folder (default: the bundled detector).")
    parser.add_argument("--setting", action="append", help="listen options of one setting (repeatable).")
    args = parser.parse_args(argv)
    files = sorted(args.folder.glob("*.wav"))
    if not files:
        parser.error(f"{args.folder}: no WAV file")
    infos = {p: sf.info(p) for p in files}
    odd = next((p for p, i in infos.items() if i.samplerate != RATE), None)
    if odd is not None:
        parser.error(f"{odd}: {infos[odd].samplerate} Hz, expected {RATE} (as scripts/real_negatives.py writes)")
    hours = sum(i.frames for i in infos.values()) / RATE / 3600
    print(f"{len(files)} files, {hours:.3f} h")
    print("| listen setting | false alarms | per hour |\n|---|---|---|")
    for setting in args.setting or SETTINGS:
        n = starts(files, setting, args.model)
        print(f"| {setting or '(the card)'} | {n} | {n / hours:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
