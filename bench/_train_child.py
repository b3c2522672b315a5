"""Child process of bench/train_memory.py: ``soundnet train ARGS...`` with phase timers.

Runs the real command line (``soundnet.cli.main``) in this process, after wrapping a
few of soundnet.training's steps (by reference, nothing in soundnet changes) so the wall
time and the peak RSS so far (VmHWM) are known at the end of each phase. Writes them as
JSON to the path in the environment variable SOUNDNET_BENCH_PHASES.
"""

from __future__ import annotations

import json
import os
import sys
import time


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    phases: list[dict] = []
    t0 = time.perf_counter()

    def mark(name: str, seconds: float, **extra) -> None:
        phases.append({"phase": name, "seconds": seconds, "peak_rss_mb_so_far": vm_hwm_mb(), **extra})

    from soundnet.backend import quiet_import_keras

    quiet_import_keras()
    import keras

    import soundnet.training as train_module

    mark("imports", time.perf_counter() - t0)

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                mark(name, time.perf_counter() - start)

        return wrapper

    train_module.feature_statistics = timed(
        "feature statistics (one pass over the training features)", train_module.feature_statistics
    )
    train_module.tune = timed("tune post-processing", train_module.tune)
    train_module.export_tflite = timed("export_tflite", train_module.export_tflite)

    validation_time = [0.0]
    original_on_epoch_end = train_module.Validation.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        try:
            return original_on_epoch_end(self, epoch, logs)
        finally:
            validation_time[0] += time.perf_counter() - start

    train_module.Validation.on_epoch_end = on_epoch_end

    original_fit = keras.Model.fit

    def fit(self, x=None, *args, **kwargs):
        validation_time[0] = 0.0
        start = time.perf_counter()
        try:
            return original_fit(self, x, *args, **kwargs)
        finally:
            total = time.perf_counter() - start
            windows = len(getattr(x, "index", []))
            epochs = kwargs.get("epochs", 1) - kwargs.get("initial_epoch", 0)
            mark(
                "fit: training steps",
                total - validation_time[0],
                windows_per_epoch=windows,
                epochs=epochs,
                windows_per_s=windows * epochs / max(total - validation_time[0], 1e-9),
            )
            mark("fit: validation callback (recalibrate BN + predict validation files)", validation_time[0])

    keras.Model.fit = fit

    original_probabilities = train_module.Validation.probabilities

    def probabilities(self):
        if "fit: training steps" not in [p["phase"] for p in phases]:
            return original_probabilities(self)  # inside fit: counted in the validation callback
        start = time.perf_counter()
        try:
            return original_probabilities(self)
        finally:
            mark("predict validation files again (for tuning)", time.perf_counter() - start)

    train_module.Validation.probabilities = probabilities

    from soundnet.cli import main as cli_main

    start = time.perf_counter()
    try:
        cli_main(["-q", "train", *sys.argv[1:]], standalone_mode=False)
    finally:
        mark("TOTAL train command", time.perf_counter() - start)
        path = os.environ.get("SOUNDNET_BENCH_PHASES")
        if path:
            with open(path, "w") as f:
                json.dump(phases, f, indent=2)


if __name__ == "__main__":
    main()
