"""The DCASE 2017 task 2 baseline, as published, for the real-audio quality benchmark.

Reference: A. Mesaros, T. Heittola, A. Diment, B. Elizalde, A. Shah, E. Vincent, B. Raj,
T. Virtanen, "DCASE 2017 challenge setup: tasks, datasets and baseline system", Proc.
DCASE 2017 Workshop; the system's parameters are those of the TUT-ARG
DCASE2017-baseline-system, ``applications/parameters/task2.defaults.yaml`` (set
``dcase2017``). One binary detector per target sound:

- features: log mel-band energies, 40 bands, from the *magnitude* spectrum (Hamming
  window of 40 ms, hop 20 ms, fmin 0, fmax Nyquist, Slaney mel, natural log), globally
  standardised with training statistics; the published rate was 44.1 kHz with a 2048
  FFT, here the mixtures are 16 kHz and the FFT 1024 (>= the 640-sample window);
- input: 5 frames (0.1 s) stacked around each frame, 200 values;
- network: Dense(50, relu) - Dropout(0.2) - Dense(50, relu) - Dropout(0.2) -
  Dense(1, sigmoid), uniform initialisation (Keras 1's ``uniform``: U(-0.05, 0.05));
- training: Adam (Keras defaults), binary cross-entropy, batch 256, shuffled, up to 200
  epochs, early stopping on the validation binary accuracy (min_delta 0.001, patience
  10, the weights of the last epoch kept, as Keras 1 did); validation: 10 % of the
  training files, balanced between files with and without the event;
- detection: frame decisions p > 0.5, a median filter of 0.54 s (27 frames,
  ``scipy.signal.medfilt`` as the published recognizer) on the decisions, events = runs
  of active frames. No other post-processing (``event_post_processing`` is off).

``python bench/dcase2017_baseline.py TRAIN_DIR TRAIN_TABLE --target T --out DIR
--detect DIR [--detect DIR ...] [--seed N]`` trains, then writes for each detect folder
``DIR/<folder name>.tsv``, a DCASE event table (filename onset offset event_label) with
every file listed. It imports nothing of soundnet.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np

SR = 16000
WIN = 640  # 40 ms
HOP = 320  # 20 ms
N_FFT = 1024
N_MELS = 40
CONTEXT = 5  # frames stacked: 0.1 s
MEDIAN_SECONDS = 0.54
THRESHOLD = 0.5
VALIDATION_FRACTION = 0.10
EPOCHS = 200
BATCH = 256
PATIENCE = 10
MIN_DELTA = 0.001
AUDIO = {".wav", ".flac", ".ogg"}


def log_mel(path: Path) -> np.ndarray:
    """Log mel-band energies [shape=(frames, 40)] of a file (mono, resampled to 16 kHz)."""
    import librosa
    import soundfile as sf

    y, rate = sf.read(str(path), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if rate != SR:
        y = librosa.resample(y, orig_sr=rate, target_sr=SR)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=SR,
        n_fft=N_FFT,
        hop_length=HOP,
        win_length=WIN,
        window="hamming",
        center=True,
        power=1.0,
        n_mels=N_MELS,
        fmin=0.0,
        fmax=SR / 2,
        htk=False,
    )
    return np.log(mel.T + np.finfo(np.float32).eps).astype(np.float32)


def stack(features: np.ndarray) -> np.ndarray:
    """Each frame with its 2 neighbours either side (edges repeated) [shape=(frames, 200)]."""
    half = CONTEXT // 2
    padded = np.pad(features, ((half, half), (0, 0)), mode="edge")
    return np.concatenate([padded[i : i + len(features)] for i in range(CONTEXT)], axis=1)


def frame_labels(n: int, events: list[tuple[float, float]]) -> np.ndarray:
    """1 where a frame's centre (t * 20 ms) lies inside an event."""
    t = np.arange(n) * HOP / SR
    y = np.zeros(n, np.float32)
    for onset, offset in events:
        y[(t >= onset) & (t < offset)] = 1.0
    return y


