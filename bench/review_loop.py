"""The review loop on real audio (issue 15): review a site's detections, retrain, measure.

The *site* is the test side of the real-audio quality material (``bench/quality_material.py``):
mixtures of test sources into test backgrounds the detector never heard, and the pure
test-background recordings. Built with ``--site-mixtures`` test mixtures (the training
side is the same as the quality benchmark's for any number of test mixtures: it is drawn
first from the same seed), then split in two by file order: the first ``--part-a`` of the
mixtures and of the background recordings are the part a person reviews, the rest is
held out.

Per target and seed:

1. RUN1: the quality benchmark's soundnet run of ``--variant`` (cached under
   ``$SOUNDNET_BENCH_CACHE/quality/runs``; trained there when missing).
2. ``soundnet detect`` on part A (csv, with confidences); ``--reviews`` of the
   detections picked by ``soundnet.review.sample_detections`` (``--strategy``, seeded),
   each decided by a simulated reviewer who knows the truth: accepted when it overlaps
   a reference event of its mixture, rejected otherwise (every detection on pure
   background is rejected). The table is written by ``soundnet.review.ReviewSession``,
   as the page writes it.
3. RUN2: ``soundnet train DATA --reviewed TABLE --audio PART_A --from RUN1 --epochs E``;
   beside it the control ``train DATA --from RUN1 --epochs E`` without the table (the
   same extra epochs, no review), so that what the review brings is told apart from
   what more training brings.
4. Each of RUN1, the control and RUN2 also tuned on the review: a copy of it through
   ``soundnet tune COPY --reviewed TABLE --audio PART_A`` (the post-processing with
   the best event F1 on the clips around the decided spans).
5. ``soundnet evaluate`` of all six on the held-out part (its mixtures' references; its
   background recordings hold none): false alarms per hour and recall (event-based,
   0.5 s onset collar), event F1.

Prints a Markdown table, writes every figure to ``review-loop.json`` in the cache.
Run it niced: ``PYTHONPATH=. nice -n 10 python bench/review_loop.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402
import quality_material as material  # noqa: E402
from _common import CACHE, loadavg, machine_header  # noqa: E402

from soundnet.review import ACCEPTED, REJECTED, ReviewSession, read_detections, sample_detections  # noqa: E402

SOUNDNET = quality.SOUNDNET


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def read_reference(table: Path) -> dict[str, list[tuple[float, float]]]:
    """Mixture name -> reference spans of a material annotation table."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for line in table.read_text().splitlines()[1:]:
        cells = line.split("\t")
        spans.setdefault(cells[0], [])
        if len(cells) >= 3 and cells[1].strip():
            spans[cells[0]].append((float(cells[1]), float(cells[2])))
    return spans


def split_site(site: Path, work: Path, *, part_a: float) -> tuple[Path, Path, dict, dict]:
    """``work/site-a`` and ``work/site-b`` (hard links to the site's mixtures and
    background recordings, split by file order) and the reference spans of each, by the
    names detect gives (relative to the folder)."""
    reference = read_reference(site / "test" / "annotations.tsv")
    mixtures = sorted(reference)
    backgrounds = sorted(p.name for p in (site / "test-background").glob("*.wav"))
    cut_m, cut_b = round(part_a * len(mixtures)), round(part_a * len(backgrounds))
    parts = {
        "a": ([f"mix/{m}" for m in mixtures[:cut_m]], [f"background/{b}" for b in backgrounds[:cut_b]]),
        "b": ([f"mix/{m}" for m in mixtures[cut_m:]], [f"background/{b}" for b in backgrounds[cut_b:]]),
    }
    folders, truths = {}, {}
    for name, (mixes, bgs) in parts.items():
        folder = work / f"site-{name}"
        if not folder.is_dir():
            tmp = folder.with_name(folder.name + ".part")
            shutil.rmtree(tmp, ignore_errors=True)
            for m in mixes:
                link_or_copy(site / "test" / m.split("/", 1)[1], tmp / m)
            for b in bgs:
                link_or_copy(site / "test-background" / b.split("/", 1)[1], tmp / b)
            rows = ["filename\tonset\toffset\tevent_label"]
            label = json.loads((site / "material.json").read_text())["target"]
            for m in mixes:
                spans = reference[m.split("/", 1)[1]]
                rows += [f"{m}\t{on:.3f}\t{off:.3f}\t{label}" for on, off in spans] or [m]
            rows += bgs
            (tmp.parent / f"site-{name}.tsv").write_text("\n".join(rows) + "\n")
            tmp.rename(folder)
        folders[name] = folder
        truths[name] = {m: reference[m.split("/", 1)[1]] for m in mixes} | {b: [] for b in bgs}
    return folders["a"], folders["b"], truths["a"], truths["b"]


