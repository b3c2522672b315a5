"""A trial, not shipped: int8 of the network rearranged so that its tensors suit one scale each.

Usage::

    PYTHONPATH=. python bench/int8_layouts.py --run RUN [--dataset DATA] [--calibration-windows 500]

RUN needs its dataset (the card's, or ``--dataset``). Compared against the Keras model on
the run's validation files, as ``soundnet export`` measures them: the shipped int8 file
(the LSTM unrolled, TFLite's defaults) and these layouts, each with its file size, time
per window at batch 1 (one thread, side by side in one process), event F1 with the
card's post-processing, frame AP, and how far the frame probabilities are from Keras'
(RMSE, 99th percentile, decisions that flip at the card's threshold).

Post-training int8 quantisation gives every activation tensor *one* scale, from the
smallest and largest value calibration saw in it. Two places of a trained network fit
that badly (TFLite's per-tensor error, bundled detector):

- **The BatchNorm after the per-frame convolution** is an element-wise multiply by a
  per-channel constant (``gamma / sqrt(var + eps)``, 2.2 to 26.9 in the bundled
  detector) quantised with one scale: a gain error of up to 5 % per channel at the
  LSTM's input. ``folded`` puts the scale into the convolution's kernel and bias
  (per-channel int8 weights hold it exactly) and the shift into the LSTM's bias:
  ``max(relu(a)) * s = relu(max(a * s))`` for ``s >= 0`` (``min(0, max(a * s))`` for
  ``s < 0``, :class:`SignedPool`), and ``(p + c) @ W = p @ W + c @ W``.
- **The LSTM's cell state** is far from uniform across units: some count frames (their
  cell state runs up to about +-100, the window length), a third stay within +-4. One
  scale for all is a step of about 0.8, coarse on the steep part of ``tanh(c)``.
  :func:`cell_ranges` measures each unit's largest ``|c|`` on the calibration windows,
  :func:`unit_groups` groups units of similar range, and :class:`GroupedUnrolledLSTM`
  computes the LSTM unrolled with each group's gates, cell state and output as tensors
  of their own.

In float every layout matches Keras to rounding (checked here). Figures and the verdict:
docs/edge.md, "Tried: int8 layouts".
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from soundnet.config import ModelConfig
from soundnet.inputs import split_inputs
from soundnet.model import _head, _inputs

# a group holds units whose largest |c| lies within a factor GROUP_RATIO of each other
GROUP_RATIO = 4.0
MAX_GROUPS = 4


def cell_ranges(sequences: np.ndarray, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Largest ``|c|`` of each LSTM unit over ``sequences`` ``(n, steps, features)``.

    Keras' LSTM (gates i, f, c, o; sigmoid and tanh), run forward from a zero state."""
    units = recurrent_kernel.shape[0]
    h = np.zeros((len(sequences), units))
    c = np.zeros((len(sequences), units))
    largest = np.zeros(units)
    for step in range(sequences.shape[1]):
        z = sequences[:, step] @ kernel + h @ recurrent_kernel + bias
        i, f, g, o = np.split(z, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        largest = np.maximum(largest, np.abs(c).max(axis=0))
    return largest


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def unit_groups(ranges: np.ndarray, *, ratio: float = GROUP_RATIO, max_groups: int = MAX_GROUPS) -> list[list[int]]:
    """Units (indices) in groups of similar range, smallest ranges first.

    Sorted by range, a new group starts where a unit's range exceeds ``ratio`` times the
    smallest of the current group; the last of ``max_groups`` groups takes the rest."""
    groups: list[list[int]] = []
    for unit in (int(u) for u in np.argsort(ranges, kind="stable")):
        if not groups or (len(groups) < max_groups and ranges[unit] > ratio * max(float(ranges[groups[-1][0]]), 1e-6)):
            groups.append([unit])
        else:
            groups[-1].append(unit)
    return groups


class SignedPool(layers.Layer):
    """The max over positions of a BatchNorm-scaled ReLU, from the scaled pre-activation.

    With ``z = a * s`` per channel: ``max(relu(a)) * s`` is ``relu(max z)`` where
    ``s >= 0`` and ``min(0, max z)`` where ``s < 0``. Input ``(batch, frames, positions,
    channels)``, output ``(batch, frames, channels)``."""

    def __init__(self, signs: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.signs = np.where(np.asarray(signs) < 0, -1.0, 1.0).astype(np.float32)

    def call(self, z):
        pooled = ops.max(z, axis=2)
        if np.all(self.signs > 0):
            return ops.relu(pooled)
        return self.signs * ops.relu(self.signs * pooled)  # min(0, m) = -relu(-m) where s < 0

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], input_shape[3])


