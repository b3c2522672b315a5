"""soundnet.backend: the devices TensorFlow computes on, and GPU memory taken as needed.
No test needs a GPU: the GPU cases run on TensorFlow's device list replaced by stand-ins."""

from __future__ import annotations

import types

import pytest

from soundnet.backend import _share_gpu_memory, compute_devices, quiet_import_keras

quiet_import_keras()
import tensorflow as tf  # noqa: E402


def test_devices_are_the_gpus_tensorflow_sees_else_the_cpu():
    gpus = tf.config.list_physical_devices("GPU")
    devices = compute_devices()
    if gpus:
        assert [d.split(" ")[0] for d in devices] == [f"GPU:{i}" for i in range(len(gpus))]
    else:
        assert devices == ["CPU"]


@pytest.fixture
def two_gpus(monkeypatch):
    """TensorFlow seeing two GPUs, one of which will not say its name."""
    gpus = [types.SimpleNamespace(name="/physical_device:GPU:0"), types.SimpleNamespace(name="/physical_device:GPU:1")]
    grown = []

    def details(gpu):
        if gpu is gpus[1]:
            raise RuntimeError("no details")
        return {"device_name": "Stand-in A100"}

    def grow(gpu, enable):
        if gpu is gpus[1]:
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        grown.append((gpu.name, enable))

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", details)
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", grow)
    return grown


def test_devices_name_each_gpu(two_gpus):
    assert compute_devices() == ["GPU:0 (Stand-in A100)", "GPU:1"]


def test_gpu_memory_is_taken_as_needed_where_it_still_can_be(two_gpus):
    _share_gpu_memory(tf)  # the second GPU is already initialised: left as it is, no error
    assert two_gpus == [("/physical_device:GPU:0", True)]
