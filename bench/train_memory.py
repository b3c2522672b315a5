"""Training on a dataset bigger than memory: peak RSS and windows/s of ``soundnet train``.

    /work/venv/bin/python bench/train_memory.py                        # 2 hours of features, stride 200, ~3 minutes
    /work/venv/bin/python bench/train_memory.py --hours 20 --stride 500 --delete   # 3.7 GB of features

Builds a dataset folder directly, in the format soundnet/dataset.py writes and
``Dataset.open`` reads (manifest.json; per file ``files/<id>.features.npy`` frames x 129
float32, ``files/<id>.labels.npy`` uint8, ``files/<id>.json``): random normal features
with a planted 0.5 s event every 30 s whose frames are shifted (+3 on the first 16
MFCC), so one epoch learns something and tuning sees few events. The features are
written chunk by chunk (``storage.save_npy_chunks``), so this script needs little
memory whatever ``--hours``.

Then runs ``soundnet train DATA --out RUN --epochs 1 --config CFG`` in a fresh process
(through bench/_train_child.py, which calls the same command line with timers around
its phases) and reports wall time, peak RSS (``/usr/bin/time -v``), training windows/s
(training steps only, validation excluded) and where the time and the peak go.
``--stride`` (training windows start every STRIDE frames; soundnet's default 50)
bounds the epoch's length for big datasets: it changes the number of training steps,
not what is read per window or the full passes (statistics, validation).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import CACHE, PYTHON, QUIET_ENV, dump_json, free_disk_gb, loadavg, machine_header, measure, table  # noqa: E402

CHILD = str(Path(__file__).resolve().parent / "_train_child.py")


def build_dataset(root: Path, *, hours: float, file_minutes: float, seed: int = 0) -> dict:
    from soundnet import __version__
    from soundnet.config import FeatureConfig, to_dict
    from soundnet.dataset import MANIFEST, Entry
    from soundnet.storage import save_npy, save_npy_chunks, write_json

    config = FeatureConfig()
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        data = json.loads(manifest_path.read_text())
        if data.get("bench", {}).get("hours") == hours and data["bench"].get("file_minutes") == file_minutes:
            return data
    shutil.rmtree(root, ignore_errors=True)
    (root / "files").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    fps = round(1 / config.frame_seconds)
    n_files = max(2, int(round(hours * 60 / file_minutes)))
    frames_per_file = int(round(hours * 3600 * fps / n_files))
    entries = []
    for i in range(n_files):
        entry_id = f"bench_{i:03d}-{i:010x}"
        spans = [[t + 7.0, t + 7.5] for t in range(0, int(frames_per_file / fps) - 8, 30)]
        labels = np.zeros(frames_per_file, np.uint8)
        for on, off in spans:
            labels[int(round(on * fps)) : int(round(off * fps))] = 1

        def chunks(n=frames_per_file, labels=labels, step=60_000):
            for start in range(0, n, step):
                block = rng.standard_normal((min(step, n - start), config.n_features), dtype=np.float32)
                block[:, :16] += 3.0 * labels[start : start + len(block), None]
                yield block

        frames = save_npy_chunks(
            root / "files" / f"{entry_id}.features.npy", chunks(), columns=config.n_features, dtype=np.float32
        )
        save_npy(root / "files" / f"{entry_id}.labels.npy", labels)
        entry = Entry(entry_id, f"/bench/synthetic/{entry_id}.wav", frames, int(labels.sum()), len(spans))
        fingerprint = {"source": entry.source, "size": 0, "mtime_ns": 0, "features": "bench"}
        write_json(
            root / "files" / f"{entry_id}.json", {"fingerprint": fingerprint, "events": spans, "entry": dataclasses.asdict(entry)}
        )
        entries.append(entry)
    data = {
        "soundnet_version": __version__,
        "features": to_dict(config),
        "target": "beep",
        "counts": {
            "files": len(entries),
            "frames": sum(e.frames for e in entries),
            "positive_frames": sum(e.positive_frames for e in entries),
            "events": sum(e.events for e in entries),
        },
        "files": [dataclasses.asdict(e) for e in entries],
        "bench": {"hours": hours, "file_minutes": file_minutes},
    }
    write_json(manifest_path, data)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--file-minutes", type=float, default=30.0, help="length of each synthetic file")
    parser.add_argument(
        "--stride", type=int, default=200, help="training window stride in frames (default 200 for a short run; soundnet's is 50)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    parser.add_argument("--delete", action="store_true", help="delete the dataset afterwards")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    print(machine_header())
    root = CACHE / f"train-data-{args.hours:g}h"
    need = args.hours * 3600 * 100 * 129 * 4 / 1e9
    if not (root / "manifest.json").is_file() and free_disk_gb(CACHE) < need * 1.2 + 2:
        raise SystemExit(f"not enough disk in {CACHE} for {need:.1f} GB of features")
    manifest = build_dataset(root, hours=args.hours, file_minutes=args.file_minutes)
    size = sum(f.stat().st_size for f in (root / "files").iterdir()) / 1e9
    counts = manifest["counts"]
    print(
        f"# dataset {root}: {counts['files']} files, {counts['frames']:,} frames, {size:.2f} GB on disk, "
        f"{counts['events']} events"
    )

    cfg = CACHE / f"train-bench-stride{args.stride}.yaml"
    cfg.write_text(f"training:\n  stride: {args.stride}\n  batch_size: {args.batch_size}\n")
    run = CACHE / "train-bench-run"
    phases_path = CACHE / "train-bench-phases.json"
    shutil.rmtree(run, ignore_errors=True)
    env = {**QUIET_ENV, "SOUNDNET_BENCH_PHASES": str(phases_path)}
    m = measure([PYTHON, CHILD, str(root), "--out", str(run), "--epochs", "1", "--config", str(cfg)], env=env)
    phases = json.loads(phases_path.read_text())
    load = loadavg()
    rows = []
    fit = next((p for p in phases if p["phase"] == "fit: training steps"), {})
    for p in phases:
        rows.append([p["phase"], p["seconds"], p["peak_rss_mb_so_far"]])
    print(f"\nsoundnet train {root.name} --epochs 1 (stride {args.stride}, batch {args.batch_size}); load after: {load}")
    print(table(rows, ["phase (in order of completion)", "seconds", "peak RSS so far MiB"]))
    print(
        table(
            [
                [
                    f"{args.hours:g} h ({size:.2f} GB features)",
                    m.wall,
                    m.rss_mb,
                    fit.get("windows_per_epoch", 0),
                    fit.get("windows_per_s", float("nan")),
                ]
            ],
            ["dataset", "wall s (whole process)", "peak RSS MiB", "training windows", "training windows/s"],
        )
    )
    dump_json(
        args.json,
        {
            "hours": args.hours,
            "dataset_gb": size,
            "wall_s": m.wall,
            "peak_rss_mb": m.rss_mb,
            "phases": phases,
            "stride": args.stride,
        },
    )
    if not args.keep:
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(run.with_name(run.name + ".partial"), ignore_errors=True)
    if args.delete:
        shutil.rmtree(root)
        print(f"# deleted {root}")
    os.unlink(phases_path)


if __name__ == "__main__":
    main()
