"""Tests of soundnet.detection's feature pipeline (the network is covered in test_cli)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from soundnet.config import FeatureConfig, ModelConfig, PostConfig
from soundnet.detection import frame_probabilities, prefetched
from soundnet.errors import SoundnetError
from soundnet.features import compute_features
from soundnet.run import ModelCard


def test_prefetched_keeps_order_and_everything():
    assert list(prefetched(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(prefetched(iter([]))) == []


def test_prefetched_raises_the_producers_error_after_its_items():
    def items():
        yield 1
        yield 2
        raise SoundnetError("x.wav: NaN samples")

    got = []
    with pytest.raises(SoundnetError, match="x.wav: NaN samples"):
        for item in prefetched(items()):
            got.append(item)
    assert got == [1, 2]


def test_closing_prefetched_stops_the_producer():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = prefetched(endless(), depth=2)
    assert next(stream) == 0
    stream.close()
    time.sleep(0.3)
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count <= 5
    assert not [t for t in threading.enumerate() if t.name == "soundnet-features"]


def test_digital_silence_gets_probability_zero_whatever_the_network_says():
    config = FeatureConfig()
    y = np.zeros(3 * config.sample_rate, np.float32)
    y[config.sample_rate : 2 * config.sample_rate] = 0.1 * np.random.default_rng(0).standard_normal(config.sample_rate)
    features = compute_features(y, config=config)
    n = config.n_features
    card = ModelCard("beep", config, ModelConfig(), np.zeros(n, np.float32), np.ones(n, np.float32), PostConfig())
    probs = frame_probabilities([features[:150], features[150:]], card, lambda w: np.full(w.shape[:2], 0.9, np.float32))
    assert probs.shape == (len(features),)
    frame = np.arange(len(features)) * config.hop_length
    sound = (frame + config.n_fft // 2 > config.sample_rate) & (frame - config.n_fft // 2 < 2 * config.sample_rate)
    np.testing.assert_allclose(probs[sound], 0.9, rtol=1e-6)
    assert (probs[~sound] == 0).all()