def read_table(path: Path, target: str) -> dict[str, list[tuple[float, float]]]:
    """filename -> target events; a header row is skipped, rows of other labels ignored."""
    out: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.reader(f, delimiter="\t"):
            if not row or row[0] == "filename":
                continue
            events = out.setdefault(row[0], [])
            if len(row) >= 4 and row[3] == target and row[1] and row[2]:
                events.append((float(row[1]), float(row[2])))
    return out


def build_model(seed: int):
    import keras

    init = keras.initializers.RandomUniform(-0.05, 0.05, seed=seed)
    inputs = keras.Input((CONTEXT * N_MELS,), name="stacked_log_mel")
    x = keras.layers.Dense(50, activation="relu", kernel_initializer=init, name="dense_1")(inputs)
    x = keras.layers.Dropout(0.2, name="dropout_1")(x)
    x = keras.layers.Dense(50, activation="relu", kernel_initializer=init, name="dense_2")(x)
    x = keras.layers.Dropout(0.2, name="dropout_2")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=init, name="event")(x)
    return keras.Model(inputs, outputs, name="dcase2017_task2_baseline")


def split_validation(table: dict[str, list], rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """10 % of files held out, as many with the event as without (balanced)."""
    with_event = sorted(n for n, e in table.items() if e)
    without = sorted(n for n, e in table.items() if not e)
    held = []
    for names in (with_event, without):
        k = max(1, round(VALIDATION_FRACTION * len(names))) if names else 0
        held += list(rng.choice(names, size=k, replace=False)) if k else []
    held_set = set(held)
    return [n for n in sorted(table) if n not in held_set], sorted(held_set)


def median_filter(decisions: np.ndarray, frames: int) -> np.ndarray:
    """The published activity processing: ``scipy.signal.medfilt`` (zero-padded edges)."""
    from scipy.signal import medfilt

    return medfilt(decisions.astype(np.float64), kernel_size=frames)


def events_of(active: np.ndarray) -> list[tuple[float, float]]:
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(s * HOP / SR, e * HOP / SR) for s, e in zip(starts, ends, strict=True)]


def detect(model, mean, std, path: Path) -> list[tuple[float, float]]:
    x = (stack(log_mel(path)) - mean) / std
    p = model.predict_on_batch(x.astype(np.float32))[:, 0]
    frames = int(MEDIAN_SECONDS / (HOP / SR))  # as published: int(0.54 / 0.02) = 27 frames
    return events_of(median_filter(p > THRESHOLD, frames) > 0.5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="DCASE 2017 task 2 baseline: train, then detect.")
    parser.add_argument("train_dir", type=Path)
    parser.add_argument("train_table", type=Path)
    parser.add_argument("--target", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--detect", type=Path, action="append", default=[])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    table = read_table(args.train_table, args.target)
    train_names, val_names = split_validation(table, rng)

    def data(names):
        xs, ys = [], []
        for n in names:
            f = log_mel(args.train_dir / n)
            xs.append(stack(f))
            ys.append(frame_labels(len(f), table[n]))
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = data(train_names)
    x_val, y_val = data(val_names)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    features_seconds = time.perf_counter() - start

    model = build_model(args.seed)
    model.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy", metrics=["binary_accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_binary_accuracy", min_delta=MIN_DELTA, patience=PATIENCE, mode="auto")
    history = model.fit(
        x_train,
        y_train,
        batch_size=BATCH,
        epochs=EPOCHS,
        shuffle=True,
        validation_data=(x_val, y_val),
        callbacks=[stop],
        verbose=0,
    )
    train_seconds = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    for folder in args.detect:
        rows = ["filename\tonset\toffset\tevent_label"]
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO):
            events = detect(model, mean, std, path)
            rows += [f"{path.name}\t{on:.3f}\t{off:.3f}\t{args.target}" for on, off in events] or [path.name]
        (args.out / f"{folder.name}.tsv").write_text("\n".join(rows) + "\n")
    info = {
        "epochs_run": len(history.history["loss"]),
        "val_binary_accuracy": [round(v, 5) for v in history.history["val_binary_accuracy"]],
        "train_files": len(train_names),
        "validation_files": len(val_names),
        "train_frames": int(len(y_train)),
        "positive_fraction": float(y_train.mean()),
        "features_seconds": round(features_seconds, 2),
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(time.perf_counter() - start, 2),
    }
    (args.out / "baseline.json").write_text(json.dumps(info, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
