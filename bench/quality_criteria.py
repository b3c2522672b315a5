"""How well does each way of choosing the post-processing on out-of-fold predictions
predict the test side? For finished cross-validated runs of ``bench/quality.py``.

    PYTHONPATH=. python bench/quality_criteria.py --targets cattle --variant cv3 --seeds 0,1,2

For every point of soundnet's search grid (``tuning.GRID``) it scores the run's out-of-fold
predictions per fold (those the run kept, else dealt again from its dataset as training dealt
them: ``quality_retune.dealt_folds``) and the test mixtures, and prints, per criterion
(``pooled``: the event F1 of all out-of-fold files together; ``mean`` / ``min``: the mean /
lowest F1 of the folds; ``test``: the test side itself, the best any choice could do), the
point it picks and that point's test F1, and how each criterion ranks the grid against the
test (Spearman). Ties go to the pooled F1, then to the threshold nearest 0.5. A fold without
reference events counts with F1 0 here (soundnet's search leaves it out of its average; the
material's folds all hold events). Nothing is written to the runs; the per-point figures go to
``<run>-criteria.json`` beside each run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_material as material  # noqa: E402
from _common import CACHE  # noqa: E402
from quality_retune import dealt_folds  # noqa: E402

CRITERIA = ("pooled", "mean", "min", "test")


def grid_figures(run: Path, data: Path, test: Path) -> list[dict]:
    """Per grid point: its post-processing, each fold's, the pooled and the test event F1."""
    from soundnet.config import PostConfig
    from soundnet.detection import Detector
    from soundnet.evaluation import read_references
    from soundnet.run import read_card, read_out_of_fold
    from soundnet.scoring import onset_figures
    from soundnet.tuning import GRID, _smoothed, events_at, grid_points

    card, oof = read_card(run), read_out_of_fold(run)
    fold_of = dealt_folds(run, data, oof)
    parts = [[n for n in oof.probabilities if fold_of[n] == k] for k in sorted(set(fold_of.values()))]
    references = read_references(test, test / "annotations.tsv", target=card.target)
    detector = Detector(run)
    tested = {name: detector.probabilities(path) for name, path in references.paths.items()}
    test_probabilities = {n: p for n, (p, _) in tested.items()}
    test_durations = {n: d for n, (_, d) in tested.items()}
    frame = card.features.frame_seconds

    def counts(probabilities, reference, durations, post):
        events = events_at(probabilities, post=post, label=card.target, frame_seconds=frame, durations=durations)
        alarms = onset_figures(reference, events, label=card.target)[2]
        return alarms.reference - alarms.misses, alarms.false_alarms, alarms.misses

    def f1(tp, fp, fn):
        return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)

    rows = []
    for median in GRID["median_seconds"]:
        smoothed = _smoothed(oof.probabilities, median, frame)
        smoothed_test = _smoothed(test_probabilities, median, frame)
        for threshold, off, min_duration, gap in grid_points(GRID):
            post = PostConfig(threshold=threshold, min_duration=min_duration, merge_gap=gap, off_threshold=off)
            per_fold = [
                counts({n: smoothed[n] for n in part}, {n: oof.events[n] for n in part}, oof.durations, post) for part in parts
            ]
            fold_f1 = [f1(*c) for c in per_fold]
            rows.append(
                {
                    "post": {
                        "threshold": threshold,
                        "off_threshold": off,
                        "median_seconds": median,
                        "min_duration": min_duration,
                        "merge_gap": gap,
                    },  # fmt: skip
                    "folds": fold_f1,
                    "pooled": f1(*np.sum(per_fold, axis=0)),
                    "mean": float(np.mean(fold_f1)),
                    "min": float(np.min(fold_f1)),
                    "test": f1(*counts(smoothed_test, references.events, test_durations, post)),
                }
            )
    return rows


def report(rows: list[dict]) -> list[str]:
    from scipy.stats import spearmanr

    lines = []
    for criterion in CRITERIA:
        best = max(rows, key=lambda r: (round(r[criterion], 9), round(r["pooled"], 9), -abs(r["post"]["threshold"] - 0.5)))
        lines.append(
            f"{criterion:6s} picks {best['post']}: pooled {best['pooled']:.3f}, folds "
            f"{', '.join(f'{f:.3f}' for f in best['folds'])}, test {best['test']:.3f}"
        )
    test = [r["test"] for r in rows]
    rho = {c: spearmanr([r[c] for r in rows], test)[0] for c in CRITERIA[:3]}
    lines.append("rank correlation with the test over the grid: " + ", ".join(f"{c} {v:.2f}" for c, v in rho.items()))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default=",".join(material.TARGETS))
    parser.add_argument("--variant", default="cv3")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train", type=int, default=250)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--material-seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=CACHE / "quality")
    args = parser.parse_args()
    for target in args.targets.split(","):
        mat = material.build(target, args.cache, n_train=args.train, n_test=args.test, seed=args.material_seed)
        work = args.cache / "runs" / mat.name
        for seed in (int(s) for s in args.seeds.split(",")):
            name = f"soundnet-{args.variant}-epochs{args.epochs}-seed{seed}"
            run = work / name / "run"
            if not (run / "card.json").is_file():
                print(f"{target} seed {seed}: no finished run {run}")
                continue
            rows = grid_figures(run, work / f"data-{args.variant}", mat / "test")
            (work / f"{name}-criteria.json").write_text(json.dumps(rows) + "\n")
            for line in report(rows):
                print(f"{target} seed {seed}: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
