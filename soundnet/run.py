"""A run folder: everything detection needs, written by ``soundnet train``.

``model.keras`` (the network), ``card.json`` (feature config, normalisation
statistics, target label, tuned post-processing, validation metrics, soundnet
version), ``history.csv`` and ``train.log``.
"""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundnet import __version__
from soundnet.config import FeatureConfig, ModelConfig, PostConfig, from_dict, to_dict
from soundnet.errors import SoundnetError
from soundnet.storage import read_json, write_json

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
HISTORY_FILE = "history.csv"
LOG_FILE = "train.log"


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split(".")[:3])
    except ValueError:
        return (0,)


@dataclass(frozen=True)
class ModelCard:
    """What produced a model's inputs and how to read its outputs."""

    target: str
    features: FeatureConfig
    model: ModelConfig
    mean: np.ndarray
    std: np.ndarray
    postprocessing: PostConfig
    detection_hop: int = 0  # 0: half a window
    validation: dict = dataclasses.field(default_factory=dict)
    training: dict = dataclasses.field(default_factory=dict)
    soundnet_version: str = __version__

    def __post_init__(self) -> None:
        if self.detection_hop <= 0 or self.detection_hop > self.model.window:
            object.__setattr__(self, "detection_hop", max(1, self.model.window // 2))

    def normalise(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def to_json(self) -> dict:
        return {
            "soundnet_version": self.soundnet_version,
            "target": self.target,
            "features": to_dict(self.features),
            "model": to_dict(self.model),
            "normalisation": {"mean": self.mean.tolist(), "std": self.std.tolist()},
            "postprocessing": to_dict(self.postprocessing),
            "detection_hop": self.detection_hop,
            "validation": self.validation,
            "training": self.training,
        }

    @classmethod
    def from_json(cls, data: dict, where: str) -> ModelCard:
        version = str(data.get("soundnet_version", "0"))
        if _version_tuple(version)[:2] > _version_tuple(__version__)[:2]:
            raise SoundnetError(
                f"{where}: written by soundnet {version}, newer than this soundnet {__version__}; upgrade soundnet"
            )
        try:
            features = from_dict(FeatureConfig, data["features"], f"{where} features")
            card = cls(
                target=str(data["target"]),
                features=features,
                model=from_dict(ModelConfig, data["model"], f"{where} model"),
                mean=np.asarray(data["normalisation"]["mean"], np.float32),
                std=np.asarray(data["normalisation"]["std"], np.float32),
                postprocessing=from_dict(PostConfig, data["postprocessing"], f"{where} postprocessing"),
                detection_hop=int(data.get("detection_hop", 0)),
                validation=dict(data.get("validation", {})),
                training=dict(data.get("training", {})),
                soundnet_version=version,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise SoundnetError(f"{where}: not a soundnet model card ({error!r})") from None
        if card.mean.shape != (features.n_features,) or card.std.shape != (features.n_features,):
            raise SoundnetError(
                f"{where}: normalisation statistics do not match the feature config ({features.n_features} features)"
            )
        if not (np.all(np.isfinite(card.mean)) and np.all(card.std > 0)):
            raise SoundnetError(f"{where}: normalisation statistics are not finite and positive")
        return card


def write_card(run: Path, card: ModelCard) -> None:
    write_json(Path(run) / CARD_FILE, card.to_json())


def read_card(run: Path) -> ModelCard:
    """The model card of run folder ``run``."""
    run = Path(run)
    if not run.is_dir():
        raise SoundnetError(f"{run}: no such model folder")
    path = run / CARD_FILE
    if not path.is_file():
        raise SoundnetError(f"{run}: not a soundnet model folder (no {CARD_FILE})")
    return ModelCard.from_json(read_json(path), str(path))


def _first_sentence(text: str, limit: int = 240) -> str:
    """The first sentence of a library's message, cut at a word if still long."""
    end = text.find(". ", 20)
    text = text[: end + 1] if end > 0 else text
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def load_keras_model(run: Path, card: ModelCard):
    """The run's Keras model, loaded in safe mode (no code from the file runs)."""
    import keras

    import soundnet.model  # noqa: F401  registers PooledBatchNorm for loading

    path = Path(run) / MODEL_FILE
    if not path.is_file():
        raise SoundnetError(f"{run}: not a soundnet model folder (no {MODEL_FILE})")
    if not zipfile.is_zipfile(path):  # Keras would call this "File not found"
        raise SoundnetError(f"{path}: cannot load the model (not a .keras zip archive: damaged or not a Keras model)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for damaged or unsafe files
        reason = _first_sentence(" ".join(str(error).split()))
        raise SoundnetError(f"{path}: cannot load the model ({reason})") from None
    names = {tensor.name.split(":")[0] for tensor in model.inputs}
    expected = {"mfcc": card.features.n_mfcc, "delta": card.features.n_mfcc, "zcr": 1}
    shapes = {t.name.split(":")[0]: tuple(t.shape[1:]) for t in model.inputs}
    if names != set(expected) or any(shapes[k] != (card.model.window, v) for k, v in expected.items()):
        raise SoundnetError(f"{path}: model inputs {shapes} do not match the card's feature config")
    return model
