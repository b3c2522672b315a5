"""Operating points of a detector built by ``scripts/build_default_model.py``: chosen on
its tuning data, measured on its held-out sets.

Usage::

    python scripts/operating_points.py --work build/alarm --heldout-negatives NEG/heldout \
        [--run build/alarm/run] [--limits 1,2,5,10,20,50]

For each false alarm limit, the post-processing with the fewest misses within that many
false alarms per hour on the **tuning** data (``WORK/tune_probabilities.npz``, the
probabilities the build's re-tuning saved, over its grid
:data:`build_default_model.RETUNE_GRID`; ties to fewer false alarms, then the higher F1),
then its figures on the **held-out** sets: false alarms per hour on the held-out real
audio, event recall on ``WORK/test`` and ``WORK/test_real``, and the example's events.
The held-out figures choose nothing. The same post-processing and scoring code as
``soundnet detect`` and ``soundnet tune`` (:mod:`soundnet.tuning`,
:mod:`soundnet.scoring`), one set of probabilities per file. Writes
``WORK/operating_points.json`` and prints one line per limit.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_default_model import RETUNE_GRID, TARGET  # noqa: E402

from soundnet.calibration import events_at  # noqa: E402
from soundnet.config import PostConfig  # noqa: E402
from soundnet.events import Event  # noqa: E402
from soundnet.scoring import hours_of, onset_figures  # noqa: E402
from soundnet.tuning import _smoothed, grid_points  # noqa: E402


def references(table: Path, names) -> dict[str, list[Event]]:
    """The target events of ``table`` for the files ``names`` (a file without a row: none)."""
    found: dict[str, list[Event]] = {name: [] for name in names}
    with table.open(encoding="utf-8") as f:
        for row in list(csv.reader(f, delimiter="\t"))[1:]:
            if len(row) >= 4 and row[3] == TARGET and row[0] in found:
                found[row[0]].append(Event(row[0], float(row[1]), float(row[2]), row[3]))
    return found


def alarms(probabilities: dict, reference: dict, post: PostConfig, *, frame_seconds: float):
    """False alarms and misses of ``post`` on these probabilities (frames of ``frame_seconds``)."""
    durations = {name: len(p) * frame_seconds for name, p in probabilities.items()}
    plain = dataclasses.replace(post, median_seconds=0.0)
    smoothed = _smoothed(probabilities, post.median_seconds, frame_seconds)
    events = events_at(smoothed, post=plain, label=TARGET, frame_seconds=frame_seconds, durations=durations)
    f, _, counts = onset_figures(reference, events, label=TARGET, hours=hours_of(durations, reference))
    return f, counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path, help="The build folder.")
    parser.add_argument("--heldout-negatives", required=True, type=Path, help="Held-out real audio with no alarm.")
    parser.add_argument("--run", type=Path, help="The run folder (default WORK/run).")
    parser.add_argument("--limits", default="1,2,5,10,20,50", help="False alarms per hour on the tuning data.")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    from soundnet.audio import audio_files
    from soundnet.detection import Detector

    detector = Detector(args.run or work / "run")
    frame = detector.card.features.frame_seconds
    tuning = {k.replace("|", "/"): v for k, v in np.load(work / "tune_probabilities.npz").items()}
    tuning_reference = references(work / "tune_annotations.tsv", tuning)
    grid = []
    for median in RETUNE_GRID["median_seconds"]:
        for threshold, off, min_duration, gap in grid_points(RETUNE_GRID):
            post = PostConfig(
                threshold=threshold, median_seconds=median, min_duration=min_duration, merge_gap=gap, off_threshold=off
            )
            f, counts = alarms(tuning, tuning_reference, post, frame_seconds=frame)
            grid.append((counts.false_alarms_per_hour, counts.miss_rate, -f, post))

    def probabilities(folder: Path) -> dict:
        return {p.relative_to(folder).as_posix(): detector.probabilities(p)[0] for p in audio_files(folder)}

    negatives = probabilities(args.heldout_negatives.resolve())
    sets = {name: probabilities(work / name) for name in ("test", "test_real")}
    example = {"smoke_alarm.wav": detector.probabilities(work / "smoke_alarm.wav")[0]}
    example_reference = {
        "smoke_alarm.wav": [
            Event("smoke_alarm.wav", float(line.split()[0]), float(line.split()[1]), TARGET)
            for line in (work / "smoke_alarm.txt").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    }
    rows = []
    for limit in map(float, args.limits.split(",")):
        within = [point for point in grid if round(point[0], 9) <= limit]
        if not within:
            print(f"limit {limit:g}: no setting of the grid", flush=True)
            continue
        rate, miss_rate, _, post = min(within, key=lambda point: (point[1], point[0], point[2]))
        row = {
            "limit_per_hour": limit,
            "postprocessing": dataclasses.asdict(post),
            "tuning": {"false_alarms_per_hour": round(rate, 3), "recall": round(1 - miss_rate, 3)},
        }
        _, counts = alarms(negatives, {name: [] for name in negatives}, post, frame_seconds=frame)
        row["heldout_negatives"] = {"false_alarms": counts.false_alarms, "per_hour": round(counts.false_alarms_per_hour, 2)}
        for name, probs in sets.items():
            _, counts = alarms(probs, references(work / name / "annotations.tsv", probs), post, frame_seconds=frame)
            row[name] = {"recall": round(1 - counts.miss_rate, 3), "false_alarms": counts.false_alarms}
        _, counts = alarms(example, example_reference, post, frame_seconds=frame)
        row["example"] = f"{counts.reference - counts.misses}/{counts.reference}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    (work / "operating_points.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
