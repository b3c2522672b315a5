"""The seed's CNN-LSTM-Dense network, made to work.

:func:`build_model` is the network soundnet trains and ships. Its per-frame
Conv1D over each frame's MFCC is written as a ``Conv2D`` with a ``(1, taps)``
kernel and the per-frame max-pool as a ``MaxPooling2D((1, positions))``: the same
function, with the same weights reshaped, as the seed's
``TimeDistributed(Conv1D)`` / ``TimeDistributed(MaxPooling1D)`` (kept in
:func:`build_literal_model` for tests and benchmarks), several times faster to train.

What the seed got wrong and is fixed here: each frame's MFCC vector is reshaped into a
1-channel signal before the convolution (the seed's ``IndexError``); the pooled
``(frames, 1, filters)`` output is flattened to ``(frames, filters)`` before the LSTM;
the output layer has a sigmoid; there is one loss for the one output.
"""

from __future__ import annotations

from collections.abc import Iterable

import keras
import numpy as np
from keras import layers

from soundnet.config import ModelConfig

INPUTS = ("mfcc", "delta", "zcr")


def _inputs(config: ModelConfig, n_mfcc: int) -> tuple[keras.KerasTensor, keras.KerasTensor, keras.KerasTensor]:
    window = config.window
    return (
        keras.Input((window, n_mfcc), name="mfcc"),
        keras.Input((window, n_mfcc), name="delta"),
        keras.Input((window, 1), name="zcr"),
    )


def _check(config: ModelConfig, n_mfcc: int) -> int:
    positions = n_mfcc - config.taps + 1
    if positions < 1:
        raise ValueError(f"taps must be <= n_mfcc. Received: taps={config.taps}, n_mfcc={n_mfcc}")
    return positions


def _head(config: ModelConfig, pooled: keras.KerasTensor, delta: keras.KerasTensor, zcr: keras.KerasTensor) -> keras.KerasTensor:
    """Everything after the per-frame CNN: dropout, LSTM, the delta/ZCR branch, the output."""
    x = layers.Dropout(config.dropout, name="dropout")(pooled)
    x = layers.LSTM(config.lstm_units, return_sequences=True, name="lstm")(x)
    aux = layers.Concatenate(name="aux_concat")([delta, zcr])
    aux = layers.Dense(config.aux_units, name="aux_dense")(aux)
    merged = layers.Concatenate(name="merge")([x, aux])
    return layers.Dense(1, activation="sigmoid", name="output")(merged)


def build_model(config: ModelConfig | None = None, *, n_mfcc: int = 64) -> keras.Model:
    """The network soundnet trains (uncompiled).

    Parameters
    ----------
    config : ModelConfig or None
        Sizes; the defaults give the seed's network (38,788 parameters).
    n_mfcc : int > 0
        MFCC (and delta) per frame.

    Returns
    -------
    model : keras.Model
        Inputs ``mfcc`` (window, n_mfcc), ``delta`` (window, n_mfcc), ``zcr`` (window, 1);
        output (window, 1), the per-frame probability of the target sound.
    """
    config = config or ModelConfig()
    positions = _check(config, n_mfcc)
    mfcc, delta, zcr = _inputs(config, n_mfcc)
    x = layers.Reshape((config.window, n_mfcc, 1), name="frame_signal")(mfcc)
    x = layers.Conv2D(config.filters, (1, config.taps), activation="relu", name="frame_conv")(x)
    x = layers.BatchNormalization(momentum=config.bn_momentum, epsilon=config.bn_epsilon, name="conv_bn")(x)
    x = layers.MaxPooling2D((1, positions), name="frame_pool")(x)
    x = layers.Reshape((config.window, config.filters), name="pool_flatten")(x)
    return keras.Model([mfcc, delta, zcr], _head(config, x, delta, zcr), name="soundnet")


def build_literal_model(config: ModelConfig | None = None, *, n_mfcc: int = 64) -> keras.Model:
    """The seed's network written as in the question, with its defects fixed.

    Same layer names and the same function as :func:`build_model`; weights move
    between the two with :func:`copy_weights`.
    """
    config = config or ModelConfig()
    positions = _check(config, n_mfcc)
    mfcc, delta, zcr = _inputs(config, n_mfcc)
    x = layers.Reshape((config.window, n_mfcc, 1), name="frame_signal")(mfcc)
    x = layers.TimeDistributed(layers.Conv1D(config.filters, config.taps, activation="relu"), name="frame_conv")(x)
    x = layers.BatchNormalization(axis=-1, momentum=config.bn_momentum, epsilon=config.bn_epsilon, name="conv_bn")(x)
    x = layers.TimeDistributed(layers.MaxPooling1D(pool_size=positions), name="frame_pool")(x)
    x = layers.Reshape((config.window, config.filters), name="pool_flatten")(x)
    return keras.Model([mfcc, delta, zcr], _head(config, x, delta, zcr), name="soundnet_literal")


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy weights layer by layer (matched by name), reshaping the conv kernel as needed."""
    for layer in target.layers:
        weights = source.get_layer(layer.name).get_weights()
        layer.set_weights([np.reshape(w, t.shape) for w, t in zip(weights, layer.get_weights(), strict=True)])


def as_inputs(windows: np.ndarray, *, n_mfcc: int) -> dict[str, np.ndarray]:
    """Split feature windows ``(batch, window, 2*n_mfcc+1)`` into the model's three inputs."""
    return {
        "mfcc": windows[..., :n_mfcc],
        "delta": windows[..., n_mfcc : 2 * n_mfcc],
        "zcr": windows[..., 2 * n_mfcc :],
    }


def recalibrate_batchnorm(model: keras.Model, batches: Iterable[dict[str, np.ndarray]]) -> int:
    """Set the conv BatchNorm's moving mean and variance to the statistics of ``batches``.

    With momentum 0.99 and a few hundred steps, the moving variance still carries its
    initial 1.0 (the seed's hazard: inference outputs collapse to 0). Re-estimating the
    statistics over the training windows makes inference match training.

    Returns the number of windows used.
    """
    conv = keras.Model(model.inputs, model.get_layer("frame_conv").output)
    total = total_sq = None
    count = windows = 0
    for batch in batches:
        out = np.asarray(conv(batch, training=False), np.float64)
        out = out.reshape(-1, out.shape[-1])
        total = out.sum(0) if total is None else total + out.sum(0)
        total_sq = (out**2).sum(0) if total_sq is None else total_sq + (out**2).sum(0)
        count += len(out)
        windows += len(batch["mfcc"])
    if count == 0:
        return 0
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    bn = model.get_layer("conv_bn")
    gamma, beta, _, _ = bn.get_weights()
    bn.set_weights([gamma, beta, mean.astype(np.float32), var.astype(np.float32)])
    return windows


def predict_fn(model: keras.Model, *, n_mfcc: int):
    """Windows ``(b, window, 2*n_mfcc+1)`` -> probabilities ``(b, window)`` in inference mode."""

    def predict(windows: np.ndarray) -> np.ndarray:
        return np.asarray(model(as_inputs(windows, n_mfcc=n_mfcc), training=False))[..., 0]

    return predict
