"""Training and inference throughput: soundnet's network vs the seed's literal form.

    /work/venv/bin/python bench/train_throughput.py            # ~2-3 minutes
    /work/venv/bin/python bench/train_throughput.py --windows 1280 --repeats 5
    /work/venv/bin/python bench/train_throughput.py --malloc-tuned   # glibc mmap threshold raised

Training: windows/s of ``build_model`` (Conv2D + PooledBatchNorm) and
``build_literal_model`` (TimeDistributed Conv1D + BatchNormalization +
TimeDistributed MaxPooling1D) on the same random windows (with per-frame sample
weights, as ``soundnet train`` fits), same batch size, same optimizer and loss as
soundnet/train.py, in this one process, after a warm-up epoch. Timed epochs alternate
between the two forms; the best epoch of each is kept (the machine is shared).

The first lines name the device TensorFlow computes on (a GPU when it sees one).

Inference: windows/s of the Keras model (``model(x, training=False)`` in batches of
256, as detect's Keras runtime runs it) and of the LiteRT conversion
(``export_tflite`` + ``LiteRTPredictor``), and the largest |difference| of their
probabilities.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import dump_json, machine_header, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=160, help="training windows per epoch (default 160)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs of each form (best kept)")
    parser.add_argument("--infer-windows", type=int, default=1024, help="windows for the inference comparison")
    parser.add_argument("--infer-repeats", type=int, default=2)
    parser.add_argument("--skip-literal", action="store_true", help="train only build_model")
    parser.add_argument(
        "--malloc-tuned",
        action="store_true",
        help="raise glibc's mmap and trim thresholds (mallopt) before TensorFlow loads: big step buffers are then "
        "reused instead of mmap'ed, zero-filled and unmapped on every step",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.malloc_tuned:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)

    from soundnet.backend import compute_devices, quiet_import_keras

    quiet_import_keras()
    import keras

    from soundnet.config import ModelConfig
    from soundnet.model import as_inputs, build_literal_model, build_model, copy_weights, predict_fn

    print(machine_header())
    devices = compute_devices()
    print(f"# TensorFlow computes on: {', '.join(devices)} (training and the Keras runtime; LiteRT runs on the CPU)")
    config, n_mfcc = ModelConfig(), 64
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.windows, config.window, 2 * n_mfcc + 1)).astype(np.float32)
    y = (rng.random((args.windows, config.window, 1)) < 0.1).astype(np.float32)
    w = np.where(y[..., 0] > 0, 5.0, 1.0).astype(np.float32)
    inputs = as_inputs(x, n_mfcc=n_mfcc)

    keras.utils.set_random_seed(0)
    forms = {"build_model": build_model(config, n_mfcc=n_mfcc)}
    if not args.skip_literal:
        forms["build_literal_model"] = build_literal_model(config, n_mfcc=n_mfcc)
        copy_weights(forms["build_model"], forms["build_literal_model"])
    for model in forms.values():  # as soundnet/train.py compiles it
        model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="binary_crossentropy")

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    cpu_times: dict[str, list[float]] = {name: [] for name in forms}

    def epoch(model, name: str | None = None) -> float:
        start, start_cpu = time.perf_counter(), cpu()
        model.fit(inputs, y, sample_weight=w, batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0)
        if name is not None:
            cpu_times[name].append(cpu() - start_cpu)
        return time.perf_counter() - start

    warm = {name: epoch(model) for name, model in forms.items()}  # tracing / graph building
    times: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(args.repeats):
        for name, model in forms.items():
            times[name].append(epoch(model, name))
    rows, result = [], {"windows": args.windows, "batch_size": args.batch_size, "devices": devices, "train": {}}
    for name, ts in times.items():
        best = min(ts)
        rate = args.windows / best
        cpu_rate = args.windows / min(cpu_times[name])
        result["train"][name] = {
            "warmup_s": warm[name],
            "epochs_s": ts,
            "windows_per_s": rate,
            "epochs_cpu_s": cpu_times[name],
            "windows_per_cpu_s": cpu_rate,
        }
        rows.append(
            [
                name,
                f"{warm[name]:.1f}",
                " ".join(f"{t:.2f}" for t in ts),
                rate,
                " ".join(f"{t:.2f}" for t in cpu_times[name]),
                cpu_rate,
            ]
        )
    print(
        f"\nTraining: {args.windows} windows of ({config.window}, {2 * n_mfcc + 1}), batch {args.batch_size}, "
        f"RMSprop + binary cross-entropy with sample weights; jit_compile={forms['build_model'].jit_compile}; "
        f"malloc tuned: {args.malloc_tuned}"
    )
    print(
        table(
            rows, ["model", "warm-up s", "timed epochs s", "windows/s (best)", "epoch CPU s (user+sys)", "windows/CPU-s (best)"]
        )
    )
    if "build_literal_model" in times:
        ratio = result["train"]["build_model"]["windows_per_s"] / result["train"]["build_literal_model"]["windows_per_s"]
        result["train"]["ratio"] = ratio
        med = np.median(times["build_literal_model"]) / np.median(times["build_model"])
        cpu_ratio = (
            result["train"]["build_model"]["windows_per_cpu_s"] / result["train"]["build_literal_model"]["windows_per_cpu_s"]
        )
        result["train"]["cpu_ratio"] = cpu_ratio
        print(
            f"ratio build_model / build_literal_model: {ratio:.2f}x (best wall epochs), {med:.2f}x (median wall epochs), "
            f"{cpu_ratio:.2f}x (CPU time: less sensitive to other processes on a shared machine)"
        )

    # ------------------------------------------------------------ inference
    from soundnet.litert import LiteRTPredictor, export_tflite

    model = forms["build_model"]
    xi = rng.standard_normal((args.infer_windows, config.window, 2 * n_mfcc + 1)).astype(np.float32)
    keras_predict = predict_fn(model, n_mfcc=n_mfcc)
    with tempfile.TemporaryDirectory(prefix="soundnet-bench-") as tmp:
        start = time.perf_counter()
        path = export_tflite(model, Path(tmp) / "model.tflite", n_mfcc=n_mfcc)
        export_s = time.perf_counter() - start
        lite = LiteRTPredictor(path, n_mfcc=n_mfcc, window=config.window)

        def run(predict) -> tuple[float, np.ndarray]:
            start = time.perf_counter()
            out = np.concatenate([predict(xi[i : i + 256]) for i in range(0, len(xi), 256)])
            return time.perf_counter() - start, out

        run(keras_predict), run(lite)  # warm-up
        kt, lt = [], []
        for _ in range(args.infer_repeats):
            t, pk = run(keras_predict)
            kt.append(t)
            t, pl = run(lite)
            lt.append(t)
    diff = float(np.max(np.abs(pk - pl)))
    k_rate, l_rate = args.infer_windows / min(kt), args.infer_windows / min(lt)
    print(f"\nInference: {args.infer_windows} windows in batches of 256 (export_tflite took {export_s:.1f} s)")
    print(
        table(
            [["keras predict_on_batch (predict_fn)", k_rate, 1.0], ["LiteRT (2 threads)", l_rate, l_rate / k_rate]],
            ["runtime", "windows/s (best)", "x keras"],
        )
    )
    print(f"max |keras - litert| = {diff:.2e}")
    result["inference"] = {
        "keras_windows_per_s": k_rate,
        "litert_windows_per_s": l_rate,
        "ratio": l_rate / k_rate,
        "max_abs_diff": diff,
        "export_s": export_s,
    }
    dump_json(args.json, result)


if __name__ == "__main__":
    main()
