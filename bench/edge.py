"""Small-device figures: file sizes of each export, int8 against float, peak memory of detect per runtime.

    python bench/edge.py --model RUN [--dataset DATASET]          # ~3-5 minutes
    python bench/edge.py --model /tmp/alarm_b2/run --dataset /tmp/alarm_b2/data --json edge.json

1. ``soundnet export RUN`` to onnx (into a copy of the run, as ``model.onnx``), tflite,
   tflite-int8 and tflite-int16x8, each with ``--report``: size, and event F1 / frame AP of the exported
   network against the Keras model on the run's validation files (from its dataset).
2. ``soundnet detect AUDIO --model RUN --runtime R`` in a fresh process for R = keras,
   litert (the run's float ``model.tflite``), onnx, and each integer export: a copy of
   the run whose ``model.tflite`` is that export (its card re-sealed with the new
   checksum), run with ``--runtime litert``. Peak RSS (``/usr/bin/time -v``) and wall time, on the
   example clip and on a generated 10-minute file; the events each runtime finds on the
   example clip.

Wall times are side by side in one run (the machine is shared): read them as ratios.
The model is ``--model``, else the bundled detector (whose dataset is not shipped:
give ``--dataset`` for the int8 export and the accuracy figures).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, PYTHON, ROOT, dump_json, long_wav, machine_header, measure, resolve_model, table  # noqa: E402

SOUNDNET = [PYTHON, "-m", "soundnet"]  # this checkout's soundnet (PYTHONPATH), not an installed one
RESEAL = """
import shutil, sys
from pathlib import Path
from soundnet.run import TFLITE_FILE, read_card, seal, write_card
run, int8 = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copyfile(int8, run / TFLITE_FILE)
write_card(run, seal(run, read_card(run)))
"""


# The network alone, as a live device runs it: one window at a time (batch 1), 20 times.
# With "none" the child only imports the runtime: the difference is the network's RAM.
ALONE = """
import sys
import numpy as np
runtime, path = sys.argv[1], sys.argv[2]
x = np.random.default_rng(0).standard_normal((1, 100, 129)).astype(np.float32)
if runtime == "onnx":
    import onnxruntime
    if path != "none":
        from soundnet.onnxrt import ONNXPredictor
        predict = ONNXPredictor(path, n_mfcc=64, window=100)
else:
    import ai_edge_litert.interpreter
    if path != "none":
        from soundnet.litert import LiteRTPredictor
        predict = LiteRTPredictor(path, n_mfcc=64, window=100)
