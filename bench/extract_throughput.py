"""``soundnet extract`` throughput with --jobs 1 and --jobs 2.

    /work/venv/bin/python bench/extract_throughput.py                  # 16 x 60 s, ~1-2 minutes
    /work/venv/bin/python bench/extract_throughput.py --files 32 --seconds 120 --repeats 3

Generates (cached under /tmp/soundnet-bench) a folder of 16 kHz WAVs of low noise with
2 kHz tone bursts and their DCASE annotation table, then runs ``soundnet extract``
in a fresh process with each --jobs value, into a fresh --out each time. Reports wall
time, x real time (audio seconds / wall seconds), x real time per job, and the
speedup of --jobs 2 over --jobs 1. Runs alternate between the job counts; the best of
``--repeats`` is kept. A single-file extract (``--files 1``-sized) gives the fixed
start-up cost, so the per-file rate can be told apart from it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import CACHE, SOUNDNET, dump_json, loadavg, long_wav, machine_header, measure, table  # noqa: E402


def make_set(files: int, seconds: float) -> tuple[Path, Path]:
    folder = CACHE / f"extract-{files}x{seconds:g}s"
    table_path = CACHE / f"extract-{files}x{seconds:g}s.tsv"
    if table_path.is_file() and len(list(folder.glob("*.wav"))) == files:
        return folder, table_path
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["filename\tonset\toffset\tevent_label"]
    for i in range(files):
        name = f"clip_{i:03d}.wav"
        long_wav(seconds, path=folder / name, seed=i)
        # long_wav plants a 0.5 s burst 3 s past every 10 s mark
        rows += [f"{name}\t{t + 3}.0\t{t + 3}.5\tbeep" for t in range(0, int(seconds) - 3, 10)]
    table_path.write_text("\n".join(rows) + "\n")
    return folder, table_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--jobs", default="1,2", help="comma-separated --jobs values")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    print(machine_header())
    folder, annotations = make_set(args.files, args.seconds)
    audio = args.files * args.seconds
    jobs = [int(j) for j in args.jobs.split(",")]
    out_root = CACHE / "extract-out"
    walls: dict[int, list[float]] = {j: [] for j in jobs}
    rss: dict[int, float] = {j: 0.0 for j in jobs}

    # fixed cost: one short file through the same command
    one, one_table = make_set(1, 10.0)
    shutil.rmtree(out_root, ignore_errors=True)
    startup = min(
        measure([SOUNDNET, "extract", str(one), "-a", str(one_table), "--out", str(out_root / f"one-{k}")]).wall for k in range(2)
    )
    for k in range(args.repeats):
        for j in jobs:
            out = out_root / f"jobs{j}-{k}"
            shutil.rmtree(out, ignore_errors=True)
            m = measure([SOUNDNET, "extract", str(folder), "-a", str(annotations), "--out", str(out), "--jobs", str(j)])
            walls[j].append(m.wall)
            rss[j] = max(rss[j], m.rss_mb)
            print(f"  --jobs {j}: {m.wall:.1f} s, peak RSS {m.rss_mb:.0f} MiB (load {loadavg()})", file=sys.stderr)
            shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out_root, ignore_errors=True)
    base = min(walls[jobs[0]])
    rows, result = [], {"files": args.files, "seconds": args.seconds, "startup_s": startup, "runs": {}}
    for j in jobs:
        wall = min(walls[j])
        net = wall - startup
        # excluding the start-up of one process (noisy: meaningless when it is most of the wall time)
        per_job_net = audio / net / j if net > 0.25 * wall else float("nan")
        rows.append([f"--jobs {j}", wall, audio / wall, audio / wall / j, per_job_net, rss[j], base / wall])
        result["runs"][j] = {"wall_s": walls[j], "x_real_time": audio / wall, "peak_rss_mb": rss[j], "speedup": base / wall}
    print(
        f"\nsoundnet extract: {args.files} files x {args.seconds:g} s = {audio / 60:g} min of audio "
        f"(best of {args.repeats}); fixed cost of one 10 s file: {startup:.2f} s"
    )
    print(
        table(
            rows,
            [
                "command",
                "wall s",
                "x real time",
                "x RT per job",
                "x RT per job excl. start-up",
                "peak RSS MiB (largest process)",
                f"speedup vs --jobs {jobs[0]}",
            ],
        )
    )
    print("(peak RSS: the largest single process of the tree, parent or worker, as wait4 reports it; not their sum)")
    print("median walls: " + ", ".join(f"--jobs {j}: {np.median(walls[j]):.1f} s" for j in jobs))
    dump_json(args.json, result)


if __name__ == "__main__":
    main()
