"""Importing TensorFlow, Keras and LiteRT without their C++ start-up chatter on stderr."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_silenced():
    """Point file descriptor 2 at /dev/null (TensorFlow's C++ logs bypass Python)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def quiet_import_keras() -> None:
    """Import TensorFlow and Keras, and touch the CPU device, with C++ start-up logs
    (CUDA probes on a machine without a GPU) kept off stderr. Python errors still raise."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return
    with stderr_silenced():
        import keras
        import tensorflow as tf

        tf.constant(0.0)
        keras.backend.floatx()
