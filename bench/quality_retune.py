"""Re-tune finished quality-benchmark runs on their own validation files with another
post-processing grid, and score them on the test side as bench/quality.py does.

    PYTHONPATH=. python bench/quality_retune.py --targets bird,cattle --variant plain,late --seeds 0,1,2

For each run of ``bench/quality.py`` found in the cache (``soundnet-<variant>-epochs<E>-seed<S>``),
its run folder is copied to ``<run>-retuned-<grid>/run``, :func:`soundnet.tuning.tune` searches
the copy's post-processing on the files its card says it validated on (the training table as
reference), and the copy is evaluated on the test mixtures and run over the pure-background
audio, as the original was. ``--grid scaled`` searches soundnet's grid (``tuning.GRID``) plus
minimum durations and gaps of a quarter and a half of the median length of the validation
events (:func:`grid_for`, a trial: not soundnet's default); ``--grid fixed`` ``tuning.GRID``
without its off thresholds (the grid before hysteresis); ``--grid hysteresis`` ``tuning.GRID``
with them (:data:`HYSTERESIS`); ``--grid default`` soundnet's search as installed (``tuning.GRID``
and its criterion: for a cross-validated run, the event F1 averaged over the folds); ``--grid
verify`` ``soundnet tune --verify`` (``tuning.GRID``, a first stage and a verifier of its
events chosen together for the best event F1, on the pooled out-of-fold files read where
extract found them). The
network is not retrained: only the post-processing differs from the original run.

A cross-validated run (``training.folds``, e.g. variant ``cv3``) is tuned on its pooled
out-of-fold probabilities, as ``soundnet train`` tuned it: ``soundnet tune RUN`` on the run's
``out_of_fold.npz``. A run trained before soundnet kept that file gets it from
``--out-of-fold DIR``: copies of its ``run.partial/folds/fold-K/held_out.npz`` made while it
ran (``DIR/<material>/seed<S>/fold-K/held_out.npz``). An ``out_of_fold.npz`` written before
soundnet kept each file's fold in it gets them from the run's dataset, dealt again by
``soundnet.training.fold_files`` with the card's fold count and seed, as training dealt them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402
import quality_material as material  # noqa: E402
from _common import CACHE  # noqa: E402

SCALED_FRACTIONS = (0.25, 0.5)
HYSTERESIS = (None, 0.2, 0.4)  # the off thresholds of --grid hysteresis


def grid_for(reference: dict, *, label: str) -> dict:
    """soundnet's GRID with a quarter and a half of the median length of ``reference``'s
    ``label`` events added to the minimum durations and gaps where they pass its largest."""
    import numpy as np

    from soundnet.tuning import GRID

    lengths = [e.offset - e.onset for events in reference.values() for e in events if e.label == label]
    grid = {name: tuple(values) for name, values in GRID.items()}
    if lengths:
        median = float(np.median(lengths))
        for name in ("min_duration", "merge_gap"):
            longer = {round(f * median, 2) for f in SCALED_FRACTIONS} - set(grid[name])
            grid[name] += tuple(sorted(v for v in longer if v > max(grid[name])))
    return grid


def restore_out_of_fold(run_dir: Path, folder: Path, dataset_dir: Path) -> int:
    """Write ``run_dir/out_of_fold.npz`` as training now does, from copies of the run's folds'
    ``held_out.npz`` in ``folder`` and its dataset; returns the number of files."""
    import numpy as np

    from soundnet.dataset import Dataset
    from soundnet.run import OutOfFold, write_out_of_fold

    dataset = Dataset.open(dataset_dir)
    held, fold_of = {}, {}
    for saved in sorted(folder.glob("fold-*/held_out.npz")):
        with np.load(saved) as fold:
            held.update({name: fold[name] for name in fold.files})
            fold_of.update(dict.fromkeys(fold.files, int(saved.parent.name.split("-")[1])))
    entries = [e for e in dataset.entries if e.id in held]
    frame = dataset.feature_config.frame_seconds
    oof = OutOfFold(
        {e.source: held[e.id] for e in entries},
        {e.source: dataset.events(e) for e in entries},
        {e.source: e.frames * frame for e in entries},
        dataset.target,
        {e.source: fold_of[e.id] for e in entries},
    )
    write_out_of_fold(run_dir, oof)
    return len(entries)


def dealt_folds(run_dir: Path, dataset_dir: Path, oof) -> dict[str, int]:
    """Each out-of-fold file's fold (``oof``: the run's ``OutOfFold``): as the run kept them,
    else dealt again from its dataset as training dealt them (``fold_files``, the card's fold
    count and seed), checked against the card's record of the folds."""
    from soundnet.dataset import Dataset
    from soundnet.run import read_card
    from soundnet.training import fold_files

    if oof.folds is not None:
        return oof.folds
    training = read_card(run_dir).training
    folds = fold_files(Dataset.open(dataset_dir).entries, folds=training["config"]["folds"], seed=training["config"]["seed"])
    fold_of = {e.source: k for k, (_, val, _) in enumerate(folds, 1) for e in val}
    sizes = [sum(1 for k in fold_of.values() if k == record["fold"]) for record in training["folds"]]
    if set(fold_of) != set(oof.probabilities) or sizes != [record["validation_files"] for record in training["folds"]]:
        raise SystemExit(f"{run_dir}: the folds dealt from {dataset_dir} are not those its out-of-fold files came from")
    return fold_of


