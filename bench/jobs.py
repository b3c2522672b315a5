"""detect over many files: --jobs 1, --jobs 2 and a Dask LocalCluster, side by side.

    /tmp/venv/bin/python bench/jobs.py                      # 40 files of 5 min, 2 rounds
    /tmp/venv/bin/python bench/jobs.py --files 8 --minutes 1 --rounds 1   # a quick look

Writes (and caches under /tmp/soundnet-bench/jobs) ``--files`` planted-tone WAVs of
``--minutes`` each (16 kHz PCM_16, a 2 kHz burst every 10 s). Then, per round and in
this order, each in a fresh process with the bundled model (or ``--model``):

- ``soundnet detect DIR --jobs 1 --output-dir OUT``;
- ``soundnet detect DIR --jobs 2 --output-dir OUT``;
- ``soundnet detect DIR --scheduler ADDR --output-dir OUT`` on a LocalCluster of
  ``--workers`` worker processes (1 thread each) started by this script before the
  first round; one unmeasured warm-up run first (a cluster's workers stay up between
  runs; its cold figure is printed too).

Rounds interleave the three so that the machine's load (shared, noisy) hits them alike;
the load average is printed around each run. The output folders of every run must be
byte-identical, or the script exits 1.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, PYTHON, QUIET_ENV, dump_json, loadavg, long_wav, machine_header, measure, resolve_model, table  # noqa: E402


def same_tree(a: Path, b: Path) -> bool:
    compared = filecmp.dircmp(a, b)
    if compared.left_only or compared.right_only or compared.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, compared.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(a / d, b / d) for d in compared.common_dirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (and --jobs of the pool run)")
    parser.add_argument("--model", help="run folder (default: the bundled model)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(machine_header())

    folder = CACHE / "jobs" / f"{args.files}x{args.minutes:g}min"
    for i in range(args.files):
        long_wav(args.minutes * 60, path=folder / f"f{i:03d}.wav", seed=100 + i)
    model, where = resolve_model(args.model)
    print(f"# {args.files} files of {args.minutes:g} min in {folder}; model {model} ({where})")
    out_root = CACHE / "jobs-out"
    shutil.rmtree(out_root, ignore_errors=True)

    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
    base = [PYTHON, "-m", "soundnet", "-q", "detect", str(folder), "--model", str(model), "--format", "tsv"]
    configs = {
        "--jobs 1": ["--jobs", "1"],
        f"--jobs {args.workers}": ["--jobs", str(args.workers)],
        f"dask {args.workers} workers": ["--scheduler", cluster.scheduler_address],
    }
    walls: dict[str, list[float]] = {name: [] for name in configs}
    loads: list[str] = []
    try:
        cold = measure([*base, *configs[f"dask {args.workers} workers"], "--output-dir", str(out_root / "warmup")], env=QUIET_ENV)
        print(f"dask warm-up (cold workers): {cold.wall:.2f} s")
        for r in range(args.rounds):
            for name, option in configs.items():
                out = out_root / f"{name.replace(' ', '_')}-{r}"
                before = loadavg()
                m = measure([*base, *option, "--output-dir", str(out)], env=QUIET_ENV)
                walls[name].append(m.wall)
                loads.append(f"{before} -> {loadavg()}")
                print(f"round {r}: {name:>18}: {m.wall:7.2f} s  peak RSS {m.rss_mb:6.0f} MB  load {before} -> {loadavg()}")
    finally:
        cluster.close()

    outs = sorted(p for p in out_root.iterdir() if p.is_dir())
    identical = all(same_tree(outs[0], other) for other in outs[1:])
    audio_s = args.files * args.minutes * 60
    one = min(walls["--jobs 1"])
    rows = [
        [name, f"{min(w):.2f}", f"{audio_s / min(w):.0f}x", f"{one / min(w):.2f}x", " ".join(f"{x:.2f}" for x in w)]
        for name, w in walls.items()
    ]
    print(table(rows, ["run", "best wall s", "real time", "vs --jobs 1", "every round"]))
    pool, dask = min(walls[f"--jobs {args.workers}"]), min(walls[f"dask {args.workers} workers"])
    print(f"dask / --jobs {args.workers}: {dask / pool:.3f} (target <= 1.15)")
    print(f"outputs of all {len(outs)} runs byte-identical: {identical}")
    if args.json:
        dump_json(args.json, {"walls": walls, "loads": loads, "identical": identical, "cold_dask": cold.wall})
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
