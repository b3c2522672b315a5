"""soundnet: train and run a detector of one target sound (CNN-LSTM-Dense, per 10 ms frame).

The Python API (see docs/api.md)::

    import soundnet

    soundnet.synthesize("clips/bark", "clips/park", "synth/", n=200)
    soundnet.extract(["synth/"], out="data/", annotations="synth/annotations.tsv")
    result = soundnet.train("data/", out="runs/bark")
    report = soundnet.detect("new.wav", model="runs/bark")
    scores = soundnet.evaluate("test/", annotations="test.tsv", model="runs/bark")

Names load on first use, so ``import soundnet`` (and ``soundnet --help``) stays fast;
TensorFlow loads only with what needs it (training, the Keras runtime).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Detector": "soundnet.detection",
    "Detection": "soundnet.detection",
    "DetectReport": "soundnet.detection",
    "detect": "soundnet.detection",
    "extract": "soundnet.dataset",
    "ExtractReport": "soundnet.dataset",
    "train": "soundnet.training",
    "TrainResult": "soundnet.training",
    "evaluate": "soundnet.evaluation",
    "evaluate_table": "soundnet.evaluation",
    "Evaluation": "soundnet.evaluation",
    "tune": "soundnet.tuning",
    "Tuning": "soundnet.tuning",
    "synthesize": "soundnet.synth",
    "listen": "soundnet.listening",
    "ListenReport": "soundnet.listening",
    "LiveDetector": "soundnet.live",
    "LivePost": "soundnet.live",
    "LiveEvent": "soundnet.live",
    "plot_detection": "soundnet.plot",
    "export_model": "soundnet.export",
    "ExportReport": "soundnet.export",
    "load_config": "soundnet.config",
    "Config": "soundnet.config",
    "PostConfig": "soundnet.config",
    "OutputPlan": "soundnet.outputs",
    "read_card": "soundnet.run",
    "ModelCard": "soundnet.run",
    "Event": "soundnet.events",
    "SoundnetError": "soundnet.errors",
    "ReviewSession": "soundnet.review",
    "read_reviewed": "soundnet.review",
    "sample_detections": "soundnet.review",
    "review_app": "soundnet.review_server",
    "ReviewServer": "soundnet.review_server",
}

__all__ = [
    "__version__",
    "load_model",
    "Detector",
    "Detection",
    "DetectReport",
    "detect",
    "extract",
    "ExtractReport",
    "train",
    "TrainResult",
    "evaluate",
    "evaluate_table",
    "Evaluation",
    "tune",
    "Tuning",
    "synthesize",
    "listen",
    "ListenReport",
    "LiveDetector",
    "LivePost",
    "LiveEvent",
    "plot_detection",
    "export_model",
    "ExportReport",
    "load_config",
    "Config",
    "PostConfig",
    "OutputPlan",
    "read_card",
    "ModelCard",
    "Event",
    "SoundnetError",
    "ReviewSession",
    "read_reviewed",
    "sample_detections",
    "review_app",
    "ReviewServer",
]  # _EXPORTS' names (a test holds them equal)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from soundnet.config import Config, PostConfig, load_config
    from soundnet.dataset import ExtractReport, extract
    from soundnet.detection import Detection, Detector, DetectReport, detect
    from soundnet.errors import SoundnetError
    from soundnet.evaluation import Evaluation, evaluate, evaluate_table
    from soundnet.events import Event
    from soundnet.export import ExportReport, export_model
    from soundnet.listening import ListenReport, listen
    from soundnet.live import LiveDetector, LiveEvent, LivePost
    from soundnet.outputs import OutputPlan
    from soundnet.plot import plot_detection
    from soundnet.review import ReviewSession, read_reviewed, sample_detections
    from soundnet.review_server import ReviewServer, review_app
    from soundnet.run import ModelCard, read_card
    from soundnet.synth import synthesize
    from soundnet.training import TrainResult, train
    from soundnet.tuning import Tuning, tune


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        if not name.startswith("_") and importlib.util.find_spec(f"soundnet.{name}") is not None:
            return importlib.import_module(f"soundnet.{name}")  # a module: soundnet.tuning.GRID
        raise AttributeError(f"module 'soundnet' has no attribute {name!r}")
    if name in ("train", "TrainResult"):
        from soundnet.backend import quiet_import_keras

        quiet_import_keras()  # TensorFlow's C++ start-up chatter kept off stderr
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_model(run=None):
    """The Keras model of a run folder (None: the bundled detector), checked against its card.

    Parameters
    ----------
    run : path or None
        A folder written by :func:`soundnet.training`.

    Returns
    -------
    keras.Model
        Inputs ``mfcc`` and ``delta`` ``(window, n_mfcc)`` and ``zcr`` ``(window, 1)``,
        output ``(window, 1)``: the per-frame probability of the target sound.
    """
    from pathlib import Path

    from soundnet.backend import quiet_import_keras
    from soundnet.detection import BUNDLED_MODEL
    from soundnet.run import load_keras_model, read_card, verify_network_files

    quiet_import_keras()
    folder = Path(run) if run is not None else BUNDLED_MODEL
    card = read_card(folder)
    verify_network_files(folder, card)
    return load_keras_model(folder, card)


class _RegisterLayersWithKeras(importlib.abc.MetaPathFinder):
    """Registers soundnet's Keras layer (PooledBatchNorm) as soon as Keras is imported,
    so ``keras.saving.load_model("run/model.keras")`` works after ``import soundnet``
    without importing TensorFlow at ``import soundnet``."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, run_module = spec.loader, spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            importlib.import_module("soundnet.model")

        loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    importlib.import_module("soundnet.model")
elif not any(isinstance(finder, _RegisterLayersWithKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterLayersWithKeras())