class GroupedUnrolledLSTM(layers.Layer):
    """``LSTM(units, return_sequences=True)`` unrolled, its units computed in groups.

    Holds the LSTM's weights as constants. ``groups`` partitions ``range(units)``; the
    output has the units in their original order."""

    def __init__(self, kernel, recurrent_kernel, bias, groups: list[list[int]], **kwargs):
        super().__init__(**kwargs)
        kernel, recurrent_kernel, bias = (np.asarray(w, np.float32) for w in (kernel, recurrent_kernel, bias))
        units = recurrent_kernel.shape[0]
        if sorted(u for g in groups for u in g) != list(range(units)):
            raise ValueError(f"groups must partition the {units} units. Received: groups={groups}")
        self.units, self.groups = units, [[int(u) for u in g] for g in groups]
        order = [u for g in self.groups for u in g]  # h is carried with its units in this order
        self._restore = np.argsort(order).astype(np.int32)
        self._by_group = []
        for g in self.groups:
            columns = [gate * units + u for gate in range(4) for u in g]  # gates i, f, c, o of the group's units
            self._by_group.append((kernel[:, columns], recurrent_kernel[order][:, columns], bias[columns]))

    def call(self, x):
        projected = [ops.matmul(x, w) + b for w, _, b in self._by_group]  # (batch, steps, 4 * group size)
        cells: list = [None] * len(self.groups)
        h, outputs = None, []
        for step in range(x.shape[1]):
            parts = []
            for k, (_, u, _) in enumerate(self._by_group):
                z = projected[k][:, step, :]
                if h is not None:  # the zero initial state contributes nothing
                    z = z + ops.matmul(h, u)
                i, f, g, o = ops.split(z, 4, axis=-1)
                c = ops.sigmoid(i) * ops.tanh(g)
                if cells[k] is not None:
                    c = ops.sigmoid(f) * cells[k] + c
                cells[k] = c
                parts.append(ops.sigmoid(o) * ops.tanh(c))
            h = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
            outputs.append(h)
        return ops.take(ops.stack(outputs, axis=1), self._restore, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], self.units)


