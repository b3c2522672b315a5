"""A lighter runtime for detection: the trained network converted to LiteRT (TFLite).

``soundnet detect`` runs ``model.tflite`` with ``ai-edge-litert`` when the run has one:
importing it takes a fraction of a second where TensorFlow takes several, and it runs
the network several times faster on a CPU. The converted network computes the same
function as the Keras model (a test holds the probabilities equal); the Keras model
stays the reference and the fallback.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from soundnet.inputs import input_name, input_shapes, split_inputs
from soundnet.parallel import usable_cores
from soundnet.run import TFLITE_FILE
from soundnet.storage import atomic_path

__all__ = ["TFLITE_FILE", "LiteRTPredictor", "available", "export_tflite"]


def export_tflite(model, path: Path, *, n_mfcc: int) -> Path:
    """Convert a trained Keras model to a LiteRT flatbuffer at ``path`` (needs TensorFlow).

    Keras 3's LSTM does not convert as a loop ("TensorListReserve requires
    element_shape to be static"), so a twin with the LSTM unrolled over the window and
    the same weights is converted instead.
    """
    import tensorflow as tf

    from soundnet.config import ModelConfig, from_dict
    from soundnet.model import build_model

    config = from_dict(ModelConfig, _model_config(model))
    twin = build_model(config, n_mfcc=n_mfcc, unroll=True)
    twin.set_weights(model.get_weights())
    folder = Path(tempfile.mkdtemp(prefix="soundnet-export-"))
    try:
        twin.export(str(folder / "saved"), format="tf_saved_model", verbose=False)
        data = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved")).convert()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _model_config(model) -> dict:
    """The ModelConfig values a built soundnet model was made with, read off its layers."""
    conv = model.get_layer("frame_conv")
    bn = model.get_layer("conv_bn")
    return {
        "window": int(model.inputs[0].shape[1]),
        "filters": int(conv.filters),
        "taps": int(conv.kernel_size[-1]),
        "lstm_units": int(model.get_layer("lstm").units),
        "aux_units": int(model.get_layer("aux_dense").units),
        "dropout": float(model.get_layer("dropout").rate),
        "bn_momentum": float(bn.momentum),
        "bn_epsilon": float(bn.epsilon),
    }


def available() -> bool:
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


class LiteRTPredictor:
    """Windows ``(b, window, 2*n_mfcc+1)`` -> probabilities ``(b, window)`` with LiteRT.

    ``threads`` defaults to the cores this process may use (:func:`usable_cores`).
    """

    def __init__(self, path: Path, *, n_mfcc: int, window: int, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        from soundnet.backend import stderr_silenced

        self.n_mfcc = n_mfcc
        with stderr_silenced():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
            self.interpreter = Interpreter(model_path=str(path), num_threads=usable_cores() if threads is None else threads)
        details = self.interpreter.get_input_details()
        self.inputs = {input_name(d["name"]): d["index"] for d in details}
        expected = input_shapes(n_mfcc, window)
        found = {input_name(d["name"]): tuple(int(x) for x in d["shape"][1:]) for d in details}
        if found != expected:
            raise ValueError(f"the network takes inputs {found}, the card's feature config gives {expected}")
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = None

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        parts = split_inputs(windows, n_mfcc=self.n_mfcc)
        if self.batch != len(windows):
            from soundnet.backend import stderr_silenced

            for name, index in self.inputs.items():
                self.interpreter.resize_tensor_input(index, parts[name].shape)
            with stderr_silenced():  # the XNNPACK delegate announces itself here
                self.interpreter.allocate_tensors()
            self.batch = len(windows)
        for name, index in self.inputs.items():
            self.interpreter.set_tensor(index, np.ascontiguousarray(parts[name], np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)[..., 0].copy()