def simulate_review(detections: Path, truth: dict, out: Path, *, reviews: int, strategy: str, seed: int) -> dict:
    """A reviewer who knows the truth decides ``reviews`` sampled detections."""
    events = read_detections(detections)
    chosen = sample_detections(events, reviews, strategy=strategy, seed=seed)
    out.unlink(missing_ok=True)
    session = ReviewSession(chosen, out)
    for i, e in enumerate(chosen):
        hit = any(e.onset < off and on < e.offset for on, off in truth[e.filename])
        session.decide(i, ACCEPTED if hit else REJECTED)
    return {"detections_part_a": len(events), **session.progress()}


def figures(evaluation: Path) -> dict:
    data = json.loads(evaluation.read_text())
    alarms = data["alarms"]
    return {
        "false_alarms_per_hour": alarms["false_alarms_per_hour"],
        "recall": None if alarms["miss_rate"] is None else 1.0 - alarms["miss_rate"],
        "event_f1": data["event_onset"]["f_measure"] or 0.0,
        "false_alarms": alarms["false_alarms"],
    }


def evaluate(run_dir: Path, part: Path, out: Path) -> dict:
    if not out.is_file():
        quality.run([*SOUNDNET, "-q", "evaluate", part, "-a", part.with_suffix(".tsv"), "-m", run_dir, "-o", out])
    return figures(out)


