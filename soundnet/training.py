"""Training: stream windows from a dataset, fit the network, write a run folder.

The work happens in ``RUN.partial/`` (checkpoints, history, log); when training and
tuning are done the folder is renamed to ``RUN``, so a run folder is always whole.
``resume=True`` continues an interrupted ``RUN.partial/`` from its last completed
epoch (weights, optimizer state, epoch counter; the data order is a function of the
seed and the epoch).

With ``training.folds`` K >= 2 the validation is K-fold cross-validation over the
groups: K networks, each validated on one fold of whole groups, give every file a
prediction from a network that never trained on its group. The epoch count (the median
of the folds' kept epochs) and the post-processing are chosen on those pooled
out-of-fold predictions, and the card's validation figures are theirs; the network
shipped is then trained on every file for that many epochs. The folds work in
``RUN.partial/folds/fold-K/``; a resumed training skips the folds already done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from soundnet import __version__
from soundnet.calibration import fit_event_calibration
from soundnet.config import Config, check_taps, to_dict
from soundnet.dataset import Dataset, Entry
from soundnet.detection import frame_probabilities
from soundnet.errors import SoundnetError, UsageError
from soundnet.groups import Split, fold_splits, split_by_group
from soundnet.guard import holds
from soundnet.litert import export_tflite
from soundnet.model import as_inputs, build_model, predict_fn, recalibrate_batchnorm
from soundnet.review_training import ReviewedData, ReviewedFile, load_reviewed
from soundnet.run import (
    HISTORY_FILE,
    LOG_FILE,
    MODEL_FILE,
    TFLITE_FILE,
    ModelCard,
    OutOfFold,
    check_run_destination,
    file_digest,
    load_keras_model,
    read_card,
    replace_run,
    seal,
    verify_network_files,
    write_card,
    write_out_of_fold,
)
from soundnet.scoring import frame_scores
from soundnet.storage import atomic_path, ensure_room, read_json, save_npy, write_json, write_text
from soundnet.tuning import TuneResult, search_postprocessing
from soundnet.windows import pad_window, window_starts

log = logging.getLogger(__name__)

RECALIBRATION_WINDOWS = 2048


def split_files(entries: tuple[Entry, ...], *, fraction: float, seed: int) -> tuple[list[Entry], list[Entry], Split]:
    """Training and validation files, whole groups held out (:func:`soundnet.groups.split_by_group`):
    annotated recordings and ``--negatives`` recordings each give validation their share.
    Augmented copies go with their recording to training, and never to validation."""
    originals = [e for e in entries if not e.copy]
    split = split_by_group(
        [e.group or e.id for e in originals], fraction=fraction, seed=seed, strata=[e.negative for e in originals]
    )
    return *_split_entries(entries, originals, split), split


def fold_files(entries: tuple[Entry, ...], *, folds: int, seed: int) -> list[tuple[list[Entry], list[Entry], Split]]:
    """The training and validation files of each fold of a cross-validation
    (:func:`soundnet.groups.fold_splits`): every recording is validated in exactly one
    fold, whole groups together, annotated and ``--negatives`` recordings dealt
    separately; augmented copies go with their recording to training."""
    originals = [e for e in entries if not e.copy]
    splits = fold_splits([e.group or e.id for e in originals], folds=folds, seed=seed, strata=[e.negative for e in originals])
    return [(*_split_entries(entries, originals, split), split) for split in splits]


def _split_entries(entries, originals: list[Entry], split: Split) -> tuple[list[Entry], list[Entry]]:
    train = [originals[i] for i in split.train]
    kept = {e.id for e in train}
    train += [e for e in entries if e.copy and e.original_id in kept]
    return train, [originals[i] for i in split.validation]


def feature_statistics(dataset: Dataset, entries: list[Entry], *, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation over the frames of ``entries``, streamed."""
    total = total_sq = 0.0
    count = 0
    for entry in entries:
        rows = dataset.feature_rows(entry)
        for start in range(0, len(rows), chunk):
            block = rows.read(start, start + chunk).astype(np.float64)
            total = total + block.sum(0)
            total_sq = total_sq + (block**2).sum(0)
            count += len(block)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-5).astype(np.float32)


