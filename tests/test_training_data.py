"""What training feeds the network: epochs with --negatives windows, random window
shifts that keep labels aligned, and hard-negative mining (real Keras, no fitting)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from planted import planted_set

from soundnet.config import Config
from soundnet.dataset import Dataset, extract
from soundnet.run import ModelCard

SR = 16000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("training-data")
    table, _ = planted_set(root / "audio", files=4, seconds=6.0, seed=2)
    noise = root / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        sf.write(str(noise / f"n{k}.wav"), (0.05 * rng.standard_normal(40 * SR)).astype(np.float32), SR)
    extract([root / "audio"], out=root / "ds", annotations=table, negatives=[noise])
    return Dataset.open(root / "ds")


def batches(dataset: Dataset, **options):
    from soundnet.training import WindowBatches

    config = Config()
    mean = np.zeros(config.features.n_features, np.float32)
    card = ModelCard(dataset.target, dataset.feature_config, config.model, mean, mean + 1, config.postprocessing)
    defaults = dict(stride=50, batch_size=8, positive_weight=2.0, shuffle=True, seed=1, shift_frames=25, negative_ratio=0.5)
    return WindowBatches(dataset, list(dataset.entries), card, **{**defaults, **options})


def test_an_epoch_holds_every_annotated_window_and_a_share_of_negatives(dataset):
    b = batches(dataset)
    annotated, negative = len(b.annotated_windows), len(b.negative_windows)
    assert negative > annotated  # 80 s of negatives against 24 s of annotated audio
    assert len(b.order) == annotated + round(0.5 * annotated) and len(b) == int(np.ceil(len(b.order) / 8))
    first = b.order.copy()
    assert set(b.annotated_windows) <= set(first)
    b.set_epoch(1)
    assert len(b.order) == len(first) and not np.array_equal(b.order, first)  # another draw of negatives
    b.set_epoch(0)
    assert np.array_equal(b.order, first)  # a function of the seed and the epoch
    assert len(batches(dataset, negative_ratio=0.0).order) == annotated


def test_shifted_windows_keep_their_labels_aligned(dataset):
    b = batches(dataset)
    shifted = np.flatnonzero(b.shift != 0)
    assert len(shifted) and np.abs(b.shift).max() <= 25
    for pick in shifted[:40]:
        i, start = b.index[pick]
        x, y, _ = b.read(np.array([pick]))
        begin = int(np.clip(start + b.shift[pick], 0, max(b.entries[i].frames - b.window, 0)))
        rows = b.rows[i].read(begin, begin + b.window)
        assert np.allclose(x[0, : len(rows)], rows)  # mean 0, std 1: the raw rows
        assert np.array_equal(y[0, : len(rows)], b.labels[i][begin : begin + b.window])


def _always(model, probability: float):
    """The network's output bias set so that it says ``probability`` everywhere."""
    dense = model.get_layer("output")
    kernel, _ = dense.get_weights()
    dense.set_weights([np.zeros_like(kernel), np.full(1, np.log(probability / (1 - probability)), np.float32)])
    return model


@pytest.mark.parametrize("probability, expected", [(0.99, 3.0), (0.01, 1.0)])
def test_hard_negatives_weigh_more_where_the_network_fires(dataset, tmp_path, probability, expected):
    from soundnet.model import build_model
    from soundnet.training import HardNegatives

    b = batches(dataset)
    mining = HardNegatives(b, tmp_path, weight=3.0, windows=30, seed=0)
    mining.set_model(_always(build_model(Config().model), probability))
    picks = mining.candidates(0)
    assert len(picks) == 30 and b.silent_windows[picks].all()
    assert set(picks) <= set(b.negative_windows)  # --negatives windows first
    logs = {}
    mining.on_epoch_end(0, logs)
    assert np.all(b.window_weight[picks] == expected) and np.all(np.delete(b.window_weight, picks) == 1.0)
    assert logs["hard_negatives"] == (1.0 if expected > 1 else 0.0)
    _, _, w = b.read(picks[:4], shifted=False)
    assert np.all(w == expected)  # all-negative windows: weight 1 x the window's weight
    resumed = batches(dataset)
    HardNegatives(resumed, tmp_path, weight=3.0, windows=30, seed=0)  # a resumed training reloads them
    assert np.array_equal(resumed.window_weight, b.window_weight)


