"""The trained network as ONNX, and detection with ONNX Runtime.

:func:`export_onnx` converts a run's Keras model with Keras' own exporter
(``model.export(format="onnx")``, which drives tf2onnx): the LSTM becomes one ONNX
``LSTM`` operator, the batch axis stays free. The file carries, in its metadata, the
SHA-256 of the ``model.keras`` it was made from, so that ``detect --runtime onnx``
refuses an ONNX file from another run, and the card's feature config, normalisation and
post-processing, so that a board needs no other file. :class:`ONNXPredictor` runs it
with the same window contract as the other runtimes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from soundnet.errors import SoundnetError
from soundnet.inputs import input_name, input_shapes, split_inputs
from soundnet.run import ONNX_FILE
from soundnet.storage import atomic_path

__all__ = ["ONNX_FILE", "SOURCE_KEY", "CARD_KEY", "ONNXPredictor", "available", "export_onnx", "metadata"]

SOURCE_KEY = "soundnet_source_sha256"  # metadata: SHA-256 of the model.keras it was exported from
CARD_KEY = "soundnet_card"  # metadata: what a board needs from the card (JSON)
MISSING = "the ONNX runtime needs the onnxruntime package (pip install 'soundnet[export]')"


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(model, path: Path, *, source_sha256: str, card: dict) -> Path:
    """Write ``model`` (a soundnet Keras model) as ONNX at ``path``, all or nothing.

    Parameters
    ----------
    model : keras.Model
    path : Path
    source_sha256 : str
        SHA-256 of the run's ``model.keras``, kept in the file's metadata.
    card : dict
        JSON-ready card fields kept in the metadata (feature config, normalisation...).
    """
    try:
        import onnx
        import tf2onnx  # noqa: F401  Keras' exporter imports it lazily, with a vaguer message
    except ImportError:
        raise SoundnetError("ONNX export needs the onnx and tf2onnx packages (pip install 'soundnet[export]')") from None
    from soundnet.backend import stderr_silenced

    with tempfile.TemporaryDirectory(prefix="soundnet-onnx-") as folder:
        raw = Path(folder) / ONNX_FILE
        with stderr_silenced():  # tf2onnx logs every rewrite through TensorFlow's logger
            # the inputs as the signature: a model loaded from a file has never been called,
            # and Keras would refuse to guess one
            model.export(str(raw), format="onnx", verbose=False, input_signature=[list(model.inputs)])
        graph = onnx.load(str(raw))
    window = int(model.inputs[0].shape[1])
    for value in [*graph.graph.input, *graph.graph.output]:  # tf2onnx names free axes unk__N
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param = "batch"
        dims[1].dim_value = window
    del graph.metadata_props[:]
    for key, value in ((SOURCE_KEY, source_sha256), (CARD_KEY, json.dumps(card, separators=(",", ":")))):
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    graph.producer_name = "soundnet"
    onnx.checker.check_model(graph)
    with atomic_path(path) as tmp:
        onnx.save(graph, str(tmp))
    return Path(path)


def metadata(path: Path) -> dict[str, str]:
    """The metadata of an ONNX file (``{}`` for a file soundnet did not write)."""
    import onnxruntime

    session = _session(path, onnxruntime)
    return dict(session.get_modelmeta().custom_metadata_map)


def _session(path: Path, onnxruntime, threads: int | None = None):
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail...)
        reason = " ".join(str(error).split())[:200]
        raise SoundnetError(f"{path}: cannot load the ONNX model ({reason})") from None


class ONNXPredictor:
    """Windows ``(b, window, 2*n_mfcc+1)`` -> probabilities ``(b, window)`` with ONNX Runtime.

    ``source_sha256``: refuse a file whose metadata names another ``model.keras``
    (None: take it as it is). ``threads``: ONNX Runtime's intra-op threads (None: its default).
    """

    def __init__(self, path: Path, *, n_mfcc: int, window: int, source_sha256: str | None = None, threads: int | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise SoundnetError(MISSING) from None
        self.n_mfcc = n_mfcc
        self.session = _session(path, onnxruntime, threads)
        if source_sha256 is not None:
            found = self.session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)
            if found != source_sha256:
                raise SoundnetError(
                    f"{path}: not exported from this run's model.keras (soundnet export RUN --format onnx --out {path})"
                )
        inputs = self.session.get_inputs()
        try:
            found = {input_name(i.name): tuple(i.shape[1:]) for i in inputs}
        except ValueError as error:
            raise SoundnetError(f"{path}: not a soundnet network ({error})") from None
        expected = input_shapes(n_mfcc, window)
        if found != expected:
            raise SoundnetError(f"{path}: the network takes inputs {found}, the card's feature config gives {expected}")
        self.inputs = {input_name(i.name): i.name for i in inputs}
        self.output = self.session.get_outputs()[0].name

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        parts = split_inputs(windows, n_mfcc=self.n_mfcc)
        feed = {tensor: np.ascontiguousarray(parts[name], np.float32) for name, tensor in self.inputs.items()}
        return np.asarray(self.session.run([self.output], feed)[0])[..., 0].astype(np.float32)
