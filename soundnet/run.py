"""A run folder: everything detection needs, written by ``soundnet train``.

``model.keras`` (the network), ``model.tflite`` (the same network for the LiteRT
runtime), ``card.json`` (feature config and feature-code version, normalisation
statistics, target label, tuned post-processing, validation metrics, soundnet version,
and the SHA-256 of both network files), ``history.csv`` and ``train.log``; a
cross-validated run also keeps ``out_of_fold.npz``, the predictions its post-processing
was tuned on (:func:`write_out_of_fold`).

This module owns the folder: its file names, reading and writing the card, checking
that the network files are the ones the card describes, and putting a finished run in
place of an older one without ever deleting a folder that is not a soundnet run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundnet import __version__
from soundnet.calibration import Calibration
from soundnet.config import FEATURE_CODE_VERSION, FeatureConfig, ModelConfig, PostConfig, from_dict, to_dict
from soundnet.errors import SoundnetError, check_label
from soundnet.guard import holds
from soundnet.inputs import input_shapes
from soundnet.storage import is_temporary, read_json, write_json
from soundnet.verification import Verifier

MODEL_FILE = "model.keras"
TFLITE_FILE = "model.tflite"
CARD_FILE = "card.json"
HISTORY_FILE = "history.csv"
LOG_FILE = "train.log"
OUT_OF_FOLD_FILE = "out_of_fold.npz"
ONNX_FILE = "model.onnx"  # soundnet export puts it here for detect --runtime onnx
# what soundnet writes into a run folder: all that a new training may replace there
RUN_FILES = frozenset({CARD_FILE, MODEL_FILE, TFLITE_FILE, HISTORY_FILE, LOG_FILE, OUT_OF_FOLD_FILE, ONNX_FILE})
# what file browsers leave in any folder they show: no one's data
FOLDER_CLUTTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
NETWORK_FILES = (MODEL_FILE, TFLITE_FILE)


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
    mean: np.ndarray = dataclasses.field(repr=False)
    std: np.ndarray = dataclasses.field(repr=False)
    postprocessing: PostConfig
    detection_hop: int = 0  # 0: half a window
    validation: dict = dataclasses.field(default_factory=dict, repr=False)
    training: dict = dataclasses.field(default_factory=dict, repr=False)
    soundnet_version: str = __version__
    feature_code_version: int = FEATURE_CODE_VERSION
    checksums: dict = dataclasses.field(default_factory=dict)  # network file name -> SHA-256; empty: not recorded
    calibration: Calibration | None = (
        None  # of event confidence; None: raw confidences (a card written before, or too few events)
    )
    verifier: Verifier | None = None  # the second stage of events (soundnet.verification); None: none
    extra: dict = dataclasses.field(default_factory=dict)  # other top-level fields (a description...), kept as they are

    def __post_init__(self) -> None:
        if self.detection_hop <= 0 or self.detection_hop > self.model.window:
            object.__setattr__(self, "detection_hop", max(1, self.model.window // 2))

    def event_calibration(self, *, raw_confidence: bool = False, verify: bool = True) -> Calibration | None:
        """The calibration of the confidences of the events reported with these choices:
        none when raw ones are asked for, or when the card's verifier is ignored (a
        calibration fitted on a verifier's events does not hold for the events it would drop)."""
        if raw_confidence or (not verify and self.verifier is not None):
            return None
        return self.calibration

    def normalise(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def to_json(self) -> dict:
        return {
            "soundnet_version": self.soundnet_version,
            "target": self.target,
            "features": to_dict(self.features),
            "feature_code_version": self.feature_code_version,
            "model": to_dict(self.model),
            "normalisation": {"mean": self.mean.tolist(), "std": self.std.tolist()},
            "postprocessing": to_dict(self.postprocessing),
            "detection_hop": self.detection_hop,
            "validation": self.validation,
            "training": self.training,
            "checksums": self.checksums,
            "calibration": None if self.calibration is None else self.calibration.to_json(),
            **({} if self.verifier is None else {"verifier": self.verifier.to_json()}),
            **{k: v for k, v in self.extra.items() if k not in _CARD_FIELDS},
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
                feature_code_version=int(data.get("feature_code_version", 1)),
                checksums={str(k): str(v) for k, v in dict(data.get("checksums", {})).items()},
                calibration=None
                if data.get("calibration") is None
                else Calibration.from_json(data["calibration"], f"{where} calibration"),
                verifier=None if data.get("verifier") is None else Verifier.from_json(data["verifier"], f"{where} verifier"),
                extra={k: v for k, v in data.items() if k not in _CARD_FIELDS},
            )
        except (KeyError, TypeError, ValueError) as error:
            raise SoundnetError(f"{where}: not a soundnet model card ({error!r})") from None
        check_label(card.target, f"{where} target")
        if card.mean.shape != (features.n_features,) or card.std.shape != (features.n_features,):
            raise SoundnetError(
                f"{where}: normalisation statistics do not match the feature config ({features.n_features} features)"
            )
        if not (np.all(np.isfinite(card.mean)) and np.all(np.isfinite(card.std)) and np.all(card.std > 0)):
            raise SoundnetError(f"{where}: normalisation statistics are not finite and positive")
        if card.feature_code_version != FEATURE_CODE_VERSION:
            raise SoundnetError(
                f"{where}: the model was trained on features of feature-code version {card.feature_code_version}, "
                f"this soundnet computes version {FEATURE_CODE_VERSION}; retrain it with this soundnet"
            )
        return card


_CARD_FIELDS = frozenset(
    {"soundnet_version", "target", "features", "feature_code_version", "model", "normalisation", "postprocessing"}
    | {"detection_hop", "validation", "training", "checksums", "calibration", "verifier"}
)


def write_card(run: Path, card: ModelCard) -> None:
    write_json(Path(run) / CARD_FILE, card.to_json())


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def seal(run: Path, card: ModelCard) -> ModelCard:
    """``card`` with the checksums of the network files now in ``run`` (written by the caller)."""
    run = Path(run)
    checksums = {name: file_digest(run / name) for name in NETWORK_FILES if (run / name).is_file()}
    return dataclasses.replace(card, checksums=checksums)


def verify_network_files(run: Path, card: ModelCard) -> None:
    """Refuse network files that are not the ones the card was written for.

    Each of ``model.keras`` and ``model.tflite`` present in the folder must carry the
    checksum the card records, so a replaced, damaged or copied-in file (another run's
    ``model.tflite``) never runs with this card. A card without checksums (written
    before soundnet recorded them) is taken as it is.
    """
    if not card.checksums:
        return
    for name in NETWORK_FILES:
        path = Path(run) / name
        if not path.is_file():
            continue
        expected = card.checksums.get(name)
        if expected is None:
            raise SoundnetError(f"{path}: not part of this run (its card records no {name}); remove it or retrain")
        if file_digest(path) != expected:
            raise SoundnetError(
                f"{path}: does not match the run's card (checksum differs: replaced, damaged or from another run); retrain"
            )


def is_run(folder: Path) -> bool:
    """Whether ``folder`` is a soundnet run folder (it holds a readable soundnet card)."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return False
    try:
        data = read_json(path)
    except SoundnetError:
        return False
    return {"target", "features", "model", "normalisation"} <= set(data)


def check_run_destination(out: Path, *, keep: Iterable[Path] = ()) -> None:
    """Refuse a run destination whose replacement could destroy the user's data.

    ``out`` may be missing, an empty folder, or a soundnet run folder holding only what
    soundnet writes there (:data:`RUN_FILES`), which a finished training replaces; it
    must not hold, or be, any of ``keep`` (the dataset, inputs).

    Raises
    ------
    SoundnetError
        ``out`` is a file, a non-empty folder that is not a soundnet run, a run that
        also holds other files (the user's: a replacement would lose them), or holds
        one of ``keep``.
    """
    out = Path(out)
    if str(out) in ("", "."):
        raise SoundnetError(f"{out or '.'}: give the run a folder of its own (--out runs/NAME)")
    for path in keep:
        if holds(out, path):
            raise SoundnetError(f"{out}: holds {path}, which training reads: choose another --out")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise SoundnetError(f"{out}: exists and is not a folder: choose another --out")
    if out.is_dir() and not is_run(out) and any(out.iterdir()):
        raise SoundnetError(f"{out}: exists and is not a soundnet run (no {CARD_FILE}): choose another --out or empty it")
    foreign = _not_soundnets(out) if out.is_dir() else []
    if foreign:
        raise SoundnetError(
            f"{out}: a soundnet run that also holds {_listed(foreign)}, which replacing the run would delete: "
            "move them out or choose another --out"
        )


def _not_soundnets(folder: Path) -> list[str]:
    """The names in a run folder that soundnet did not write there (sorted): not a run
    file, not a soundnet writer's temporary, not a file browser's clutter."""
    ours = RUN_FILES | FOLDER_CLUTTER
    return sorted(p.name for p in folder.iterdir() if p.name not in ours and not is_temporary(p.name))


def _listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def replace_run(partial: Path, out: Path) -> None:
    """Put the finished run ``partial`` at ``out``, replacing a previous run there.

    The old run is renamed aside first and deleted only once the new one is in place,
    so a failure at any point leaves a whole run at ``out`` or beside it. Only an empty
    folder or a soundnet run is ever replaced (:func:`check_run_destination`).
    """
    partial, out = Path(partial), Path(out)
    if not (partial / CARD_FILE).is_file():
        raise SoundnetError(f"{partial}: training did not finish (no {CARD_FILE}); nothing replaced")
    try:
        check_run_destination(out)
    except SoundnetError as error:  # something came into the way during training: the new run waits beside it
        raise SoundnetError(
            f"{error}; the finished new run is {partial}: once {out} is out of the way, rename it to {out}"
        ) from None
    if not out.exists():
        os.replace(partial, out)
        return
    old = out.with_name(out.name + ".old")
    if old.exists():  # left by a replacement that was stopped: deleted only if it is a run of soundnet's files alone
        foreign = _not_soundnets(old) if is_run(old) else None
        if foreign is None or foreign:
            kind = "not a soundnet run" if foreign is None else f"a soundnet run that also holds {_listed(foreign)}"
            raise SoundnetError(f"{old}: in the way of replacing {out}, and {kind}: move it")
        shutil.rmtree(old)
    os.replace(out, old)
    os.replace(partial, out)
    shutil.rmtree(old, ignore_errors=True)


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
    shapes = {t.name.split(":")[0]: tuple(t.shape[1:]) for t in model.inputs}
    if shapes != input_shapes(card.features.n_mfcc, card.model.window):
        raise SoundnetError(f"{path}: model inputs {shapes} do not match the card's feature config")
    return model


@dataclass(frozen=True)
class OutOfFold:
    """A cross-validated run's out-of-fold predictions: each training file's per-frame
    probabilities by the network of the fold that held its group out, with its reference
    events, length and that fold (1, 2, ...), by file name (what ``soundnet tune RUN``
    tunes on without audio; ``folds`` is None in a file written before soundnet kept them)."""

    probabilities: dict[str, np.ndarray]
    events: dict[str, list]
    durations: dict[str, float]
    target: str
    folds: dict[str, int] | None = None


def write_out_of_fold(run: Path, oof: OutOfFold) -> None:
    """Write ``oof`` to ``run/out_of_fold.npz`` (atomically): arrays ``p0``, ``p1``, ... and
    the names, lengths and events as JSON in ``meta`` (no pickle)."""
    import json

    from soundnet.storage import atomic_path

    names = sorted(oof.probabilities)
    meta = {
        "target": oof.target,
        "files": [
            {
                "name": n,
                "duration": oof.durations[n],
                "events": [[e.onset, e.offset] for e in oof.events.get(n, [])],
                **({} if oof.folds is None else {"fold": oof.folds[n]}),
            }
            for n in names
        ],
    }
    arrays = {f"p{i}": np.asarray(oof.probabilities[n], np.float32) for i, n in enumerate(names)}
    with atomic_path(Path(run) / OUT_OF_FOLD_FILE) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)


def read_out_of_fold(run: Path) -> OutOfFold | None:
    """The run's out-of-fold predictions, or None when it has none (not cross-validated)."""
    import json

    from soundnet.events import Event

    path = Path(run) / OUT_OF_FOLD_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            files = meta["files"]
            probabilities = {f["name"]: saved[f"p{i}"] for i, f in enumerate(files)}
            folds = {f["name"]: int(f["fold"]) for f in files} if all("fold" in f for f in files) else None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise SoundnetError(f"{path}: not a readable out-of-fold file ({error})") from None
    target = meta["target"]
    events = {f["name"]: [Event(f["name"], on, off, target) for on, off in f["events"]] for f in files}
    return OutOfFold(probabilities, events, {f["name"]: float(f["duration"]) for f in files}, target, folds)


@dataclass(frozen=True)
class RunFiles:
    """A run folder's card and network files as bytes, to send to machines that do not
    share its disk (Dask workers): :meth:`folder` rebuilds it there, once per process.

    Attributes
    ----------
    digest : str
        SHA-256 over the file names and contents: the same run, the same digest.
    files : dict of str to bytes
        ``card.json`` and the network files the folder holds.
    """

    digest: str
    files: dict = dataclasses.field(repr=False)

    @classmethod
    def read(cls, run: Path) -> RunFiles:
        run = Path(run)
        files = {name: (run / name).read_bytes() for name in (CARD_FILE, *NETWORK_FILES) if (run / name).is_file()}
        digest = hashlib.sha256()
        for name, data in sorted(files.items()):
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return cls(digest.hexdigest(), files)

    def folder(self) -> Path:
        """A folder holding these files in this process (made on first use, removed at exit)."""
        with _FOLDERS_LOCK:
            if self.digest not in _FOLDERS:
                import atexit
                import tempfile

                folder = Path(tempfile.mkdtemp(prefix=f"soundnet-run-{self.digest[:12]}-"))
                atexit.register(shutil.rmtree, folder, ignore_errors=True)
                for name, data in self.files.items():
                    (folder / name).write_bytes(data)
                _FOLDERS[self.digest] = folder
            return _FOLDERS[self.digest]


_FOLDERS: dict[str, Path] = {}
_FOLDERS_LOCK = threading.Lock()
