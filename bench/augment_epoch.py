"""Epoch time with the real-audio training measures against plain training, side by side.

    python bench/augment_epoch.py                 # ~4 minutes
    python bench/augment_epoch.py --mixtures 300 --rounds 3

Issue 11 asks that a training epoch with augmentation take at most twice as long as
before. This builds one synthetic set (``soundnet synth``: tone bursts over noise,
10 s mixtures) and a folder of negative noise, then extracts it twice:

* ``plain``: ``--augment 0``, no negatives; trained with ``shift_frames: 0`` and
  ``hard_negative_weight: 1`` (what training did before issue 11);
* ``generalising``: ``--augment 2`` and ``--negatives``, trained with
  ``shift_frames: 25`` and ``hard_negative_weight: 3`` (every measure of issue 11 on:
  shifts, hard-negative mining after each epoch, negatives drawn up to
  ``negative_ratio``).

Both train for ``--epochs`` epochs with the same seed, alternating plain and
generalising for ``--rounds`` rounds in fresh processes; an epoch's time is what
``train.log`` reports for it (fitting, validation, mining), the first epoch (tracing)
left out. The ratio of the medians is the figure. Extraction times are reported too.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from _common import dump_json, machine_header, table  # noqa: E402

SR = 16000
EPOCH_LINE = re.compile(r"epoch (\d+)/\d+: .*\(([\d.]+) s\)")


def make_material(root: Path, *, mixtures: int, seed: int) -> tuple[Path, Path]:
    """Tone-burst clips, noise backgrounds, a synth set and a negatives folder."""
    import subprocess

    rng = np.random.default_rng(seed)
    clips, backgrounds, negatives = root / "clips" / "beep", root / "backgrounds", root / "negatives"
    for folder in (clips, backgrounds, negatives):
        folder.mkdir(parents=True, exist_ok=True)
    for k in range(10):
        t = np.arange(int(rng.uniform(0.3, 1.2) * SR)) / SR
        sf.write(clips / f"beep{k}.wav", 0.4 * np.sin(2 * np.pi * rng.uniform(800, 3000) * t), SR)
        sf.write(backgrounds / f"bg{k}.wav", rng.uniform(0.01, 0.05) * rng.standard_normal(30 * SR), SR)
    for k in range(5):
        sf.write(negatives / f"neg{k}.wav", rng.uniform(0.01, 0.05) * rng.standard_normal(120 * SR), SR)
    synth = root / "synth"
    subprocess.run(
        [sys.executable, "-m", "soundnet", "-q", "synth", "--events", clips, "--backgrounds", backgrounds,
         "--out", synth, "-n", str(mixtures), "--seed", str(seed)],
        check=True,
    )  # fmt: skip
    return synth, negatives


def soundnet(*args) -> float:
    import subprocess

    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "soundnet", "-q", *map(str, args)], check=True)
    return time.perf_counter() - started


def epoch_times(run: Path) -> list[float]:
    times = [(int(m.group(1)), float(m.group(2))) for m in EPOCH_LINE.finditer((run / "train.log").read_text())]
    return [seconds for epoch, seconds in times if epoch > 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixtures", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(machine_header())
    with tempfile.TemporaryDirectory(prefix="soundnet-augment-epoch-") as tmp:
        root = Path(tmp)
        synth, negatives = make_material(root, mixtures=args.mixtures, seed=0)
        table_path = synth / "annotations.tsv"
        extract = {
            "plain": soundnet("extract", synth, "-a", table_path, "--out", root / "plain", "--augment", 0),
            "generalising": soundnet(
                "extract", synth, "-a", table_path, "--out", root / "generalising", "--augment", 2, "--negatives", negatives
            ),
        }
        configs = {
            "plain": f"training:\n  epochs: {args.epochs}\n  patience: {args.epochs}\n  shift_frames: 0\n  hard_negative_weight: 1.0\n",
            "generalising": (
                f"training:\n  epochs: {args.epochs}\n  patience: {args.epochs}\n  shift_frames: 25\n  hard_negative_weight: 3.0\n"
            ),
        }
        epochs: dict[str, list[float]] = {name: [] for name in configs}
        for round_ in range(args.rounds):
            for name, text in configs.items():
                config = root / f"{name}.yaml"
                config.write_text(text)
                run = root / f"run-{name}-{round_}"
                soundnet("train", root / name, "--out", run, "--config", config, "--seed", 0)
                epochs[name] += epoch_times(run)
    medians = {name: statistics.median(times) for name, times in epochs.items()}
    ratio = medians["generalising"] / medians["plain"]
    print(
        table(
            [[name, f"{extract[name]:.1f}", f"{medians[name]:.2f}", len(epochs[name])] for name in configs],
            ["variant", "extract s", "median epoch s", "epochs timed"],
        )
    )
    print(f"epoch time ratio generalising / plain: {ratio:.2f} (target <= 2)")
    dump_json(args.json, {"extract_seconds": extract, "epoch_seconds": epochs, "median": medians, "ratio": ratio})


if __name__ == "__main__":
    main()
