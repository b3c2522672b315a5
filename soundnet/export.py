"""Small-device models: a run's network as ONNX, LiteRT (float) or integer-only LiteRT.

:func:`export_model` writes the file and measures what the conversion cost: the run's
validation files (found in the run's dataset through the card) are scored by the Keras
model and by the exported file exactly as detect scores audio (overlapping windows,
the card's post-processing), and the report gives both event F1 and frame average
precision, and the largest difference of any frame's probability.

The integer models (int8, and int16x8: int16 activations with int8 weights) are
calibrated on the run's training windows: ``calibration_windows`` of
the windows training cut (every ``stride`` frames of the training files, augmented
copies left out), drawn at random with ``seed``, normalised with the card's statistics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from soundnet.dataset import Dataset, Entry
from soundnet.errors import SoundnetError, UsageError
from soundnet.postprocess import to_events
from soundnet.run import (
    CARD_FILE,
    HISTORY_FILE,
    LOG_FILE,
    MODEL_FILE,
    TFLITE_FILE,
    ModelCard,
    file_digest,
    load_keras_model,
    read_card,
    verify_network_files,
)
from soundnet.windows import pad_window, window_starts

log = logging.getLogger(__name__)

FORMATS = ("onnx", "tflite", "tflite-int8", "tflite-int16x8")
QUANTISED = {"tflite-int8": "int8", "tflite-int16x8": "int16"}  # format -> activations
CALIBRATION_WINDOWS = 500


@dataclass(frozen=True)
class Figures:
    """Validation figures of one network: event F1 (onset collar 0.5 s, the card's
    post-processing) and frame average precision (None where undefined)."""

    event_f1: float | None
    frame_ap: float | None


@dataclass(frozen=True)
class Accuracy:
    """The exported network against the Keras model on the run's validation files."""

    files: int
    frames: int
    reference: Figures  # the Keras model (float32)
    exported: Figures
    max_abs_difference: float  # of a frame's probability, exported against Keras

    @property
    def f1_change(self) -> float | None:
        """Exported event F1 minus the Keras model's (None where either is undefined)."""
        if self.reference.event_f1 is None or self.exported.event_f1 is None:
            return None
        return self.exported.event_f1 - self.reference.event_f1


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and measured.

    ``accuracy`` is None when the run's dataset or validation files could not be
    found (``note`` says why); ``calibration_windows`` is 0 for the float formats.
    """

    path: Path
    format: str
    bytes: int
    keras_bytes: int
    calibration_windows: int
    accuracy: Accuracy | None
    note: str = ""

    def to_json(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        if self.accuracy is not None:
            data["accuracy"]["f1_change"] = self.accuracy.f1_change
        return data


def export_model(
    run: Path,
    *,
    format: str,
    out: Path,
    dataset: Path | None = None,
    calibration_windows: int = CALIBRATION_WINDOWS,
    seed: int = 0,
    measure: bool = True,
) -> ExportReport:
    """Export a run's network for a small device, and measure it against the Keras model.

    Parameters
    ----------
    run : Path
        A run folder written by ``soundnet train``.
    format : {"onnx", "tflite", "tflite-int8", "tflite-int16x8"}
        ONNX (float32, through Keras' exporter and tf2onnx), LiteRT float32, LiteRT
        full-integer int8 (post-training quantisation calibrated on training windows), or
        LiteRT integer-only with int16 activations and int8 weights (TFLite's 16x8 mode,
        calibrated the same way: closer to float, on integer kernels that support it).
    out : Path
        The file to write (atomically: a failure leaves any earlier file as it was).
        ``RUN/model.onnx`` is where ``detect --runtime onnx`` looks.
    dataset : Path or None
        The run's dataset folder, if it moved (default: the one the card names).
    calibration_windows : int > 0
        Training windows the integer quantisation is calibrated on.
    seed : int
        Which training windows are drawn for calibration.
    measure : bool
        Score the validation files with both networks (needs the dataset).

    Returns
    -------
    ExportReport
    """
    if format not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}. Received: format={format!r}")
    if calibration_windows < 1:
        raise UsageError(f"calibration_windows must be >= 1. Received: calibration_windows={calibration_windows}")
    run, out = Path(run), Path(out)
    card = read_card(run)
    _refuse_run_files(run, out)
    data, missing = _dataset(run, card, dataset)
    if format in QUANTISED and data is None:
        raise SoundnetError(f"{run}: {format} calibration needs the run's training windows, and {missing} (give --dataset)")

    from soundnet.backend import quiet_import_keras

    quiet_import_keras()
    from soundnet.model import predict_fn

    verify_network_files(run, card)
    model = load_keras_model(run, card)
    n_mfcc, window = card.features.n_mfcc, card.model.window
    used = 0
    if format == "onnx":
        from soundnet import onnxrt

        onnxrt.export_onnx(model, out, source_sha256=file_digest(run / MODEL_FILE), card=board_card(card))
    else:
        from soundnet.litert import export_tflite

        representative = None
        if format in QUANTISED:
            windows = calibration_set(data, card, count=calibration_windows, seed=seed)
            used = len(windows)
            representative = _representative(windows, n_mfcc=n_mfcc)
            log.info("%s: calibrating %s quantisation on %d training windows", run, format, used)
        activations = QUANTISED.get(format, "int8")
        export_tflite(model, out, n_mfcc=n_mfcc, representative=representative, activations=activations, strip=True)
    size = out.stat().st_size
    accuracy, note = None, ""
    if not measure:
        note = "accuracy not measured (measure=False)"
    elif data is None:
        note = f"accuracy not measured: {missing} (give --dataset)"
    else:
        validation = validation_entries(data, card)
        if not validation:
            note = f"accuracy not measured: none of the card's validation files is in {data.root}"
        else:
            exported = _predictor(format, out, n_mfcc=n_mfcc, window=window)
            accuracy = compare(data, validation, card, predict_fn(model, n_mfcc=n_mfcc), exported)
    return ExportReport(out, format, size, (run / MODEL_FILE).stat().st_size, used, accuracy, note)


def _refuse_run_files(run: Path, out: Path) -> None:
    """Never write over the run's own files (a replaced model.tflite would break its card's checksum)."""
    target = out.resolve()
    for name in (MODEL_FILE, TFLITE_FILE, CARD_FILE, HISTORY_FILE, LOG_FILE):
        if target == (run / name).resolve():
            raise SoundnetError(f"{out}: is the run's own {name}; export to another file")


def _dataset(run: Path, card: ModelCard, given: Path | None) -> tuple[Dataset | None, str]:
    """The run's dataset (``given``, else the card's), and why it is missing when it is."""
    if given is not None:
        data = Dataset.open(given)
    else:
        named = card.training.get("dataset")
        if not named:
            return None, f"{run / CARD_FILE} names no dataset"
        if not (Path(named) / "manifest.json").is_file():
            return None, f"its dataset {named} is not there"
        data = Dataset.open(Path(named))
    if data.feature_config != card.features:
        raise SoundnetError(f"{data.root}: the dataset's feature config differs from the run's card; not the run's dataset")
    return data, ""


def training_entries(data: Dataset, card: ModelCard) -> list[Entry]:
    """The dataset's recordings the run was trained on (augmented copies left out)."""
    names = set(card.training.get("files", []))
    return [e for e in data.entries if not e.copy and e.source in names]