class WindowBatches(keras.utils.PyDataset):
    """Batches of normalised windows, labels and per-frame weights, read from disk.

    Only the window index lives in memory; each batch reads its windows' rows from the
    feature files. Positive frames weigh ``positive_weight``, padding frames 0, and a
    window's frames are multiplied by its ``window_weight`` (hard negatives weigh more).

    With ``shuffle`` (training), each epoch is a function of the seed and the epoch
    number: as many windows as the annotated recordings hold, drawn from them and
    their augmented copies, plus at most ``negative_ratio`` as many windows drawn from
    the ``--negatives`` recordings, plus every window around the spans of ``reviewed``
    recordings (:mod:`soundnet.review_training`: only their decided frames weigh,
    ``reviewed_weight`` each, accepted or rejected), in a shuffled order, each window moved by a random
    shift of up to ``shift_frames`` frames. Augmentation thus costs no epoch time.
    """

    def __init__(
        self,
        dataset: Dataset,
        entries: list[Entry],
        card: ModelCard,
        *,
        stride: int,
        batch_size: int,
        positive_weight: float,
        shuffle: bool,
        seed: int,
        shift_frames: int = 0,
        negative_ratio: float = 1.0,
        time_mask_frames: int = 0,
        feature_mask_columns: int = 0,
        reviewed: Sequence[ReviewedFile] = (),
        reviewed_weight: float = 1.0,
    ):
        super().__init__(workers=1, use_multiprocessing=False)
        self.dataset, self.entries, self.card = dataset, entries, card
        self.window = card.model.window
        self.batch_size, self.positive_weight, self.shuffle, self.seed = batch_size, positive_weight, shuffle, seed
        self.shift_frames, self.negative_ratio = shift_frames, negative_ratio
        self.time_mask_frames, self.feature_mask_columns = time_mask_frames, feature_mask_columns
        self.epoch = 0
        # sources: the dataset's entries, then the reviewed recordings (their windows only around decided spans)
        self.rows = [dataset.feature_rows(e) for e in entries] + [r.rows for r in reviewed]
        self.labels = [dataset.labels(e) for e in entries] + [r.labels for r in reviewed]
        self.frame_weights: list[np.ndarray | None] = [None] * len(entries) + [r.weights * reviewed_weight for r in reviewed]
        self.frames = [e.frames for e in entries] + [len(r.labels) for r in reviewed]
        pairs = [(i, s) for i, e in enumerate(entries) for s in window_starts(e.frames, window=self.window, stride=stride)]
        pairs += [(len(entries) + k, s) for k, r in enumerate(reviewed) for s in r.starts]
        self.index = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        self.window_weight = np.ones(len(self.index), np.float32)
        source = self.index[:, 0]
        from_reviewed = source >= len(entries)
        from_negatives = np.array([i < len(entries) and entries[i].negative for i in source], bool)
        from_copies = np.array([i < len(entries) and entries[i].copy > 0 for i in source], bool)
        self.annotated_windows = np.flatnonzero(~from_negatives & ~from_reviewed)
        self.negative_windows = np.flatnonzero(from_negatives)
        self.reviewed_windows = np.flatnonzero(from_reviewed)  # in every epoch
        self.n_annotated = int(
            (~from_negatives & ~from_copies & ~from_reviewed).sum()
        )  # windows of an epoch from annotated audio
        self.silent_windows = np.array(  # windows without a positive frame: where hard negatives are looked for
            [
                not r and not self.labels[i][s : s + self.window].any()
                for (i, s), r in zip(self.index, from_reviewed, strict=True)
            ],
            bool,
        ).reshape(-1)
        self.order = np.arange(len(self.index))
        self.shift = np.zeros(len(self.index), np.int64)
        n_negative = len(self.negative_windows)
        if self.n_annotated:
            n_negative = min(n_negative, int(round(negative_ratio * self.n_annotated)))
        self.n_negative = n_negative
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if not self.shuffle:
            return
        rng = np.random.default_rng([self.seed, epoch])
        negatives = rng.choice(self.negative_windows, self.n_negative, replace=False)
        annotated = self.annotated_windows
        if len(annotated) > self.n_annotated:  # augmented copies: a draw from the recordings and their copies
            annotated = rng.choice(annotated, self.n_annotated, replace=False)
        self.order = rng.permutation(np.concatenate([annotated, negatives, self.reviewed_windows]))
        if self.shift_frames:
            self.shift = rng.integers(-self.shift_frames, self.shift_frames + 1, len(self.index))

    def __len__(self) -> int:
        return int(np.ceil(len(self.order) / self.batch_size))

    def read(self, picks: np.ndarray, *, shifted: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Windows (normalised), labels and weights of the index rows ``picks``, moved by
        the epoch's shifts unless ``shifted`` is False."""
        x = np.zeros((len(picks), self.window, self.card.features.n_features), np.float32)
        y = np.zeros((len(picks), self.window), np.float32)
        w = np.zeros((len(picks), self.window), np.float32)
        for k, pick in enumerate(picks):
            i, start = self.index[pick]
            if shifted:
                start = int(np.clip(start + self.shift[pick], 0, max(self.frames[i] - self.window, 0)))
            rows = self.card.normalise(self.rows[i].read(start, start + self.window))
            labels = self.labels[i][start : start + self.window]
            x[k] = pad_window(rows, window=self.window)
            y[k, : len(labels)] = labels
            if self.frame_weights[i] is None:
                w[k, : len(labels)] = np.where(labels > 0, self.positive_weight, 1.0) * self.window_weight[pick]
            else:  # a reviewed recording: only the decided frames weigh, each alike (no class weight)
                w[k, : len(labels)] = self.frame_weights[i][start : start + self.window]
        return x, y, w

    def windows(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, y, w = self.read(self.order[batch * self.batch_size : (batch + 1) * self.batch_size])
        if self.shuffle and (self.time_mask_frames or self.feature_mask_columns):
            mask_windows(
                x,
                np.random.default_rng([self.seed, self.epoch, batch, 2]),
                frames=self.time_mask_frames,
                columns=self.feature_mask_columns,
                n_mfcc=self.card.features.n_mfcc,
            )
        return x, y, w

    def __getitem__(self, batch: int):
        x, y, w = self.windows(batch)
        return as_inputs(x, n_mfcc=self.card.features.n_mfcc), y[..., None], w

    def on_epoch_end(self) -> None:
        pass  # the epoch's order is set by EpochOrder, which knows the epoch number


def mask_windows(x: np.ndarray, rng: np.random.Generator, *, frames: int, columns: int, n_mfcc: int) -> None:
    """SpecAugment-style masking, in place, of normalised windows ``(b, window, features)``:
    half of them get a run of up to ``frames`` frames set to 0 (the training mean), half
    a band of up to ``columns`` MFCC and the same deltas. Labels are left as they are:
    a masked target is still the target, heard less well."""
    window = x.shape[1]
    for k in range(len(x)):
        if frames and rng.random() < 0.5:
            width = int(rng.integers(1, min(frames, window) + 1))
            start = int(rng.integers(0, window - width + 1))
            x[k, start : start + width] = 0.0
        if columns and rng.random() < 0.5:
            width = int(rng.integers(1, min(columns, n_mfcc) + 1))
            start = int(rng.integers(0, n_mfcc - width + 1))
            x[k, :, start : start + width] = 0.0
            x[k, :, n_mfcc + start : n_mfcc + start + width] = 0.0


class EpochOrder(keras.callbacks.Callback):
    def __init__(self, batches: WindowBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)


def file_probabilities(dataset: Dataset, entry: Entry, card: ModelCard, predict) -> np.ndarray:
    rows = dataset.feature_rows(entry)
    chunks = (rows.read(s, s + 20_000) for s in range(0, len(rows), 20_000))
    return frame_probabilities(chunks, card, predict)


class Validation(keras.callbacks.Callback):
    """At each epoch end: re-estimate the BatchNorm statistics on training windows, then
    score the validation files exactly as detect would see them (overlapping windows,
    inference mode): weighted per-frame cross-entropy ``val_loss`` and frame ``val_ap``.
    The probabilities of the epoch with the lowest ``val_loss`` are kept (``best``), so
    tuning after training need not predict the validation files again."""

    def __init__(self, train: WindowBatches, dataset: Dataset, val: list[Entry], card: ModelCard, positive_weight: float):
        super().__init__()
        self.train, self.dataset, self.val, self.card = train, dataset, val, card
        self.positive_weight = positive_weight
        self.labels = [dataset.labels(e) for e in val]
        self.best: tuple[int, float, list[np.ndarray]] | None = None  # (epoch, val_loss, probabilities)

    def recalibrate(self) -> None:
        n = min(len(self.train), max(1, RECALIBRATION_WINDOWS // self.train.batch_size))
        recalibrate_batchnorm(self.model, (self.train[b][0] for b in range(n)))

    def probabilities(self) -> list[np.ndarray]:
        predict = predict_fn(self.model, n_mfcc=self.card.features.n_mfcc)
        return [file_probabilities(self.dataset, e, self.card, predict) for e in self.val]

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss", 0.0)
        if not np.isfinite(loss):
            raise SoundnetError(f"training diverged in epoch {epoch + 1} (loss {loss}): lower training.learning_rate")
        self.recalibrate()
        if not self.val:  # the final network of a cross-validation: nothing held out
            return
        probs = self.probabilities()
        if not all(np.isfinite(p).all() for p in probs):
            raise SoundnetError(f"training diverged in epoch {epoch + 1} (NaN probabilities): lower training.learning_rate")
        y = np.concatenate(self.labels).astype(np.float64)
        p = np.clip(np.concatenate(probs).astype(np.float64), 1e-7, 1 - 1e-7)
        w = np.where(y > 0, self.positive_weight, 1.0)
        logs["val_loss"] = float(np.mean(-w * (y * np.log(p) + (1 - y) * np.log(1 - p))))
        if self.best is None or logs["val_loss"] < self.best[1]:
            self.best = (epoch, logs["val_loss"], probs)
        ap = frame_scores(self.labels, probs).average_precision
        logs["val_ap"] = float("nan") if ap is None else ap


class HardNegatives(keras.callbacks.Callback):
    """Hard-negative mining: after each epoch (BatchNorm statistics already re-estimated
    by :class:`Validation`), score a seeded sample of the training windows that hold no
    target frame, ``--negatives`` recordings first, and give the windows where the
    network fires (a probability >= 0.5) ``weight`` in the next epochs, until a later
    look finds them quiet. The weights are saved with each epoch (``hard_negatives.npy``)
    so that a resumed training goes on with them."""

    FILE = "hard_negatives.npy"

    def __init__(self, batches: WindowBatches, folder: Path, *, weight: float, windows: int, seed: int):
        super().__init__()
        self.batches, self.folder, self.weight, self.windows, self.seed = batches, folder, weight, windows, seed
        saved = folder / self.FILE
        if saved.is_file():
            weights = np.load(saved)
            if weights.shape == batches.window_weight.shape:
                batches.window_weight[:] = weights

    def candidates(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch, 1])
        silent = np.flatnonzero(self.batches.silent_windows)
        negative = np.intersect1d(silent, self.batches.negative_windows)
        other = np.setdiff1d(silent, negative)
        first = rng.choice(negative, min(len(negative), self.windows), replace=False)
        rest = rng.choice(other, min(len(other), self.windows - len(first)), replace=False)
        return np.sort(np.concatenate([first, rest]))

    def on_epoch_end(self, epoch, logs=None):
        picks = self.candidates(epoch)
        if not len(picks):
            return
        predict = predict_fn(self.model, n_mfcc=self.batches.card.features.n_mfcc)
        fired = np.zeros(len(picks), bool)
        for start in range(0, len(picks), 256):
            x, _, w = self.batches.read(picks[start : start + 256], shifted=False)
            p = predict(x)
            fired[start : start + 256] = ((p >= 0.5) & (w > 0)).any(axis=1)
        self.batches.window_weight[picks] = np.where(fired, self.weight, 1.0)
        save_npy(self.folder / self.FILE, self.batches.window_weight)
        if logs is not None:
            logs["hard_negatives"] = float(fired.mean())
        log.debug("epoch %d: the network fires on %d of %d negative windows", epoch + 1, fired.sum(), len(picks))


class Checkpoint(keras.callbacks.Callback):
    """Early stopping on ``val_loss`` that survives ``kill -9``.

    At each epoch end it keeps the best weights (``best-E.weights.h5``), the last
    complete state with the optimizer (``last.keras``), then a small ``progress.json``
    (epochs done, best loss, epoch and weights file, epochs without improvement) that
    commits the epoch: each file is written whole before it replaces the previous one,
    and a kill between them leaves the previous epoch's record pointing at files that
    still hold it. ``--resume`` reloads all three and carries on; at the end of
    training the best weights are restored.

    ``first`` (1-based) is the earliest epoch that counts: before it nothing is kept as
    best and no epoch counts against ``patience``, so a validation set that is worst
    after the first epoch or two (a held-out source unlike the training ones) cannot
    stop the training there and ship an untrained network.
    """

    def __init__(self, folder: Path, *, patience: int, progress: dict | None = None, monitor: str = "val_loss", first: int = 1):
        super().__init__()
        self.folder, self.patience, self.monitor, self.first = folder, patience, monitor, first
        self.progress = progress or {"epochs_done": 0, "best_loss": None, "best_epoch": None, "best_file": None, "wait": 0}
        if "best_file" not in self.progress:  # written by soundnet 0.1.0 before per-epoch best files
            self.progress["best_file"] = "best.weights.h5" if self.progress.get("best_epoch") is not None else None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        loss = None if value is None else (-value if self.monitor == "val_ap" else value)  # lower is better
        p = dict(self.progress)
        if epoch + 1 < self.first:
            pass  # not yet a candidate, and no epoch lost
        elif loss is not None and np.isfinite(loss) and (p["best_loss"] is None or loss < p["best_loss"]):
            p.update(best_loss=float(loss), best_epoch=epoch, best_file=f"best-{epoch + 1}.weights.h5", wait=0)
            _save_whole(self.folder / p["best_file"], self.model.save_weights)
        else:
            p["wait"] += 1
            if p["wait"] >= self.patience:
                log.info("no better %s for %d epochs: stopping", self.monitor, self.patience)
                self.model.stop_training = True
        _save_whole(self.folder / LAST_STATE, self.model.save)
        p["epochs_done"] = epoch + 1
        write_json(self.folder / PROGRESS, p)  # the epoch is committed here
        self.progress = p
        for stale in self.folder.glob("best-*.weights.h5"):
            if stale.name != p["best_file"]:
                stale.unlink()

    def on_train_end(self, logs=None):
        best = self.progress.get("best_file")
        if best:
            self.model.load_weights(self.folder / best)
            log.info(
                "kept the weights of epoch %d (%s %.4f)",
                self.progress["best_epoch"] + 1,
                self.monitor,
                abs(self.progress["best_loss"]),
            )


LAST_STATE = "last.keras"
PROGRESS = "progress.json"


def _save_whole(path: Path, save) -> None:
    """Save with Keras to a temporary name (which keeps the real suffix Keras needs), then rename.

    A ``.weights.h5`` file is written by h5py, which on a full disk leaves objects that
    crash the interpreter at exit: room for it (three times the weights, and 1 MiB) is
    checked first. A ``.keras`` file is written through Python's zipfile and fails cleanly.
    """
    if path.suffix == ".h5":
        ensure_room(path, 3 * sum(w.nbytes for w in save.__self__.get_weights()) + 2**20)
    with atomic_path(path) as tmp:
        save(tmp)


def _truncate_history(path: Path, epochs: int) -> None:
    """Keep the header and the first ``epochs`` rows (a kill may have left one more)."""
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        write_text(path, "".join(lines[: epochs + 1]))


class ProgressLog(keras.callbacks.Callback):
    def __init__(self, epochs: int):
        super().__init__()
        self.epochs, self.started = epochs, time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        log.info(
            "epoch %d/%d: loss %.4f  val_loss %.4f  val_ap %.3f  (%.1f s)",
            epoch + 1,
            self.epochs,
            logs.get("loss", float("nan")),
            logs.get("val_loss", float("nan")),
            logs.get("val_ap", float("nan")),
            time.monotonic() - self.started,
        )


@dataclass(frozen=True)
class TrainResult:
    run: Path
    card: ModelCard
    epochs: int


def _positive_weight(entries: list[Entry], cap: float) -> float:
    positives = sum(e.positive_frames for e in entries)
    frames = sum(e.frames for e in entries)
    if positives == 0:
        raise SoundnetError("the training files hold no frame of the target sound: nothing to learn")
    return float(min(max((frames - positives) / positives, 1.0), cap))


def train(
    dataset_dir: Path,
    *,
    out: Path,
    config: Config | None = None,
    resume: bool = False,
    tensorboard: Path | None = None,
    reviewed: Path | None = None,
    audio: Path | None = None,
    from_run: Path | None = None,
) -> TrainResult:
    """Train the network on a dataset and write the run folder ``out``.

    Parameters
    ----------
    dataset_dir : Path
        A folder written by :func:`soundnet.extract`.
    out : Path
        The run folder to write. It may be missing, empty, or an earlier soundnet run
        (replaced when training succeeds); anything else, or a folder holding the
        dataset, is refused before any work.
    config : Config or None
        Model, training and post-processing settings. The feature settings come from
        the dataset; a config whose feature settings differ is refused.
    resume : bool
        Continue ``out``.partial from its last completed epoch.
    tensorboard : Path or None
        Write TensorBoard logs (loss, val_loss, val_ap per epoch) to this folder.
    reviewed : Path or None
        A reviewed table (``soundnet review``): its accepted detections train as target
        events, its rejected ones as negatives (hard negatives: the detector's false
        alarms), skipped ones are ignored (:mod:`soundnet.review_training`). Needs ``audio``.
    audio : Path or None
        The folder the reviewed table's file names are relative to.
    from_run : Path or None
        Fine-tune this run: start from its weights, normalisation statistics and network
        sizes (the config's model section is not used) instead of training anew. Its
        feature config and target must be the dataset's.

    Returns
    -------
    TrainResult
        The run folder, its card (tuned post-processing, validation figures) and the
        number of epochs run.
    """
    from soundnet.backend import keep_freed_memory

    keep_freed_memory()
    config = config or Config()
    dataset = Dataset.open(dataset_dir)
    if config.features != dataset.feature_config and config.features != type(config.features)():
        raise SoundnetError(f"{dataset_dir}: the dataset's feature config differs from the config given; re-extract it")
    try:
        check_taps(config.model, dataset.feature_config)
    except SoundnetError as error:
        raise SoundnetError(f"{dataset_dir}: {error}") from None
    if (reviewed is None) != (audio is None):
        raise UsageError("a reviewed table needs the folder of its audio: give both reviewed and audio (--reviewed, --audio)")
    base = _base_run(from_run, dataset) if from_run is not None else None
    if base is not None:
        config = dataclasses.replace(config, model=base.model)
    out = Path(out)
    keep = [dataset.root, *(Path(p) for p in (reviewed, audio, from_run) if p is not None)]
    check_run_destination(out, keep=keep)
    if tensorboard is not None and holds(out, Path(tensorboard)):
        raise SoundnetError(f"{tensorboard}: inside --out {out}, which a finished training replaces: write the logs elsewhere")
    inputs = {
        "reviewed": None if reviewed is None else file_digest(Path(reviewed)),
        "from": None if from_run is None else str(Path(from_run).resolve()),
    }
    partial = _work_folder(out, config, resume=resume, inputs=inputs)
    try:
        with _run_log(partial / LOG_FILE):
            review = None
            if reviewed is not None:
                review = load_reviewed(
                    reviewed,
                    audio,
                    folder=partial / REVIEWED_FOLDER,
                    config=dataset.feature_config,
                    window=config.model.window,
                    stride=config.training.stride,
                )
            if config.training.folds >= 2:
                model, card, epochs = _cross_validated(
                    dataset,
                    config,
                    partial,
                    resume=resume,
                    tensorboard=tensorboard,
                    base=base,
                    base_run=from_run,
                    reviewed=review,
                )
            else:
                plan = _plan(dataset, config, base=base, base_run=from_run, reviewed=review)
                model, validation, checkpoint = _fit(plan, partial, resume=resume, tensorboard=tensorboard)
                epochs = checkpoint.progress["epochs_done"]
                tuned, frames, calibration = _tune(
                    dataset, plan.val_entries, _kept_probabilities(validation, checkpoint), plan.config
                )
                card = _final_card(plan, tuned, frames, calibration, epochs=epochs, split=_split_json(plan))
            card = _write_run_files(partial, model, card)
    except BaseException:
        if not _has_progress(partial):  # refused or stopped before any epoch was done: nothing to resume
            shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_run(partial, out)
    return TrainResult(out, card, epochs)


FOLDS_FOLDER = "folds"  # in RUN.partial: one folder per fold of a cross-validation, removed at the end
HELD_OUT = "held_out.npz"  # in a fold's folder: its validation files' probabilities (the fold is done)
FOLD_RECORD = "fold.json"


def _has_progress(partial: Path) -> bool:
    """Whether an interrupted training in ``partial`` has a completed epoch to resume from."""
    return (partial / PROGRESS).is_file() or any((partial / FOLDS_FOLDER).glob(f"fold-*/{PROGRESS}"))


def _cross_validated(
    dataset: Dataset,
    config: Config,
    partial: Path,
    *,
    resume: bool,
    tensorboard: Path | None,
    base: ModelCard | None,
    base_run: Path | None,
    reviewed: ReviewedData | None,
) -> tuple[keras.Model, ModelCard, int]:
    """K-fold cross-validation over the groups, then the network trained on every file.

    Each fold trains with early stopping on its held-out groups and leaves their
    probabilities at its kept epoch (``folds/fold-K/held_out.npz``, which also marks the
    fold done for ``resume``). The post-processing and the calibration are tuned on all
    of them pooled: every file is scored by a network that never heard its group. The
    final network trains on every file for the median kept epoch (at least
    ``min_epochs``), with nothing held out, so it is the last epoch's weights.
    """
    t = config.training
    _check_window(dataset, config)
    folds = fold_files(dataset.entries, folds=t.folds, seed=t.seed)
    probabilities: dict[str, np.ndarray] = {}
    records = []
    for k, (train_entries, val_entries, split) in enumerate(folds, 1):
        folder = partial / FOLDS_FOLDER / f"fold-{k}"
        if resume and (folder / HELD_OUT).is_file():
            with np.load(folder / HELD_OUT) as saved:
                probabilities.update({e.id: saved[e.id] for e in val_entries})
            records.append(read_json(folder / FOLD_RECORD))
            log.info("fold %d of %d: done before, kept epoch %d", k, len(folds), records[-1]["kept_epoch"])
            continue
        folder.mkdir(parents=True, exist_ok=True)
        log.info(
            "fold %d of %d: %d validation files (%d groups), %d training files",
            k, len(folds), len(val_entries), split.validation_groups, sum(not e.copy for e in train_entries),
        )  # fmt: skip
        keras.utils.set_random_seed(t.seed + k)
        plan = _plan_for(dataset, config, train_entries, val_entries, split, base=base, base_run=base_run, reviewed=reviewed)
        _, validation, checkpoint = _fit(plan, folder, resume=resume and (folder / PROGRESS).is_file(), tensorboard=None)
        held = dict(zip((e.id for e in val_entries), _kept_probabilities(validation, checkpoint), strict=True))
        progress = checkpoint.progress
        record = {
            "fold": k,
            "kept_epoch": 1 + (progress["best_epoch"] if progress["best_epoch"] is not None else progress["epochs_done"] - 1),
            "epochs_run": progress["epochs_done"],
            "best_" + t.monitor: None if progress["best_loss"] is None else abs(progress["best_loss"]),
            "validation_groups": split.validation_groups,
            "validation_files": len(val_entries),
            "negative_files": sum(e.negative for e in val_entries),
        }
        write_json(folder / FOLD_RECORD, record)
        with atomic_path(folder / HELD_OUT) as tmp, open(tmp, "wb") as f:
            np.savez(f, **held)  # written last: the fold is done
        probabilities.update(held)
        records.append(record)
        for name in (LAST_STATE, HardNegatives.FILE, *(p.name for p in folder.glob("best-*.weights.h5"))):
            (folder / name).unlink(missing_ok=True)
    epochs = max(int(np.median([r["kept_epoch"] for r in records]) + 0.5), min(t.min_epochs, t.epochs), 1)
    originals = [e for e in dataset.entries if not e.copy]
    everything = Split(list(range(len(originals))), [], "group", len({e.group or e.id for e in originals}), 0)
    plan = _plan_for(dataset, config, list(dataset.entries), [], everything, base=base, base_run=base_run, reviewed=reviewed)
    log.info("cross-validation: kept epochs %s; training on every file for %d epochs", [r["kept_epoch"] for r in records], epochs)
    keras.utils.set_random_seed(t.seed)
    model, _, _ = _fit(plan, partial, resume=resume and (partial / PROGRESS).is_file(), tensorboard=tensorboard, epochs=epochs)
    val_entries = [e for _, val, _ in folds for e in val]
    fold_of = {e.id: k for k, (_, val, _) in enumerate(folds, 1) for e in val}
    tuned, frames, calibration = _tune(dataset, val_entries, [probabilities[e.id] for e in val_entries], config, folds=fold_of)
    split = {
        "by": "group",
        "groups": dataset.groups_by,
        "folds": len(folds),
        "fold_groups": [r["validation_groups"] for r in records],
        "validation_files": len(val_entries),
        "negative_files": sum(e.negative for e in val_entries),
        "figures": f"out-of-fold: each file scored by the network of the fold that held its group out, at that fold's kept "
        f"epoch; the shipped network trained on every file for {epochs} epochs (the median kept epoch)",
    }
    card = _final_card(plan, tuned, frames, calibration, epochs=epochs, split=split, val_entries=val_entries)
    card = dataclasses.replace(card, training={**card.training, "folds": records})
    frame_seconds = dataset.feature_config.frame_seconds
    oof = OutOfFold(
        {e.source: probabilities[e.id] for e in val_entries},
        {e.source: dataset.events(e) for e in val_entries},
        {e.source: e.frames * frame_seconds for e in val_entries},
        dataset.target,
        {e.source: fold_of[e.id] for e in val_entries},
    )
    write_out_of_fold(partial, oof)  # what the post-processing was tuned on: soundnet tune RUN re-tunes on it
    shutil.rmtree(partial / FOLDS_FOLDER, ignore_errors=True)
    return model, card, epochs


STATE = "state.json"


@contextlib.contextmanager
def _run_log(path: Path):
    """The run's ``train.log`` gets soundnet's INFO messages whatever the caller's logging
    shows: where the soundnet logger is quieter than INFO (a notebook's default), it is
    opened to INFO for the file alone, and everything else still sees only what it saw."""
    logger = logging.getLogger("soundnet")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    shown = logger.getEffectiveLevel()
    saved = logger.level, logger.propagate, [(h, h.level) for h in logger.handlers]
    forward = None
    if shown > logging.INFO:
        for other, level in saved[2]:
            other.setLevel(max(level, shown))
        if logger.propagate:  # what the parent's handlers saw before, and no more
            forward = _Forward(logger.parent, level=shown)
            logger.addHandler(forward)
            logger.propagate = False
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        if forward is not None:
            logger.removeHandler(forward)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        for other, level in saved[2]:
            other.setLevel(level)


class _Forward(logging.Handler):
    """Hands records at or above ``level`` to another logger's handlers."""

    def __init__(self, target: logging.Logger, *, level: int):
        super().__init__(level)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)


def _training_state(config: Config) -> dict:
    """What a resumed training must share with the interrupted one: the config, less the
    augmentation section (extract's business: the dataset is already made)."""
    return {key: value for key, value in to_dict(config).items() if key != "augmentation"}


def _work_folder(out: Path, config: Config, *, resume: bool, inputs: dict | None = None) -> Path:
    """``out``.partial, made anew, or checked for resuming with the same config and
    ``inputs`` (the reviewed table's checksum, the run fine-tuned)."""
    partial = out.with_name(out.name + ".partial")
    inputs = inputs or {"reviewed": None, "from": None}
    if resume:
        if not ((partial / STATE).is_file() and _has_progress(partial)):
            raise SoundnetError(f"{partial}: nothing to resume (no interrupted training there)")
        state = read_json(partial / STATE)
        if state.get("config") != _training_state(config):
            raise SoundnetError(f"{partial}: was started with another config; resume with the same options")
        if state.get("inputs", {"reviewed": None, "from": None}) != inputs:
            raise SoundnetError(f"{partial}: was started with another reviewed table or --from run; resume with the same ones")
    elif partial.exists():
        if not (partial / STATE).is_file() and any(partial.iterdir()):
            raise SoundnetError(f"{partial}: exists and is not an interrupted soundnet training: move it away")
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    write_json(partial / STATE, {"config": _training_state(config), "inputs": inputs})
    return partial


@dataclass(frozen=True)
class _Plan:
    """What a training works on: the data split, its statistics, the class weight."""

    dataset: Dataset
    config: Config
    train_entries: list[Entry]
    val_entries: list[Entry]
    card: ModelCard  # the card before tuning: normalisation statistics, config post-processing
    positive_weight: float
    split: Split
    base: ModelCard | None = None  # the card of the run fine-tuned (--from)
    base_run: Path | None = None
    reviewed: ReviewedData | None = None


REVIEWED_FOLDER = "reviewed"  # in RUN.partial: the reviewed recordings' features, removed at the end


def _base_run(run: Path, dataset: Dataset) -> ModelCard:
    """The card of the run to fine-tune, checked against the dataset."""
    card = read_card(Path(run))
    if card.features != dataset.feature_config:
        raise SoundnetError(f"{run}: its feature config differs from the dataset's ({dataset.root}): cannot fine-tune it on it")
    if card.target != dataset.target:
        raise SoundnetError(f"{run}: detects {card.target!r}, the dataset's target is {dataset.target!r}")
    verify_network_files(Path(run), card)
    return card


def _plan(
    dataset: Dataset,
    config: Config,
    *,
    base: ModelCard | None = None,
    base_run: Path | None = None,
    reviewed: ReviewedData | None = None,
) -> _Plan:
    """Seed everything, split training and validation files, standardise (or take the
    fine-tuned run's statistics), weigh classes."""
    t = config.training
    keras.utils.set_random_seed(t.seed)
    _check_window(dataset, config)
    train_entries, val_entries, split = split_files(dataset.entries, fraction=t.validation_fraction, seed=t.seed)
    if not val_entries:
        log.warning("only one file: validating on the training file itself (add files for an honest validation)")
        val_entries = train_entries
    elif split.by == "file":
        log.warning(
            "every file is in one group: validation holds out files, and its figures will flatter the detector "
            "on sources it never heard (give groups: a group column or --group-pattern at extract)"
        )
    log.info(
        "%d training files (%d augmented copies more), %d validation files (%s), target %r",
        sum(not e.copy for e in train_entries),
        sum(e.copy > 0 for e in train_entries),
        len(val_entries),
        f"{split.validation_groups} of {split.train_groups + split.validation_groups} groups held out"
        if split.by == "group"
        else "held out by file",
        dataset.target,
    )
    return _plan_for(dataset, config, train_entries, val_entries, split, base=base, base_run=base_run, reviewed=reviewed)


def _check_window(dataset: Dataset, config: Config) -> None:
    longest = max(e.frames for e in dataset.entries if not e.copy)
    if config.model.window > longest:
        raise SoundnetError(
            f"model.window ({config.model.window} frames) is longer than every file of {dataset.root} "
            f"(the longest has {longest} frames): no window would hold real audio; use a window of at most {longest}"
        )


def _plan_for(
    dataset: Dataset,
    config: Config,
    train_entries: list[Entry],
    val_entries: list[Entry],
    split: Split,
    *,
    base: ModelCard | None,
    base_run: Path | None,
    reviewed: ReviewedData | None,
) -> _Plan:
    """The plan of a training on ``train_entries``: their statistics (or the fine-tuned
    run's) and class weight."""
    t = config.training
    originals = [e for e in train_entries if not e.copy]  # the statistics of real audio
    # a fine-tuned network keeps the statistics its weights were trained with
    mean, std = (base.mean, base.std) if base is not None else feature_statistics(dataset, originals)
    card = ModelCard(dataset.target, dataset.feature_config, config.model, mean, std, config.postprocessing)
    positive_weight = _positive_weight([e for e in originals if not e.negative], t.max_positive_weight)
    return _Plan(dataset, config, train_entries, val_entries, card, positive_weight, split, base, base_run, reviewed)


def _fit(plan: _Plan, partial: Path, *, resume: bool, tensorboard: Path | None, epochs: int | None = None):
    """Fit the network with early stopping (or resume it); returns the model holding the
    best epoch's weights, the validation callback and the checkpoint. With ``epochs``
    (nothing held out) it trains that many epochs and keeps the last."""
    t = plan.config.training
    patience = t.patience if epochs is None else epochs + 1
    epochs = t.epochs if epochs is None else epochs
    batches = WindowBatches(
        plan.dataset,
        plan.train_entries,
        plan.card,
        stride=t.stride,
        batch_size=t.batch_size,
        positive_weight=plan.positive_weight,
        shuffle=True,
        seed=t.seed,
        shift_frames=t.shift_frames,
        negative_ratio=t.negative_ratio,
        time_mask_frames=t.time_mask_frames,
        feature_mask_columns=t.feature_mask_columns,
        reviewed=plan.reviewed.files if plan.reviewed is not None else (),
        reviewed_weight=t.reviewed_weight,
    )
    from soundnet.backend import compute_devices

    log.info("training on %s", ", ".join(compute_devices()))
    log.info(
        "%d training windows per epoch (%d from --negatives recordings, %d around reviewed detections), positive frames weigh %.2f",
        len(batches.order),
        batches.n_negative,
        len(batches.reviewed_windows),
        plan.positive_weight,
    )
    progress = read_json(partial / PROGRESS) if resume else None
    if progress is not None:
        try:
            model = keras.saving.load_model(partial / LAST_STATE, safe_mode=True)  # weights and optimizer state
        except Exception as error:  # a damaged zip or h5 surfaces as many different errors
            raise SoundnetError(
                f"{partial / LAST_STATE}: cannot resume from this checkpoint ({type(error).__name__}); train again without --resume"
            ) from None
        _truncate_history(partial / HISTORY_FILE, progress["epochs_done"])
        log.info("resuming after epoch %d", progress["epochs_done"])
    else:
        model = build_model(plan.config.model, n_mfcc=plan.dataset.feature_config.n_mfcc)
        if plan.base is not None:  # fine-tuning: the weights of the run given
            model.set_weights(load_keras_model(plan.base_run, plan.base).get_weights())
            log.info("fine-tuning %s", plan.base_run)
        averaged = {"use_ema": True, "ema_momentum": t.ema_momentum} if t.ema_momentum > 0 else {}
        optimizer = keras.optimizers.RMSprop(t.learning_rate, **averaged)
        model.compile(optimizer=optimizer, loss="binary_crossentropy")
    validation = Validation(batches, plan.dataset, plan.val_entries, plan.card, plan.positive_weight)
    checkpoint = Checkpoint(
        partial, patience=patience, progress=progress, monitor=t.monitor, first=max(1, min(t.min_epochs, epochs))
    )
    mining = []
    if t.hard_negative_weight > 1:
        if not resume:
            (partial / HardNegatives.FILE).unlink(missing_ok=True)
        mining = [HardNegatives(batches, partial, weight=t.hard_negative_weight, windows=t.hard_negative_windows, seed=t.seed)]
    # Keras' own weight averaging: at each epoch's end the averaged weights are swapped in
    # (so validation, mining and checkpoints see them) and out again at the next start.
    averaging = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if t.ema_momentum > 0 else []
    callbacks = [
        EpochOrder(batches),
        *averaging,
        validation,
        *mining,
        ProgressLog(epochs),
        keras.callbacks.CSVLogger(str(partial / HISTORY_FILE), append=resume),
        checkpoint,
    ]
    if tensorboard is not None:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard), write_graph=False))
    initial = checkpoint.progress["epochs_done"]
    stopped = initial > 0 and checkpoint.progress["wait"] >= patience
    if initial < epochs and not stopped:
        model.fit(batches, epochs=epochs, initial_epoch=initial, callbacks=callbacks, verbose=0)
    else:  # every epoch was done before the interruption: finish the run
        validation.set_model(model)
        checkpoint.set_model(model)
        checkpoint.on_train_end()
    return model, validation, checkpoint


