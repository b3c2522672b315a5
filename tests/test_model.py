"""The network: the seed's shape and size, the fast form equal to the literal one,
save/load, and the BatchNorm statistics that make inference match training."""

import numpy as np
import pytest

from soundnet.backend import quiet_import_keras

quiet_import_keras()
import keras  # noqa: E402

from soundnet.config import ModelConfig  # noqa: E402
from soundnet.model import (  # noqa: E402
    as_inputs,
    build_literal_model,
    build_model,
    copy_weights,
    predict_fn,
    recalibrate_batchnorm,
)


def windows(n=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 100, 129)).astype(np.float32)


def test_default_network_is_the_seeds():
    model = build_model()
    assert model.count_params() == 38_788
    assert [t.name.split(":")[0] for t in model.inputs] == ["mfcc", "delta", "zcr"]
    assert tuple(model.output.shape) == (None, 100, 1)
    assert model.get_layer("frame_conv").count_params() == 1_088
    assert model.get_layer("conv_bn").count_params() == 256
    assert model.get_layer("lstm").count_params() == 33_024
    assert model.get_layer("aux_dense").count_params() == 4_290
    assert model.get_layer("output").count_params() == 130
    assert tuple(model.get_layer("frame_conv").output.shape) == (None, 100, 49, 64)
    assert tuple(model.get_layer("conv_bn").output.shape) == (None, 100, 64)  # normalised and pooled
    literal = build_literal_model()
    assert tuple(literal.get_layer("conv_bn").output.shape) == (None, 100, 49, 64)
    assert tuple(literal.get_layer("pool_flatten").output.shape) == (None, 100, 64)
    assert model.get_layer("output").get_config()["activation"] == "sigmoid"


def test_fast_form_computes_the_literal_function():
    fast, literal = build_model(), build_literal_model()
    assert literal.count_params() == fast.count_params()
    # BatchNorm with scales of both signs (the pooled max becomes a min where gamma < 0)
    bn = fast.get_layer("conv_bn")
    rng = np.random.default_rng(1)
    bn.set_weights([rng.uniform(-2, 2, 64), rng.normal(0, 0.1, 64), rng.normal(0, 0.1, 64), rng.uniform(0.1, 2, 64)])
    copy_weights(fast, literal)
    x = as_inputs(windows(), n_mfcc=64)
    np.testing.assert_allclose(fast.predict(x, verbose=0), literal.predict(x, verbose=0), atol=1e-6)


def test_fast_form_trains_like_the_literal_one():
    """Same weights, same batch, one training step each: same loss and same new weights
    (training-mode BatchNorm statistics and their gradients included). Dropout is off:
    its random masks would differ between two models."""
    config = ModelConfig(dropout=0.0)
    fast, literal = build_model(config), build_literal_model(config)
    copy_weights(fast, literal)
    x = as_inputs(windows(8, seed=4), n_mfcc=64)
    y = (np.random.default_rng(5).random((8, 100, 1)) > 0.7).astype(np.float32)
    losses = []
    for model in (fast, literal):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
        losses.append(model.train_on_batch(x, y))
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    for layer in fast.layers:
        if layer.weights:
            for a, b in zip(layer.get_weights(), literal.get_layer(layer.name).get_weights(), strict=True):
                np.testing.assert_allclose(a.ravel(), b.ravel(), rtol=1e-4, atol=1e-5, err_msg=layer.name)


def test_sizes_come_from_the_config():
    config = ModelConfig(window=50, filters=8, taps=4, lstm_units=16, aux_units=10)
    model = build_model(config, n_mfcc=20)
    assert tuple(model.output.shape) == (None, 50, 1)
    assert tuple(model.get_layer("conv_bn").output.shape) == (None, 50, 8)
    with pytest.raises(ValueError, match="taps"):
        build_model(ModelConfig(taps=65), n_mfcc=64)


def test_save_and_reload_give_the_same_predictions(tmp_path):
    model = build_model()
    path = tmp_path / "model.keras"
    model.save(path)
    again = keras.saving.load_model(path, compile=False, safe_mode=True)
    x = windows()
    np.testing.assert_allclose(predict_fn(model, n_mfcc=64)(x), predict_fn(again, n_mfcc=64)(x), rtol=1e-6)


def test_recalibrated_batchnorm_holds_the_true_statistics():
    """The seed's hazard: after a few steps with momentum 0.99 the moving variance is
    still near its initial 1.0. Recalibration must set it to the real statistics."""
    model = build_model()
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    x = windows(64, seed=2)
    y = (np.random.default_rng(3).random((64, 100, 1)) > 0.8).astype(np.float32)
    model.fit(as_inputs(x, n_mfcc=64), y, batch_size=16, epochs=1, verbose=0)
    conv = keras.Model(model.inputs, model.get_layer("frame_conv").output)
    out = np.asarray(conv(as_inputs(x, n_mfcc=64), training=False), np.float64).reshape(-1, 64)
    _, _, mean_before, var_before = model.get_layer("conv_bn").get_weights()
    assert np.abs(var_before - out.var(0)).max() > 0.1  # the hazard is real
    used = recalibrate_batchnorm(model, [as_inputs(x[i : i + 16], n_mfcc=64) for i in range(0, 64, 16)])
    assert used == 64
    _, _, mean, var = model.get_layer("conv_bn").get_weights()
    np.testing.assert_allclose(mean, out.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, out.var(0), rtol=5e-3, atol=1e-4)
