"""Detection on a long recording: wall time, real-time factor, peak RSS.

    /work/venv/bin/python bench/detect_long.py                  # 1 hour, ~2 minutes
    /work/venv/bin/python bench/detect_long.py --hours 10       # ~1.1 GB WAV in /tmp
    /work/venv/bin/python bench/detect_long.py --model RUN --repeats 3 --delete

Generates (and caches under /tmp/soundnet-bench) a 16 kHz PCM_16 WAV of low noise
with a 2 kHz tone burst every 10 s, written block by block. Then, each in a fresh
process:

- ``soundnet detect FILE --model RUN --format tsv -o OUT --runtime litert|keras``;
- the floor: reading the audio alone, and reading + features (iter_audio +
  iter_features), the same way;
- ``--stages litert`` (default; ``--stages litert,keras`` for both): one instrumented
  in-process detect per runtime that splits the wall time into read / features /
  normalise / predict / windowing / events. The first features chunk carries
  librosa's one-off start-up (lazy imports, numba cache loads: ~4 s).

The model is ``--model``, else the bundled model, else a quick untrained run folder
(speed does not depend on the weights). Peak RSS comes from ``/usr/bin/time -v``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CACHE,
    PYTHON,
    SOUNDNET,
    dump_json,
    free_disk_gb,
    loadavg,
    long_wav,
    machine_header,
    measure,
    resolve_model,
    table,
)

STAGES = str(Path(__file__).resolve().parent / "_stages.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--model", help="run folder (default: bundled model, else a quick untrained one)")
    parser.add_argument("--runtimes", default="litert,keras")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each command (best wall kept, max RSS kept)")
    parser.add_argument("--stages", default="litert", help="runtimes to break down stage by stage (comma-separated; '' for none)")
    parser.add_argument("--delete", action="store_true", help="delete the generated WAV afterwards")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    print(machine_header())
    seconds = args.hours * 3600
    need = seconds * 16000 * 2 / 1e9
    if free_disk_gb(CACHE) < need + 1:
        raise SystemExit(f"not enough disk in {CACHE} for a {need:.1f} GB WAV")
    wav = long_wav(seconds)
    run, origin = resolve_model(args.model)
    print(f"# audio {wav} ({args.hours:g} h, {wav.stat().st_size / 1e9:.2f} GB); model {run} ({origin})")
    out_file = CACHE / "detect-out.tsv"

    commands = {
        "read audio only": [PYTHON, STAGES, "read", str(wav)],
        "read + features (floor)": [PYTHON, STAGES, "features", str(wav)],
    }
    for runtime in args.runtimes.split(","):
        commands[f"soundnet detect --runtime {runtime}"] = [
            SOUNDNET,
            "detect",
            str(wav),
            "--model",
            str(run),
            "--format",
            "tsv",
            "-o",
            str(out_file),
            "--runtime",
            runtime,
        ]
    rows, results = [], {"hours": args.hours, "model": str(run), "model_origin": origin, "runs": {}}
    floor = None
    for name, cmd in commands.items():
        runs = [measure(cmd) for _ in range(args.repeats)]
        wall = min(r.wall for r in runs)
        rss = max(r.rss_mb for r in runs)
        if name.startswith("read + features"):
            floor = wall
        ratio = wall / floor if floor and not name.startswith("read") else float("nan")
        rows.append([name, wall, seconds / wall, rss, ratio])
        results["runs"][name] = {
            "wall_s": [r.wall for r in runs],
            "peak_rss_mb": rss,
            "x_real_time": seconds / wall,
            "load": loadavg(),
        }
        print(f"  {name}: {wall:.1f} s, peak RSS {rss:.0f} MiB (load {loadavg()})", file=sys.stderr)
    print(f"\nDetect on a {args.hours:g}-hour file (fresh process each; wall = best of {args.repeats})")
    print(table(rows, ["command", "wall s", "x real time", "peak RSS MiB", "x floor"]))

    if args.stages:
        stage_rows = []
        for runtime in args.stages.split(","):
            m = measure([PYTHON, STAGES, "detect", str(wav), str(run), runtime])
            data = json.loads(m.stdout)
            results["runs"][f"stages {runtime}"] = data
            total = data["total_s"]
            for stage, s in sorted(data["stages"].items(), key=lambda kv: -kv[1]):
                stage_rows.append([runtime, stage, s, 100 * s / total])
            stage_rows.append([runtime, "TOTAL detect_file", total, 100.0])
            stage_rows.append(
                [runtime, "(imports before load / Detector.load)", f"{data['import_s']:.2f} / {data['load_s']:.2f}", ""]
            )
        print(
            "\nWhere detect's time goes (one instrumented in-process Detector.detect_file per runtime, with the features thread off so the stages add up)"
        )
        print(table(stage_rows, ["runtime", "stage", "seconds", "% of detect_file"]))
    dump_json(args.json, results)
    if args.delete:
        wav.unlink()
        print(f"# deleted {wav}")


if __name__ == "__main__":
    main()