def _kept_probabilities(validation: Validation, checkpoint: Checkpoint) -> list[np.ndarray]:
    """The validation files' probabilities by the kept weights (the best epoch's,
    BatchNorm statistics included): reused when this process computed them."""
    if validation.best is not None and validation.best[0] == checkpoint.progress["best_epoch"]:
        return validation.best[2]
    return validation.probabilities()


def _tune(
    dataset: Dataset, val_entries: list[Entry], probs: list[np.ndarray], config: Config, *, folds: dict[str, int] | None = None
):
    """Search the post-processing on the validation files' probabilities (as detect
    sees them), and fit the calibration of the confidence of the events it finds there.
    ``folds``: each validation file's fold (by entry id) in a cross-validation."""
    names = [e.id for e in val_entries]
    by_name = dict(zip(names, probs, strict=True))
    reference = {e.id: dataset.events(e) for e in val_entries}
    durations = {e.id: e.frames * dataset.feature_config.frame_seconds for e in val_entries}
    frame_seconds = dataset.feature_config.frame_seconds
    tuned = search_postprocessing(
        by_name, reference, label=dataset.target, frame_seconds=frame_seconds, durations=durations, folds=folds
    )
    calibration, note = fit_event_calibration(
        by_name,
        reference,
        post=tuned.post,
        label=dataset.target,
        frame_seconds=frame_seconds,
        durations=durations,
        seed=config.training.seed,
    )
    log.info("validation: %s", note)
    frames = frame_scores([dataset.labels(e) for e in val_entries], probs)
    log.info(
        "validation: event F1 %.3f (ER %.3f%s) with %s; plain threshold 0.5: F1 %.3f; frame AP %s",
        tuned.scores.event_onset.f_measure or 0.0,
        tuned.scores.event_onset.error_rate,
        "" if tuned.fold_f1 is None else "; per fold " + ", ".join(f"{f:.3f}" for f in tuned.fold_f1),
        tuned.post,
        tuned.baseline.event_onset.f_measure or 0.0,
        "n/a" if frames.average_precision is None else f"{frames.average_precision:.3f}",
    )
    return tuned, frames, (calibration, note)