def loop_once(target: str, seed: int, args, info: dict) -> dict:
    mat = material.build(target, args.cache, n_train=args.train, n_test=args.test)
    site = material.build(target, args.cache, n_train=args.train, n_test=args.site_mixtures)
    if (mat / "train" / "annotations.tsv").read_bytes() != (site / "train" / "annotations.tsv").read_bytes():
        raise SystemExit(f"{site}: its training side differs from {mat}'s: RUN1 would not be the same detector")
    runs = args.cache / "runs" / mat.name
    runs.mkdir(parents=True, exist_ok=True)
    mat_info = json.loads((mat / "material.json").read_text())
    quality.soundnet_run(mat, runs, args.variant, mat_info["target"], 0, args.run1_epochs, args.jobs, mat_info)
    run1 = runs / f"soundnet-{args.variant}-epochs{args.run1_epochs}-seed0" / "run"
    data, _ = quality.soundnet_dataset(mat, runs, args.variant, mat_info["target"], args.jobs)
    work = args.cache / "review-loop" / f"{site.name}-{args.variant}"
    work.mkdir(parents=True, exist_ok=True)
    site_a, site_b, truth_a, truth_b = split_site(site, work, part_a=args.part_a)
    key = f"seed{seed}-{args.strategy}{args.reviews}-epochs{args.epochs}-w{args.reviewed_weight:g}"
    out = work / key
    out.mkdir(exist_ok=True)
    detections = work / "run1-part-a.csv"
    started = time.monotonic()
    if not detections.is_file():
        quality.run([*SOUNDNET, "-q", "detect", site_a, "-m", run1, "--format", "csv", "-o", detections])
    reviewed = out / "reviewed.tsv"
    review = simulate_review(detections, truth_a, reviewed, reviews=args.reviews, strategy=args.strategy, seed=seed)
    config = out / "config.yaml"
    import yaml

    variant_config = dict(quality.VARIANTS[args.variant].config)
    training = {**variant_config.get("training", {}), "reviewed_weight": args.reviewed_weight}
    config.write_text(yaml.safe_dump({**variant_config, "training": training}))
    common = ["--epochs", args.epochs, "--seed", seed, "--config", config, "--from", run1]
    seconds = {}
    for name, extra in (("reviewed", ["--reviewed", reviewed, "--audio", site_a]), ("control", [])):
        run_dir = out / f"run2-{name}"
        if not (run_dir / "card.json").is_file():
            seconds[name] = quality.run([*SOUNDNET, "-q", "train", data, "-o", run_dir, *common, *extra])
    tuned = {}
    for name, run_dir in (
        ("before_tuned", run1),
        ("control_tuned", out / "run2-control"),
        ("after_tuned", out / "run2-reviewed"),
    ):
        copy = out / f"{name}-run"  # tune rewrites the card: a copy per detector
        if not (copy / "card.json").is_file():
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(run_dir, copy)
            quality.run([*SOUNDNET, "-q", "tune", copy, "--reviewed", reviewed, "--audio", site_a])
        tuned[name] = evaluate(copy, site_b, out / f"{name}-part-b.json")
    result = {
        "target": target,
        "seed": seed,
        "variant": args.variant,
        "review": review,
        "part_a": {
            "mixtures": sum(k.startswith("mix/") for k in truth_a),
            "background_files": sum(k.startswith("background/") for k in truth_a),
        },
        "part_b": {
            "mixtures": sum(k.startswith("mix/") for k in truth_b),
            "background_files": sum(k.startswith("background/") for k in truth_b),
        },
        "before": evaluate(run1, site_b, work / "run1-part-b.json"),
        "after": evaluate(out / "run2-reviewed", site_b, out / "run2-reviewed-part-b.json"),
        "control": evaluate(out / "run2-control", site_b, out / "run2-control-part-b.json"),
        **tuned,
        "train_seconds": seconds,
        "wall_seconds": time.monotonic() - started,
        "load": loadavg(),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _cell(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3g}" if abs(values[0]) < 10 else f"{values[0]:.0f}"
    mean, std = statistics.mean(values), statistics.stdev(values)
    return f"{mean:.3f} ± {std:.3f}" if abs(mean) < 10 else f"{mean:.0f} ± {std:.0f}"


ROWS = (
    ("before", "RUN1 (before review)"),
    ("before_tuned", "RUN1, tune --reviewed"),
    ("control", "RUN1 + E epochs, no review"),
    ("control_tuned", "RUN1 + E epochs, no review, tune --reviewed"),
    ("after", "RUN1 + E epochs with train --reviewed"),
    ("after_tuned", "RUN1 + E epochs with train --reviewed, tune --reviewed"),
)


def markdown(results: list[dict]) -> str:
    lines = [
        "| target | detector | seeds | FA/h held-out | recall held-out | event F1 held-out |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for target in dict.fromkeys(r["target"] for r in results):
        mine = [r for r in results if r["target"] == target]
        seeds = ",".join(str(r["seed"]) for r in mine)
        for key, name in ROWS:
            if not all(key in r for r in mine):
                continue
            row = [_cell([r[key][m] for r in mine]) for m in ("false_alarms_per_hour", "recall", "event_f1")]
            lines.append(f"| {target} | {name} | {seeds} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="bird")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variant", default="grouped", help="RUN1's configuration (bench/quality.py VARIANTS).")
    parser.add_argument("--reviews", type=int, default=200, help="Detections of part A the simulated reviewer decides.")
    parser.add_argument("--strategy", default="stratified", choices=("top", "stratified", "uncertain"))
    parser.add_argument("--epochs", type=int, default=5, help="Fine-tuning epochs of RUN2 (and of the control).")
    parser.add_argument("--reviewed-weight", type=float, default=4.0)
    parser.add_argument("--site-mixtures", type=int, default=400, help="Test mixtures of the site.")
    parser.add_argument("--part-a", type=float, default=0.6, help="Share of the site reviewed (by file order).")
    parser.add_argument("--train", type=int, default=250)
    parser.add_argument("--test", type=int, default=100, help="Test mixtures of the quality material RUN1 comes from.")
    parser.add_argument("--run1-epochs", type=int, default=15)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=CACHE / "quality")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    print(machine_header(), file=sys.stderr)
    results = []
    for target in args.targets.split(","):
        for seed in map(int, args.seeds.split(",")):
            result = loop_once(target, seed, args, {})
            print(json.dumps(result), file=sys.stderr)
            results.append(result)
    output = args.output or args.cache / "review-loop.json"
    output.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
