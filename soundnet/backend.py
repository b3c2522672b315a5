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


def keep_freed_memory() -> None:
    """Let glibc's malloc reuse large freed blocks instead of returning them to the OS.

    A training step allocates tensors of tens of MB (the (32, 100, 49, 64) conv output,
    its statistics and gradients); with glibc's defaults each is mmap'ed, zero-filled by
    page faults and unmapped on every step, and the system time rivals the arithmetic.
    Raising the mmap and trim thresholds to 1 GiB before TensorFlow loads makes
    training 1.7-2.8x faster (bench/train_throughput.py --malloc-tuned, BENCHMARKS.md).
    Does nothing where the C library is not glibc.
    """
    set_malloc_thresholds(mmap=1 << 30, trim=1 << 30)


def set_malloc_thresholds(*, mmap: int, trim: int | None = None) -> None:
    """glibc's ``mallopt``: blocks up to ``mmap`` bytes come from the heap, and the heap's
    free top above ``trim`` bytes goes back to the system (None: left as it is). Does
    nothing where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, mmap)
    if trim is not None:
        mallopt(m_trim_threshold, trim)


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

        _share_gpu_memory(tf)
        tf.constant(0.0)
        keras.backend.floatx()


def _share_gpu_memory(tf) -> None:
    """Let TensorFlow take GPU memory as it needs it rather than all of it at start-up
    (its default), so a detect or a training run leaves room for others on the card.
    Only possible before the first GPU op; after it, the setting stays as it is."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass


def compute_devices() -> list[str]:
    """Where TensorFlow, so training and the Keras runtime, computes: the GPUs it sees
    (``"GPU:0 (NVIDIA A100-SXM4-40GB)"``), else ``["CPU"]``.

    Keras places a model's work on the first GPU by itself; soundnet hides none, and
    the LSTM keeps cuDNN's conditions (tanh, no recurrent dropout, not unrolled) in
    training. LiteRT, the default detect runtime, always runs on the CPU.
    """
    quiet_import_keras()
    import tensorflow as tf

    devices = []
    for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        try:
            name = tf.config.experimental.get_device_details(gpu).get("device_name")
        except (RuntimeError, ValueError):
            name = None
        devices.append(f"GPU:{index}" + (f" ({name})" if name else ""))
    return devices or ["CPU"]