def validation_entries(data: Dataset, card: ModelCard) -> list[Entry]:
    """The dataset's recordings the card's validation figures were measured on."""
    from soundnet.tuning import training_validation

    names = set(training_validation(card.validation).get("files", {}))
    return [e for e in data.entries if not e.copy and e.source in names]


def calibration_set(data: Dataset, card: ModelCard, *, count: int, seed: int) -> np.ndarray:
    """``count`` normalised training windows ``(count, window, features)`` drawn at random
    (all of them when there are fewer) from those training cut."""
    entries = training_entries(data, card)
    if not entries:
        raise SoundnetError(f"{data.root}: holds none of the run's training files: not the run's dataset (give --dataset)")
    window = card.model.window
    stride = int(card.training.get("config", {}).get("stride", window // 2) or window // 2)
    index = [(i, int(s)) for i, e in enumerate(entries) for s in window_starts(e.frames, window=window, stride=stride)]
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(index), min(count, len(index)), replace=False).tolist())
    windows = np.zeros((len(picks), window, card.features.n_features), np.float32)
    for k, pick in enumerate(picks):
        i, start = index[pick]
        rows = data.feature_rows(entries[i]).read(start, start + window)
        windows[k] = pad_window(card.normalise(rows), window=window)
    return windows


def _representative(windows: np.ndarray, *, n_mfcc: int):
    from soundnet.inputs import split_inputs

    def batches() -> Iterator[dict[str, np.ndarray]]:
        for w in windows:
            yield {name: np.ascontiguousarray(part) for name, part in split_inputs(w[None], n_mfcc=n_mfcc).items()}

    return batches


def _predictor(format: str, path: Path, *, n_mfcc: int, window: int):
    if format == "onnx":
        from soundnet.onnxrt import ONNXPredictor

        return ONNXPredictor(path, n_mfcc=n_mfcc, window=window)
    from soundnet.litert import LiteRTPredictor

    return LiteRTPredictor(path, n_mfcc=n_mfcc, window=window)


def compare(data: Dataset, entries: list[Entry], card: ModelCard, reference, exported) -> Accuracy:
    """Score ``entries`` with two predictors (windows -> probabilities) as detect would."""
    from soundnet.scoring import event_scores, frame_scores
    from soundnet.training import file_probabilities

    frame_seconds = card.features.frame_seconds
    durations = {e.id: e.frames * frame_seconds for e in entries}
    truth = {e.id: data.events(e) for e in entries}
    labels = [data.labels(e) for e in entries]
    figures, probabilities = [], []
    for predict in (reference, exported):
        probs = [file_probabilities(data, e, card, predict) for e in entries]
        estimated = {
            e.id: to_events(
                p,
                post=card.postprocessing,
                frame_seconds=frame_seconds,
                duration=durations[e.id],
                filename=e.id,
                label=card.target,
            )
            for e, p in zip(entries, probs, strict=True)
        }
        scores = event_scores(truth, estimated, label=card.target, durations=durations)
        figures.append(Figures(scores.event_onset.f_measure, frame_scores(labels, probs).average_precision))
        probabilities.append(np.concatenate(probs))
    difference = float(np.max(np.abs(probabilities[1].astype(np.float64) - probabilities[0]))) if len(probabilities[0]) else 0.0
    return Accuracy(len(entries), int(sum(e.frames for e in entries)), figures[0], figures[1], difference)


def board_card(card: ModelCard) -> dict:
    """What a device needs from the card beside the network: features, normalisation,
    window, detection hop, post-processing, target and, if the card has one, the verifier
    of events whose first stage that post-processing is (JSON-ready)."""
    full = card.to_json()
    keep = ("soundnet_version", "target", "features", "feature_code_version", "model", "normalisation", "postprocessing")
    keep += ("verifier",) if "verifier" in full else ()
    return {**{key: full[key] for key in keep}, "detection_hop": card.detection_hop}
