"""Real-audio quality benchmark (issue 11): soundnet against the DCASE 2017 task 2 baseline.

For each target sound and seed: build (or reuse) the real-audio material of
``bench/quality_material.py``, then

- soundnet through its command line: ``extract`` on the training mixtures (once per
  target and variant), ``train --epochs E --seed S``, ``evaluate`` on the test mixtures
  and ``detect --format tsv`` on the pure-background test audio;
- the baseline ``bench/dcase2017_baseline.py`` on the same data, scored by
  ``soundnet evaluate --estimated`` with the same settings;

and report per target (mean ± std over seeds): event-based F1 and error rate (sed_eval,
0.5 s onset collar, offsets ignored), segment-based F1 (1 s), false alarms per hour on
the test mixtures (detected events matching no reference) and on the pure-background
audio, soundnet's validation event F1 from its card beside its test F1 (the gap), and
the wall time per system. Every figure goes to a JSON file; a Markdown table is printed.

``--variant`` picks a soundnet configuration from ``VARIANTS`` (a YAML config and extra
extract options); a variant whose soundnet feature the installed soundnet lacks is
refused up front (its ``--help`` / ``configs/default.yaml`` are read, not guessed).
Runs are cached under ``$SOUNDNET_BENCH_CACHE/quality`` (default /tmp/soundnet-bench):
re-running does only what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_material as material  # noqa: E402
from _common import CACHE, PYTHON, QUIET_ENV, ROOT, loadavg, machine_header, measure  # noqa: E402

# soundnet of this checkout: PYTHONSAFEPATH keeps ``python -m`` from putting the working directory
# (perhaps another checkout) ahead of it on sys.path
ENV = {**QUIET_ENV, "PYTHONPATH": str(ROOT) + os.pathsep + QUIET_ENV.get("PYTHONPATH", ""), "PYTHONSAFEPATH": "1"}
SOUNDNET = [PYTHON, "-m", "soundnet"]
BASELINE = [PYTHON, str(Path(__file__).resolve().parent / "dcase2017_baseline.py")]


# ---------------------------------------------------------------- soundnet variants
@dataclass(frozen=True)
class Variant:
    """A soundnet configuration to compare.

    config : YAML sections merged over soundnet's defaults (written to the run's config file)
    extract_options : extra ``soundnet extract`` arguments; ``{negatives}`` becomes the
        target's folder of negative recordings
    needs : what the installed soundnet must support, each ``("extract"|"train", "--option")``
        (found in that command's ``--help``) or ``("config", "section.key")`` (found in
        ``configs/default.yaml``)
    """

    config: dict = field(default_factory=dict)
    extract_options: tuple[str, ...] = ()
    needs: tuple[tuple[str, str], ...] = ()


_BEFORE = {"augmentation": {"copies": 0}, "training": {"shift_frames": 0, "hard_negative_weight": 1.0}}
# every measure on (the defaults when the ablation ran; now the defaults are _BEFORE's)
_ON = {"training": {"shift_frames": 25, "hard_negative_weight": 3.0}}
VARIANTS = {
    # soundnet's defaults of the code installed (results named "plain" in BENCHMARKS.md
    # were run with the code before issue 11, a85ba92: validation by file, nothing below)
    "plain": Variant(),
    # ---- the ablation of issue 11, each step adding to the one before ---------------------
    # the training of a85ba92 with this code: no shifts, no copies, no mining, validation by file
    "before": Variant(
        config=_BEFORE, extract_options=("--group-pattern", ".*", "--augment", "0"), needs=(("extract", "--group-pattern"),)
    ),
    # + validation holding out whole groups (the material's group column: folds of sources)
    "grouped": Variant(config=_BEFORE, extract_options=("--augment", "0"), needs=(("extract", "--group-pattern"),)),
    # + random window shifts, 2 augmented copies per recording and hard-negative mining
    "augment": Variant(config=_ON, extract_options=("--augment", "2"), needs=(("config", "augmentation.copies"),)),
    # + the target's real negative recordings (--negatives)
    "negatives": Variant(
        config=_ON, extract_options=("--negatives", "{negatives}", "--augment", "2"), needs=(("extract", "--negatives"),)
    ),
    # one measure at a time on top of "grouped"
    "shift": Variant(
        config={**_BEFORE, "training": {**_BEFORE["training"], "shift_frames": 25}}, extract_options=("--augment", "0")
    ),
    "copies": Variant(config=_BEFORE, extract_options=("--augment", "2")),
    "mining": Variant(
        config={**_BEFORE, "training": {**_BEFORE["training"], "hard_negative_weight": 3.0}}, extract_options=("--augment", "0")
    ),
    # early stopping and the kept epoch on validation frame AP instead of validation loss
    "negatives-ap": Variant(
        config={"training": {**_ON["training"], "monitor": "val_ap"}},
        extract_options=("--negatives", "{negatives}", "--augment", "2"),
        needs=(("config", "training.monitor"),),
    ),
    # ---- trials of this session: one change at a time on top of "plain" (today's defaults)
    # positive frames weigh at most 3 (the default cap, 20, makes the network fire on near misses)
    "pw3": Variant(config={"training": {"max_positive_weight": 3.0}}),
    # Keras' moving average of the weights over steps (about 500 steps: 1-2 epochs here)
    "ema": Variant(config={"training": {"ema_momentum": 0.998}}, needs=(("config", "training.ema_momentum"),)),
    # + early stopping and the kept epoch on validation frame AP
    "pw3-ap": Variant(config={"training": {"max_positive_weight": 3.0, "monitor": "val_ap"}}),
    # ---- trials of the fourth session, on top of "plain"
    # early stopping and the kept epoch count only from epoch 10 of 15 (a held-out fold that is
    # best after epoch 1 made cattle ship its epoch-1 network)
    "late": Variant(config={"training": {"min_epochs": 10}}, needs=(("config", "training.min_epochs"),)),
    # ---- the fifth session, on top of "plain": 3-fold cross-validation over the material's 5 folds
    # chooses the epoch count and the post-processing on out-of-fold predictions, then trains on all
    "cv3": Variant(config={"training": {"folds": 3}}, needs=(("config", "training.folds"),)),
    # ---- the ninth session, on top of "cv3": the target's real negative recordings (training backgrounds
    # and distractors strung together) as --negatives, without augmented copies
    "cv3-negatives": Variant(
        config={"training": {"folds": 3}}, extract_options=("--negatives", "{negatives}"), needs=(("extract", "--negatives"),)
    ),
    # + SpecAugment-style masks
    "masking": Variant(
        config={"training": {**_ON["training"], "time_mask_frames": 10, "feature_mask_columns": 8}},
        extract_options=("--negatives", "{negatives}", "--augment", "2"),
        needs=(("config", "training.time_mask_frames"),),
    ),
}


def supported(variant: Variant) -> list[str]:
    """What the installed soundnet lacks of ``variant`` (empty when it has everything)."""
    import yaml

    missing = []
    for where, what in variant.needs:
        if where == "config":
            node, found = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text()), True
            for key in what.split("."):
                found = isinstance(node, dict) and key in node  # a key whose default is null counts
                if not found:
                    break
                node = node[key]
            if not found:
                missing.append(f"config key {what}")
        else:
            text = subprocess.run([*SOUNDNET, where, "--help"], env=ENV, capture_output=True, text=True).stdout
            if what not in text:
                missing.append(f"soundnet {where} {what}")
    return missing


# ---------------------------------------------------------------- running
def run(cmd: list[str]) -> float:
    """Run a command (fresh process); its wall seconds. Fails loudly with its stderr."""
    return measure([str(c) for c in cmd], env=ENV).wall


def read_events(table: Path) -> int:
    """Number of events in a DCASE table (rows with an onset)."""
    count = 0
    for line in table.read_text().splitlines()[1:]:
        cells = line.split("\t")
        if len(cells) >= 3 and cells[1].strip():
            count += 1
    return count


def scores(evaluation: Path, *, test_seconds: float, background_events: int, background_seconds: float) -> dict:
    data = json.loads(evaluation.read_text())
    false_alarms = sum(f["estimated"] - f["true_positives"] for f in data["files"].values())
    return {
        "event_f1": data["event_onset"]["f_measure"] or 0.0,
        "event_error_rate": data["event_onset"]["error_rate"],
        "event_precision": data["event_onset"]["precision"],
        "event_recall": data["event_onset"]["recall"],
        "segment_f1": data["segment"]["f_measure"] or 0.0,
        "false_alarms_per_hour_mixtures": false_alarms / test_seconds * 3600,
        "false_alarms_per_hour_background": background_events / background_seconds * 3600,
    }


def soundnet_dataset(mat: Path, work: Path, variant_name: str, target: str, jobs: int) -> tuple[Path, float]:
    variant = VARIANTS[variant_name]
    data = work / f"data-{variant_name}"
    done = work / f"data-{variant_name}.seconds"
    if done.is_file():
        return data, float(done.read_text())
    extra = [o.replace("{negatives}", str(mat / "negatives")) for o in variant.extract_options]
    train = mat / "train"
    wall = run([*SOUNDNET, "-q", "extract", train, "-a", train / "annotations.tsv", "-t", target, "-o", data, "-j", jobs, *extra])
    done.write_text(f"{wall:.3f}\n")
    return data, wall


def soundnet_run(mat: Path, work: Path, variant_name: str, target: str, seed: int, epochs: int, jobs: int, info: dict) -> dict:
    import yaml

    out = work / f"soundnet-{variant_name}-epochs{epochs}-seed{seed}"
    result = out.with_name(out.name + ".json")
    if result.is_file():
        return json.loads(result.read_text())
    data, extract_wall = soundnet_dataset(mat, work, variant_name, target, jobs)
    variant = VARIANTS[variant_name]
    config = []
    if variant.config:
        path = work / f"config-{variant_name}.yaml"
        path.write_text(yaml.safe_dump(variant.config))
        config = ["--config", path]
    run_dir = out / "run"
    out.mkdir(parents=True, exist_ok=True)
    train_wall = run([*SOUNDNET, "-q", "train", data, "-o", run_dir, "--epochs", epochs, "--seed", seed, *config])
    test = mat / "test"
    evaluation = out / "test-evaluation.json"
    eval_wall = run([*SOUNDNET, "-q", "evaluate", test, "-a", test / "annotations.tsv", "-m", run_dir, "-o", evaluation])
    background = out / "test-background.tsv"
    bg_wall = run([*SOUNDNET, "-q", "detect", mat / "test-background", "-m", run_dir, "--format", "tsv", "-o", background])
    card = json.loads((run_dir / "card.json").read_text())
    figures = scores(
        evaluation,
        test_seconds=info["test"]["mixtures"] * material.MIX_SECONDS,
        background_events=read_events(background),
        background_seconds=info["test_background_seconds"],
    )
    validation = card.get("validation", {}).get("event_onset", {}).get("f_measure")
    figures |= {
        "validation_event_f1": validation,
        "validation_gap": None if validation is None else validation - figures["event_f1"],
        "epochs_run": _epochs_run(run_dir),
        "seconds": {
            "extract (once per target)": extract_wall,
            "train": train_wall,
            "evaluate": eval_wall,
            "detect background": bg_wall,
        },
        "wall_seconds": train_wall + eval_wall + bg_wall,
        "load": loadavg(),
    }
    result.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def _epochs_run(run_dir: Path) -> int | None:
    history = run_dir / "history.csv"
    return len(history.read_text().splitlines()) - 1 if history.is_file() else None


def baseline_run(mat: Path, work: Path, target: str, seed: int, info: dict) -> dict:
    out = work / f"baseline-seed{seed}"
    result = out.with_name(out.name + ".json")
    if result.is_file():
        return json.loads(result.read_text())
    train, test = mat / "train", mat / "test"
    wall = run(
        [
            *BASELINE,
            train,
            train / "annotations.tsv",
            "--target",
            target,
            "--out",
            out,
            "--seed",
            seed,
            "--detect",
            test,
            "--detect",
            mat / "test-background",
        ]
    )
    evaluation = out / "test-evaluation.json"
    eval_wall = run(
        [
            *SOUNDNET,
            "-q",
            "evaluate",
            test,
            "-a",
            test / "annotations.tsv",
            "--estimated",
            out / "test.tsv",
            "-t",
            target,
            "-o",
            evaluation,
        ]
    )
    figures = scores(
        evaluation,
        test_seconds=info["test"]["mixtures"] * material.MIX_SECONDS,
        background_events=read_events(out / "test-background.tsv"),
        background_seconds=info["test_background_seconds"],
    )
    details = json.loads((out / "baseline.json").read_text())
    figures |= {
        "epochs_run": details["epochs_run"],
        "seconds": {"train + detect": wall, "score": eval_wall},
        "wall_seconds": wall,
        "load": loadavg(),
    }
    result.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


# ---------------------------------------------------------------- reporting
METRICS = (
    ("event_f1", "event F1"),
    ("event_error_rate", "event ER"),
    ("segment_f1", "segment F1"),
    ("false_alarms_per_hour_mixtures", "FA/h mixtures"),
    ("false_alarms_per_hour_background", "FA/h background"),
    ("validation_event_f1", "validation event F1"),
    ("validation_gap", "gap (validation - test F1)"),
    ("wall_seconds", "wall s per run"),
)


def mean_std(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def cell(stat: dict, key: str) -> str:
    if stat["mean"] is None:
        return "-"
    digits = 0 if key.startswith(("false", "wall")) else 3
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown(summary: dict) -> str:
    lines = ["| target | system | " + " | ".join(title for _, title in METRICS) + " |", "|" + " --- |" * (len(METRICS) + 2)]
    for target, systems in summary.items():
        for system, stats in systems.items():
            lines.append(f"| {target} | {system} | " + " | ".join(cell(stats[k], k) for k, _ in METRICS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default=",".join(material.TARGETS), help="comma-separated targets of the catalogue")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (comma separated)")
    parser.add_argument("--variant", default="plain", help=f"soundnet variants, comma separated: {', '.join(VARIANTS)}")
    parser.add_argument("--systems", default="soundnet,baseline", help="soundnet, baseline or both")
    parser.add_argument("--train", type=int, default=250, help="training mixtures per target")
    parser.add_argument("--test", type=int, default=100, help="test mixtures per target")
    parser.add_argument("--epochs", type=int, default=15, help="soundnet train --epochs")
    parser.add_argument("--material-seed", type=int, default=0, help="seed of the mixtures (fixed across training seeds)")
    parser.add_argument("--jobs", type=int, default=2, help="soundnet extract --jobs")
    parser.add_argument("--cache", type=Path, default=CACHE / "quality")
    parser.add_argument("--output", type=Path, default=None, help="JSON of every figure (default: in the cache)")
    args = parser.parse_args(argv)

    targets = args.targets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    systems = args.systems.split(",")
    variants = args.variant.split(",") if "soundnet" in systems else []
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})")
        missing = supported(VARIANTS[name])
        if missing:
            parser.error(f"variant {name!r} needs what this soundnet lacks: {', '.join(missing)}")
    print(machine_header())
    started = time.perf_counter()
    results: dict = {"arguments": {k: str(v) for k, v in vars(args).items()}, "material": {}, "runs": {}, "summary": {}}
    for target in targets:
        t0 = time.perf_counter()
        mat = material.build(target, args.cache, n_train=args.train, n_test=args.test, seed=args.material_seed)
        info = json.loads((mat / "material.json").read_text())
        results["material"][target] = material.summary(mat) | {"folder": str(mat), "build_seconds": time.perf_counter() - t0}
        work = args.cache / "runs" / mat.name
        work.mkdir(parents=True, exist_ok=True)
        runs = results["runs"][target] = {}
        for seed in seeds:
            for name in variants:
                key = f"soundnet-{name}"
                figures = soundnet_run(mat, work, name, target, seed, args.epochs, args.jobs, info)
                runs.setdefault(key, {})[seed] = figures
                print(
                    f"{target} {key} seed {seed}: event F1 {figures['event_f1']:.3f} (validation {figures['validation_event_f1']}), {figures['wall_seconds']:.0f} s",
                    flush=True,
                )
            if "baseline" in systems:
                figures = baseline_run(mat, work, target, seed, info)
                runs.setdefault("dcase2017-baseline", {})[seed] = figures
                print(
                    f"{target} baseline seed {seed}: event F1 {figures['event_f1']:.3f}, {figures['wall_seconds']:.0f} s",
                    flush=True,
                )
        results["summary"][target] = {
            system: {k: mean_std([r.get(k) for r in by_seed.values()]) for k, _ in METRICS} for system, by_seed in runs.items()
        }
    results["total_seconds"] = time.perf_counter() - started  # this invocation (cached runs cost nothing)
    results["computed_seconds"] = sum(
        f["wall_seconds"] + f["seconds"].get("extract (once per target)", 0.0) / len(seeds)
        for by_target in results["runs"].values()
        for by_seed in by_target.values()
        for f in by_seed.values()
    )
    output = args.output or args.cache / f"quality-{args.train}x{args.test}-epochs{args.epochs}.json"
    output.write_text(json.dumps(results, indent=1) + "\n")
    print()
    print(markdown(results["summary"]))
    print(
        f"\n{len(targets)} target(s) x {len(seeds)} seed(s): this invocation {results['total_seconds']:.0f} s, "
        f"the runs' own wall time {results['computed_seconds']:.0f} s; figures: {output}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