def int8_twin(
    model: keras.Model,
    config: ModelConfig,
    *,
    n_mfcc: int,
    calibration: np.ndarray,
    max_groups: int = MAX_GROUPS,
    fold: bool = True,
) -> keras.Model:
    """``model`` (a trained :func:`soundnet.model.build_model` network) rearranged for int8.

    ``calibration``: normalised windows ``(n, window, 2*n_mfcc+1)``, the ones the
    quantisation is calibrated on; they decide the LSTM's unit groups (at most
    ``max_groups``). ``fold``: the BatchNorm goes into the convolution and the LSTM's bias."""
    conv, bn, lstm = model.get_layer("frame_conv"), model.get_layer("conv_bn"), model.get_layer("lstm")
    kernel, conv_bias = (np.asarray(w) for w in conv.get_weights())
    gamma, beta, mean, variance = (np.asarray(w) for w in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
    scale = gamma / np.sqrt(variance + bn.epsilon)
    shift = beta - mean * scale
    w, u, b = (np.asarray(v) for v in lstm.get_weights())
    sequences = keras.Model(model.inputs, lstm.input).predict(split_inputs(calibration, n_mfcc=n_mfcc), verbose=0)
    groups = unit_groups(cell_ranges(sequences, w, u, b), max_groups=max_groups)

    mfcc, delta, zcr = _inputs(config, n_mfcc)
    x = layers.Reshape((config.window, n_mfcc, 1), name="frame_signal")(mfcc)
    if fold:
        scaled = layers.Conv2D(config.filters, (1, config.taps), name="frame_conv_scaled")
        x = SignedPool(scale, name="conv_bn_pool")(scaled(x))
        b = b + shift @ w
    else:
        x = layers.Conv2D(config.filters, (1, config.taps), activation="relu", name="frame_conv")(x)
        x = type(bn)(momentum=bn.momentum, epsilon=bn.epsilon, name="conv_bn")(x)
    grouped = GroupedUnrolledLSTM(w, u, b, groups, name="lstm")
    twin = keras.Model([mfcc, delta, zcr], _head(config, x, delta, zcr, lstm=grouped), name="soundnet_int8_twin")
    for layer in twin.layers:
        if layer.name == "frame_conv_scaled":
            layer.set_weights([kernel * scale, conv_bias * scale])
        elif layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return twin


def quantised(twin: keras.Model, windows: np.ndarray, *, n_mfcc: int) -> bytes:
    import shutil
    import tempfile

    import tensorflow as tf

    from soundnet.backend import stderr_silenced
    from soundnet.export import _representative
    from soundnet.litert import _stripped

    folder = Path(tempfile.mkdtemp(prefix="int8-layouts-"))
    try:
        twin.export(str(folder / "saved"), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved"))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(windows, n_mfcc=n_mfcc)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
        with stderr_silenced():
            return _stripped(converter.convert())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def layouts(model: keras.Model, config: ModelConfig, *, n_mfcc: int, calibration: np.ndarray) -> dict[str, keras.Model]:
    """The rearranged twins by name: BatchNorm folded, with the LSTM in 1, 2 or 4 unit groups."""
    from soundnet.model import build_model

    twins = {}
    for name, groups in (("folded, LSTM unrolled", 0), ("folded, 2 unit groups", 2), ("folded, 4 unit groups", 4)):
        twins[name] = int8_twin(model, config, n_mfcc=n_mfcc, calibration=calibration, max_groups=max(groups, 1))
    twins["4 unit groups, BatchNorm as is"] = int8_twin(model, config, n_mfcc=n_mfcc, calibration=calibration, fold=False)
    unrolled = build_model(config, n_mfcc=n_mfcc, unroll=True)
    unrolled.set_weights(model.get_weights())
    return {"shipped (LSTM unrolled)": unrolled, **twins}


def main(argv=None) -> int:
    import argparse
    import json
    import time

    from soundnet.backend import quiet_import_keras

    quiet_import_keras()
    from soundnet import export as ex
    from soundnet.config import from_dict
    from soundnet.litert import LiteRTPredictor, _model_config
    from soundnet.model import predict_fn
    from soundnet.run import load_keras_model, read_card
    from soundnet.training import file_probabilities

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, default=None)
    parser.add_argument("--calibration-windows", type=int, default=ex.CALIBRATION_WINDOWS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/int8-layouts"))
    args = parser.parse_args(argv)
    card = read_card(args.run)
    data, missing = ex._dataset(args.run, card, args.dataset)
    if data is None:
        parser.error(f"{args.run}: {missing} (give --dataset)")
    model = load_keras_model(args.run, card)
    n_mfcc, window, threshold = card.features.n_mfcc, card.model.window, card.postprocessing.threshold
    config = from_dict(ModelConfig, _model_config(model))
    calibration = ex.calibration_set(data, card, count=args.calibration_windows, seed=0)
    entries = ex.validation_entries(data, card)
    reference = predict_fn(model, n_mfcc=n_mfcc)
    keras_p = np.concatenate([file_probabilities(data, e, card, reference) for e in entries])
    args.out.mkdir(parents=True, exist_ok=True)
    probe = split_inputs(calibration[:16], n_mfcc=n_mfcc)
    rows, predictors = [], {}
    for name, twin in layouts(model, config, n_mfcc=n_mfcc, calibration=calibration).items():
        drift = float(np.abs(twin.predict(probe, verbose=0) - model.predict(probe, verbose=0)).max())
        path = args.out / (name.split(",")[0].split(" ")[0] + f"-{len(rows)}.tflite")
        path.write_bytes(quantised(twin, calibration, n_mfcc=n_mfcc))
        predictor = LiteRTPredictor(path, n_mfcc=n_mfcc, window=window)
        accuracy = ex.compare(data, entries, card, reference, predictor)
        p = np.concatenate([file_probabilities(data, e, card, predictor) for e in entries])
        d = p - keras_p
        predictors[name] = LiteRTPredictor(path, n_mfcc=n_mfcc, window=window, threads=1)
        rows.append(
            {
                "layout": name,
                "float drift": drift,
                "bytes": path.stat().st_size,
                "event F1": accuracy.exported.event_f1,
                "Keras F1": accuracy.reference.event_f1,
                "frame AP": accuracy.exported.frame_ap,
                "Keras AP": accuracy.reference.frame_ap,
                "RMSE": float(np.sqrt(np.mean(d**2))),
                "p99 |d|": float(np.quantile(np.abs(d), 0.99)),
                "flips at threshold": int(((p >= threshold) != (keras_p >= threshold)).sum()),
                "frames": len(p),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    x = calibration[:1]
    best = dict.fromkeys(predictors, float("inf"))
    for _ in range(5):  # side by side, best of 5 rounds of 50 windows
        for name, predictor in predictors.items():
            start = time.perf_counter()
            for _ in range(50):
                predictor(x)
            best[name] = min(best[name], (time.perf_counter() - start) / 50)
    print(
        "| layout | bytes | ms/window (batch 1) | event F1 (Keras) | frame AP (Keras) | RMSE | p99 abs. diff. | flips at threshold |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['layout']} | {r['bytes']:,} | {best[r['layout']] * 1000:.2f} | {r['event F1']:.3f} ({r['Keras F1']:.3f}) "
            f"| {r['frame AP']:.4f} ({r['Keras AP']:.4f}) | {r['RMSE']:.4f} | {r['p99 |d|']:.3f} | {r['flips at threshold']:,} of {r['frames']:,} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