def add_folds(run_dir: Path, dataset_dir: Path) -> None:
    """Give a run's ``out_of_fold.npz`` each file's fold where it lacks them (:func:`dealt_folds`)."""
    import dataclasses

    from soundnet.run import read_out_of_fold, write_out_of_fold

    oof = read_out_of_fold(run_dir)
    if oof.folds is None:
        write_out_of_fold(run_dir, dataclasses.replace(oof, folds=dealt_folds(run_dir, dataset_dir, oof)))


def retune(mat: Path, work: Path, name: str, variant: str, grid: str, info: dict, *, oof: Path | None = None) -> dict | None:
    from soundnet.evaluation import read_references
    from soundnet.run import OUT_OF_FOLD_FILE
    from soundnet.tuning import GRID, tune

    original = work / name
    if not (original.with_name(name + ".json")).is_file():
        return None
    out = work / f"{name}-retuned-{grid}"
    result = out.with_name(out.name + ".json")
    if result.is_file():
        return json.loads(result.read_text())
    run_dir = out / "run"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(original / "run", run_dir)
    card = json.loads((run_dir / "card.json").read_text())
    table = mat / "train" / "annotations.tsv"
    target = card["target"]
    if card["validation"].get("split", {}).get("folds"):  # cross-validated: its pooled out-of-fold probabilities
        if grid == "scaled":
            raise SystemExit("--grid scaled needs a run validated on files; use fixed or hysteresis")
        if not (run_dir / OUT_OF_FOLD_FILE).is_file():
            if oof is None or not any(oof.glob("fold-*/held_out.npz")):
                raise SystemExit(f"{original}: a run without {OUT_OF_FOLD_FILE} needs --out-of-fold (none in {oof})")
            restore_out_of_fold(run_dir, oof, work / f"data-{variant}")
        if grid in ("default", "verify"):
            add_folds(run_dir, work / f"data-{variant}")
            searched = dict(GRID)
        else:
            searched = {**GRID, "off_threshold": HYSTERESIS if grid == "hysteresis" else (None,)}
        tuning = tune(run_dir, grid=searched, verify=grid == "verify")
    else:
        files = sorted(card["validation"]["files"])
        if grid == "scaled":
            searched = grid_for(read_references(files, table, target=target).events, label=target)
        elif grid in ("default", "verify"):
            searched = dict(GRID)
        else:
            searched = {**GRID, "off_threshold": HYSTERESIS if grid == "hysteresis" else (None,)}
        tuning = tune(run_dir, files, annotations=table, grid=searched, verify=grid == "verify")
    test = mat / "test"
    evaluation = out / "test-evaluation.json"
    quality.run([*quality.SOUNDNET, "-q", "evaluate", test, "-a", test / "annotations.tsv", "-m", run_dir, "-o", evaluation])
    background = out / "test-background.tsv"
    quality.run([*quality.SOUNDNET, "-q", "detect", mat / "test-background", "-m", run_dir, "--format", "tsv", "-o", background])
    figures = quality.scores(
        evaluation,
        test_seconds=info["test"]["mixtures"] * material.MIX_SECONDS,
        background_events=quality.read_events(background),
        background_seconds=info["test_background_seconds"],
    )
    validation = tuning.scores.event_onset.f_measure
    before = json.loads(original.with_name(name + ".json").read_text())
    figures |= {
        "validation_event_f1": validation,
        "validation_gap": None if validation is None else validation - figures["event_f1"],
        "post": dataclasses.asdict(tuning.post),
        "criterion": tuning.criterion,
        "before": {k: before[k] for k in ("event_f1", "validation_event_f1", "false_alarms_per_hour_mixtures")},
        "grid": {k: list(v) for k, v in searched.items()},
    }
    result.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def oracle(mat: Path, run_dir: Path, grid: dict, target: str) -> float:
    """The best test event F1 any point of ``grid`` gives this network: what a perfect
    choice of post-processing would reach (an upper bound, chosen on the test side)."""
    from soundnet.detection import Detector
    from soundnet.evaluation import read_references
    from soundnet.tuning import reference_probabilities, search_postprocessing

    detector = Detector(run_dir)
    test = read_references([mat / "test"], mat / "test" / "annotations.tsv", target=target)
    probabilities, durations = reference_probabilities(detector, test)
    best = search_postprocessing(
        probabilities,
        test.events,
        label=target,
        frame_seconds=detector.card.features.frame_seconds,
        durations=durations,
        grid=grid,
    )
    return best.scores.event_onset.f_measure or 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default=",".join(material.TARGETS))
    parser.add_argument("--variant", default="plain")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--grid", choices=("scaled", "fixed", "hysteresis", "default", "verify"), default="scaled")
    parser.add_argument("--out-of-fold", type=Path, help="copies of cross-validated runs' folds (see above)")
    parser.add_argument("--train", type=int, default=250)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--material-seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=CACHE / "quality")
    parser.add_argument("--oracle", action="store_true", help="also the best test F1 of any grid point (slow)")
    args = parser.parse_args()
    from soundnet.tuning import GRID

    for target in args.targets.split(","):
        mat = material.build(target, args.cache, n_train=args.train, n_test=args.test, seed=args.material_seed)
        info = json.loads((mat / "material.json").read_text())
        work = args.cache / "runs" / mat.name
        for variant in args.variant.split(","):
            rows = []
            for seed in (int(s) for s in args.seeds.split(",")):
                name = f"soundnet-{variant}-epochs{args.epochs}-seed{seed}"
                oof = None if args.out_of_fold is None else args.out_of_fold / mat.name / f"seed{seed}"
                figures = retune(mat, work, name, variant, args.grid, info, oof=oof)
                if figures is None:
                    print(f"{target} {variant} seed {seed}: no finished run in {work}")
                    continue
                rows.append(figures)
                if args.oracle:
                    run_dir = work / f"soundnet-{variant}-epochs{args.epochs}-seed{seed}" / "run"
                    grid = figures.get("grid") or dict(GRID)
                    print(
                        f"{target} {variant} seed {seed}: best test F1 of any grid point {oracle(mat, run_dir, grid, target):.3f}"
                    )
                b = figures["before"]
                print(
                    f"{target} {variant} seed {seed}: test F1 {b['event_f1']:.3f} -> {figures['event_f1']:.3f}, "
                    f"validation {b['validation_event_f1'] or 0:.3f} -> {figures['validation_event_f1'] or 0:.3f}, "
                    f"FA/h mixtures {b['false_alarms_per_hour_mixtures']:.0f} -> {figures['false_alarms_per_hour_mixtures']:.0f}, "
                    f"post {figures['post']}"
                )
            if len(rows) > 1:
                f1 = [r["event_f1"] for r in rows]
                gap = [r["validation_gap"] for r in rows if r["validation_gap"] is not None]
                print(
                    f"{target} {variant} retuned ({args.grid}): event F1 {statistics.mean(f1):.3f} ± {statistics.stdev(f1):.3f}, "
                    f"gap {statistics.mean(gap):.3f} over {len(rows)} seeds"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