def _split_json(plan: _Plan) -> dict:
    return {
        "by": plan.split.by,
        "groups": plan.dataset.groups_by,
        "training_groups": plan.split.train_groups,
        "validation_groups": plan.split.validation_groups,
        "validation_files": len(plan.val_entries),
        "negative_files": sum(e.negative for e in plan.val_entries),
    }


def _final_card(
    plan: _Plan, tuned: TuneResult, frames, calibration, *, epochs: int, split: dict, val_entries: list[Entry] | None = None
) -> ModelCard:
    """The run's card: the plan's card with the tuned post-processing, the calibration
    (``(Calibration or None, what was fitted)``) and the record of validation (per-file
    counts by audio file; ``val_entries`` tuned on, default the plan's; how they were
    split) and training."""
    val_entries = plan.val_entries if val_entries is None else val_entries
    return dataclasses.replace(
        plan.card,
        postprocessing=tuned.post,
        calibration=calibration[0],
        validation={
            "calibration": calibration[1],
            **tuned.criterion_json(),
            **tuned.scores.summary_json(),
            "files": {e.source: tuned.scores.files[e.id].to_json() for e in val_entries},
            "untuned_event_onset": tuned.baseline.event_onset.to_json(),
            "frame": frames.to_json(),
            "split": split,
        },
        training={
            "config": to_dict(plan.config.training),
            "epochs_run": epochs,
            "positive_weight": plan.positive_weight,
            "files": [e.source for e in plan.train_entries if not e.copy],
            "augmented_copies": sum(e.copy > 0 for e in plan.train_entries),
            "negative_files": sum(e.negative for e in plan.train_entries),
            "dataset": str(plan.dataset.root.resolve()),
            "soundnet_version": __version__,
            "reviewed": None if plan.reviewed is None else plan.reviewed.summary_json(),
            "fine_tuned_from": None
            if plan.base is None
            else {"run": str(Path(plan.base_run).resolve()), "model_sha256": plan.base.checksums.get(MODEL_FILE)},
        },
    )


def _write_run_files(partial: Path, model: keras.Model, card: ModelCard) -> ModelCard:
    """Write the network (Keras and LiteRT) and the card sealed with their checksums;
    remove the checkpoints. Returns the sealed card."""
    n_mfcc = card.features.n_mfcc
    final = build_model(card.model, n_mfcc=n_mfcc)  # uncompiled: no optimizer state in the file
    final.set_weights(model.get_weights())
    final.save(partial / MODEL_FILE)
    export_tflite(final, partial / TFLITE_FILE, n_mfcc=n_mfcc)
    card = seal(partial, card)
    write_card(partial, card)
    for name in (STATE, PROGRESS, LAST_STATE, "best.weights.h5", HardNegatives.FILE):
        (partial / name).unlink(missing_ok=True)
    shutil.rmtree(partial / REVIEWED_FOLDER, ignore_errors=True)
    for leftover in (*partial.glob("best-*.weights.h5"), *partial.glob(".tmp-*"), *partial.glob(".part-*")):
        leftover.unlink()
    return card