def test_masking_zeroes_runs_of_frames_and_bands_and_keeps_labels(dataset):
    from soundnet.training import mask_windows

    plain = batches(dataset)
    masked = batches(dataset, time_mask_frames=20, feature_mask_columns=8)
    x0, y0, w0 = plain.windows(0)
    x1, y1, w1 = masked.windows(0)
    assert np.array_equal(y0, y1) and np.array_equal(w0, w1)
    changed = x0 != x1
    assert changed.any()
    for k in range(len(x1)):
        zero_frames = np.flatnonzero((x1[k] == 0).all(axis=1) & ~(x0[k] == 0).all(axis=1))
        assert len(zero_frames) <= 20 and (len(zero_frames) == 0 or np.ptp(zero_frames) == len(zero_frames) - 1)
    assert np.array_equal(masked.windows(0)[0], x1)  # a function of the seed, the epoch and the batch
    x = np.ones((50, 100, 129), np.float32)
    mask_windows(x, np.random.default_rng(0), frames=0, columns=8, n_mfcc=64)
    bands = (x == 0).all(axis=1)  # (windows, columns) masked over the whole window
    assert bands[:, 128].sum() == 0 and np.array_equal(bands[:, :64], bands[:, 64:128])
    assert 10 < bands.any(axis=1).sum() < 40 and bands.sum(axis=1).max() <= 16


def test_weight_averaging_ships_other_weights_from_the_same_start(dataset, tmp_path):
    """Keras' EMA of the weights (training.ema_momentum): same seed, same data, same raw
    steps; what is validated and shipped is the average, so it differs from the raw run."""
    import dataclasses

    from soundnet.run import load_keras_model, read_card
    from soundnet.training import train

    weights = {}
    for momentum in (0.0, 0.9):
        base = Config()
        config = dataclasses.replace(
            base, training=dataclasses.replace(base.training, epochs=2, ema_momentum=momentum, validation_fraction=0.25)
        )
        run = tmp_path / f"ema{momentum}"
        train(dataset.root, out=run, config=config)
        card = read_card(run)
        assert json.loads((run / "card.json").read_text())["training"]["config"]["ema_momentum"] == momentum
        weights[momentum] = load_keras_model(run, card).get_weights()
    assert [w.shape for w in weights[0.0]] == [w.shape for w in weights[0.9]]
    assert any(not np.allclose(a, b) for a, b in zip(weights[0.0], weights[0.9], strict=True))


def test_ema_momentum_must_be_below_one():
    from soundnet.config import TrainConfig
    from soundnet.errors import SoundnetError

    with pytest.raises((SoundnetError, ValueError), match="ema_momentum"):
        TrainConfig(ema_momentum=1.0)


class _Stub:
    """The model Checkpoint sees: weights it can save and load, and the stop flag."""

    stop_training = False

    def save_weights(self, path):
        Path(path).write_bytes(b"w")

    def save(self, path):
        Path(path).write_bytes(b"s")

    def get_weights(self):
        return [np.zeros(4, np.float32)]

    def load_weights(self, path):
        self.loaded = path.name


@pytest.mark.parametrize(
    ("first", "kept", "stopped_after"),
    [
        (1, 1, 3),  # the validation set is best after epoch 1: training stops at epoch 3 and keeps epoch 1
        (3, 5, None),  # min_epochs 3: epochs 1-2 neither count nor stop; epoch 5 is the best from epoch 3 on
    ],
)
def test_early_stopping_and_the_kept_epoch_start_at_min_epochs(tmp_path, first, kept, stopped_after):
    from soundnet.training import Checkpoint

    losses = [0.1, 0.5, 0.6, 0.7, 0.4, 0.45]
    checkpoint = Checkpoint(tmp_path, patience=2, first=first)
    model = _Stub()
    checkpoint.set_model(model)
    stopped = None
    for epoch, loss in enumerate(losses):
        checkpoint.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            stopped = epoch + 1
            break
    checkpoint.on_train_end()
    assert (model.loaded, stopped) == (f"best-{kept}.weights.h5", stopped_after)
    assert sorted(p.name for p in tmp_path.glob("best-*")) == [f"best-{kept}.weights.h5"]


def test_min_epochs_is_checked_and_capped_at_epochs():
    from soundnet.config import TrainConfig
    from soundnet.errors import SoundnetError

    with pytest.raises((SoundnetError, ValueError), match="min_epochs"):
        TrainConfig(min_epochs=-1)
    assert TrainConfig(epochs=5, min_epochs=10).min_epochs == 10  # allowed: training then keeps its last epoch
