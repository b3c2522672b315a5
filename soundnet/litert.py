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
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from soundnet.inputs import input_name, input_shapes, split_inputs
from soundnet.parallel import usable_cores
from soundnet.run import TFLITE_FILE
from soundnet.storage import atomic_path

__all__ = ["TFLITE_FILE", "LiteRTPredictor", "available", "export_tflite"]


def export_tflite(
    model,
    path: Path,
    *,
    n_mfcc: int,
    representative: Callable[[], Iterator[dict]] | None = None,
    activations: str = "int8",
    strip: bool = False,
) -> Path:
    """Convert a trained Keras model to a LiteRT flatbuffer at ``path`` (needs TensorFlow).

    Keras 3's LSTM does not convert as a loop ("TensorListReserve requires
    element_shape to be static"), so a twin with the LSTM unrolled over the window and
    the same weights is converted instead.

    With ``representative`` (a function returning an iterator of input dicts, ``{"mfcc":
    (1, window, n_mfcc), "delta": ..., "zcr": ...}`` of normalised features), the model is
    quantised after training to full integer: int8 weights, ``activations`` ("int8", or
    "int16": TFLite's 16x8 mode) for activations, inputs and output, int32 (int64 for
    16x8) biases, only builtin integer kernels (no float fallback, no TensorFlow ops).
    The unrolled LSTM is what quantises: the loop form does not convert (above), and
    with a fixed batch it becomes a WHILE op whose calibration crashes the converter
    (TF 2.21).

    ``strip`` drops what inference never reads: the names of inner tensors (the
    unrolled LSTM has some 1,800, named after the Keras layers, over half of an int8
    file) and the calibration ranges; the inputs and output keep their names.
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
        converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved"))
        if representative is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            if activations == "int8":
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            elif activations == "int16":
                converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            else:
                raise ValueError(f"activations must be int8 or int16. Received: activations={activations!r}")
            converter.inference_input_type = converter.inference_output_type = getattr(tf, activations)
        from soundnet.backend import stderr_silenced

        with stderr_silenced():  # the converter's MLIR passes and the calibrator print to fd 2
            data = converter.convert()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if strip:
        data = _stripped(data)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _stripped(data: bytes) -> bytes:
    """A LiteRT flatbuffer without inner tensor names and calibration ranges (TF's flatbuffer_utils)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    for graph in model.subgraphs:
        kept = set(graph.inputs) | set(graph.outputs)
        for index, tensor in enumerate(graph.tensors):
            if index not in kept:
                tensor.name = None
            if tensor.quantization is not None:
                tensor.quantization.min = tensor.quantization.max = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


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

    A float model, or a full-integer one (int8 or int16 inputs and output: the features
    are quantised with each input's scale and zero point, the output dequantised).
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
        self.quantisation = {input_name(d["name"]): _affine(d) for d in details}
        output = self.interpreter.get_output_details()[0]
        self.output, self.output_quantisation = output["index"], _affine(output)
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
            self.interpreter.set_tensor(index, _quantised(parts[name], self.quantisation[name]))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output)[..., 0]
        if self.output_quantisation is None:
            return out.copy()
        scale, zero_point, _ = self.output_quantisation
        return ((out.astype(np.float32) - zero_point) * scale).astype(np.float32)


def _affine(details: dict) -> tuple[float, int, np.dtype] | None:
    """``(scale, zero_point, dtype)`` of an integer tensor (real = scale * (q - zero_point)); None for float."""
    dtype = np.dtype(details["dtype"])
    if dtype.kind != "i":
        return None
    scale, zero_point = details["quantization"]
    return float(scale), int(zero_point), dtype


def _quantised(values: np.ndarray, affine: tuple[float, int, np.dtype] | None) -> np.ndarray:
    """Float features as the tensor takes them: float32, or integers by its scale and zero point."""
    if affine is None:
        return np.ascontiguousarray(values, np.float32)
    scale, zero_point, dtype = affine
    limits = np.iinfo(dtype)
    return np.clip(np.round(values / scale) + zero_point, limits.min, limits.max).astype(dtype)