if path != "none":
    for _ in range(20):
        predict(x)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="run folder (default: the bundled detector)")
    parser.add_argument("--dataset", help="the run's dataset, if its card does not name one that is there")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the generated long file")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    print(machine_header())
    source, origin = resolve_model(args.model)
    work = CACHE / "edge"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    run = work / "run"
    shutil.copytree(source, run)
    print(f"# model {source} ({origin}); dataset {args.dataset or 'named by the card'}")

    exports = {
        "onnx": run / "model.onnx",
        "tflite": work / "net.tflite",
        "tflite-int8": work / "net.int8.tflite",
        "tflite-int16x8": work / "net.16x8.tflite",
    }
    reports = {}
    for fmt, out in exports.items():
        command = [*SOUNDNET, "-q", "export", str(run), "--format", fmt, "--out", str(out), "--report", str(work / f"{fmt}.json")]
        if args.dataset:
            command += ["--dataset", args.dataset]
        done = measure(command, check=False)
        if done.returncode != 0:
            print(f"# export {fmt} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
            continue
        reports[fmt] = json.loads((work / f"{fmt}.json").read_text())
        reports[fmt]["export_seconds"] = done.wall
        reports[fmt]["export_rss_mb"] = done.rss_mb

    rows = [["model.keras (Keras, float32)", (run / "model.keras").stat().st_size, "", "", "", "", ""]]
    rows.append(["model.tflite (the run's, float32)", (run / "model.tflite").stat().st_size, "", "", "", "", ""])
    for fmt, report in reports.items():
        accuracy = report.get("accuracy") or {}
        ref, got = accuracy.get("reference", {}), accuracy.get("exported", {})
        rows.append(
            [
                fmt,
                report["bytes"],
                _num(got.get("event_f1")),
                _num(ref.get("event_f1")),
                _num(got.get("frame_ap")),
                _num(ref.get("frame_ap")),
                _num(accuracy.get("max_abs_difference")),
            ]
        )
    print()
    files = next((r["accuracy"] for r in reports.values() if r.get("accuracy")), None)
    where = f"{files['files']} validation files, {files['frames']:,} frames" if files else "accuracy not measured"
    print(f"## exports ({where})")
    print(table(rows, ["file", "bytes", "event F1", "Keras F1", "frame AP", "Keras AP", "max |dp|"]))

    runtimes = {"keras": (run, "keras"), "litert": (run, "litert")}
    if "onnx" in reports:
        runtimes["onnx"] = (run, "onnx")
    for fmt in ("tflite-int8", "tflite-int16x8"):
        if fmt in reports:
            copy = work / f"run-{fmt}"
            shutil.copytree(run, copy)
            (copy / "model.onnx").unlink(missing_ok=True)
            measure([PYTHON, "-c", RESEAL, str(copy), str(exports[fmt])])
            runtimes[f"{fmt} (litert)"] = (copy, "litert")
    rows, alone = [], {}
    networks = {"tflite (the run's)": ("litert", run / "model.tflite"), "onnx": ("onnx", exports["onnx"])}
    networks.update({fmt: ("litert", exports[fmt]) for fmt in ("tflite-int8", "tflite-int16x8")})
    baselines = {name: measure([PYTHON, "-c", ALONE, name, "none"]).rss_mb for name in ("litert", "onnx")}
    for name, (runtime, path) in networks.items():
        if path.is_file():
            peak = measure([PYTHON, "-c", ALONE, runtime, str(path)]).rss_mb
            alone[name] = {"rss_mb": peak, "runtime_alone_mb": baselines[runtime]}
            rows.append([name, path.stat().st_size, baselines[runtime], peak, peak - baselines[runtime]])
    print()
    print("## the network alone, one window at a time (batch 1, 20 windows), fresh process")
    print(table(rows, ["network", "bytes", "runtime import MiB", "peak RSS MiB", "network MiB"]))

    clips = {"example (24 s)": ROOT / "examples" / "smoke_alarm.wav"}
    clips[f"{args.minutes:g} min"] = long_wav(args.minutes * 60, path=CACHE / f"edge-{args.minutes:g}min.wav")
    rows, events, results = [], {}, {}
    for name, (folder, runtime) in runtimes.items():
        row = [name]
        for clip_name, clip in clips.items():
            done = measure([*SOUNDNET, "detect", str(clip), "--model", str(folder), "--runtime", runtime, "--format", "tsv"])
            row += [done.rss_mb, done.wall]
            results[f"{name} / {clip_name}"] = {"rss_mb": done.rss_mb, "wall_s": done.wall}
            if clip_name.startswith("example"):
                events[name] = done.stdout
        rows.append(row)
    headers = ["runtime"]
    for clip_name in clips:
        headers += [f"peak RSS MiB, {clip_name}", f"wall s, {clip_name}"]
    print()
    print("## soundnet detect, fresh process")
    print(table(rows, headers))
    print()
    print("## events on the example clip (onset offset)")
    for name, text in events.items():
        spans = [" ".join(line.split("\t")[1:3]) for line in text.splitlines()[1:] if line.strip()]
        same = "same as keras" if text == events["keras"] else "DIFFERS from keras"
        print(f"{name}: {len(spans)} event(s) {'; '.join(spans)} ({same})")
    dump_json(
        args.json, {"header": machine_header(), "model": str(source), "exports": reports, "detect": results, "events": events}
    )


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


if __name__ == "__main__":
    main()
