"""End to end as a user runs it, on planted events no test has seen.

    python scripts/planted_end_to_end.py --work /tmp/e2e

Generates isolated clips of a target sound (rising harmonic chirps, 0.2-0.8 s, 1.5-4 kHz),
backgrounds (white, pink and brown noise, mains hum, at several levels) and distractors
(steady tones, clicks), all with seeded numpy by the generators of ``soundnet.signals``.
Then, through the ``soundnet`` command installed beside this Python:

1. ``soundnet synth`` makes training mixtures from one set of clips and test mixtures from
   fresh clips and backgrounds made with other seeds;
2. ``soundnet extract`` and ``soundnet train`` (the default network; a short schedule);
3. ``soundnet evaluate`` on the test mixtures (sed_eval event F1, 0.5 s onset collar),
   and ``soundnet detect`` on one of them.

It prints each command before running it and exits 1 if the test event F1 is below 0.8.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from soundnet.signals import SR, harmonic_chirp, noise_background, tone_or_clicks


def write_clips(folder: Path, make, count: int, rng: np.random.Generator) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        sf.write(folder / f"{i:03d}.wav", make(rng), SR, subtype="PCM_16")
    return folder


def soundnet(*args) -> None:
    command = [str(Path(sys.executable).with_name("soundnet")), *map(str, args)]
    print("$", " ".join(command[0:1] and ["soundnet", *command[1:]]), flush=True)
    subprocess.run(command, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--train-mixtures", type=int, default=120)
    parser.add_argument("--test-mixtures", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    for split, seed in (("train", 1), ("test", 2)):  # the test clips and backgrounds are fresh
        rng = np.random.default_rng(seed)
        write_clips(work / split / "chirp", harmonic_chirp, 40, rng)
        write_clips(work / split / "backgrounds", lambda r: noise_background(30.0, rng=r), 8, rng)
        write_clips(work / split / "tone_or_click", tone_or_clicks, 30, rng)
    config = work / "train.yaml"
    config.write_text(f"training:\n  epochs: {args.epochs}\n  patience: 4\n  seed: 0\n")
    for split, n, seed in (("train", args.train_mixtures, 10), ("test", args.test_mixtures, 20)):
        soundnet(
            "synth", "--events", work / split / "chirp", "--backgrounds", work / split / "backgrounds",
            "--distractors", work / split / "tone_or_click", "--out", work / f"{split}_mix", "-n", n,
            "--presence", 0.7, "--seed", seed,
        )  # fmt: skip
    soundnet("extract", work / "train_mix", "--annotations", work / "train_mix" / "annotations.tsv",
             "--target", "chirp", "--out", work / "data")  # fmt: skip
    soundnet("train", work / "data", "--out", work / "run", "--config", config)
    report = work / "report.json"
    soundnet("evaluate", work / "test_mix", "--annotations", work / "test_mix" / "annotations.tsv",
             "--model", work / "run", "--output", report)  # fmt: skip
    first = sorted((work / "test_mix").glob("*.wav"))[0]
    soundnet("detect", first, "--model", work / "run")
    f1 = json.loads(report.read_text())["event_onset"]["f_measure"] or 0.0
    print(f"test event F1 (onset collar 0.5 s): {f1:.3f} {'>= 0.8: pass' if f1 >= 0.8 else '< 0.8: FAIL'}")
    return 0 if f1 >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
