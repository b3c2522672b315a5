"""The network's input contract, in one place.

A feature matrix has ``2 * n_mfcc + 1`` columns per frame: the MFCC, their deltas and
the zero-crossing rate. The network takes them as three named inputs, each a
``(window, width)`` sequence; the Keras model, the LiteRT runtime and the run folder's
checks all read the names, widths and the split from here.
"""

from __future__ import annotations

import numpy as np

INPUTS = ("mfcc", "delta", "zcr")


def n_features(n_mfcc: int) -> int:
    """Columns of a feature matrix for ``n_mfcc`` MFCC: MFCC, deltas and the ZCR."""
    return 2 * n_mfcc + 1


def input_widths(n_mfcc: int) -> dict[str, int]:
    """Width of each named input: ``{"mfcc": n_mfcc, "delta": n_mfcc, "zcr": 1}``."""
    return {"mfcc": n_mfcc, "delta": n_mfcc, "zcr": 1}


def input_shapes(n_mfcc: int, window: int) -> dict[str, tuple[int, int]]:
    """Shape of each named input without the batch axis: ``(window, width)``."""
    return {name: (window, width) for name, width in input_widths(n_mfcc).items()}


def split_inputs(features: np.ndarray, *, n_mfcc: int) -> dict[str, np.ndarray]:
    """Views of the MFCC, delta and ZCR columns of ``features`` ``(..., 2*n_mfcc+1)``, by input name."""
    if features.shape[-1] != n_features(n_mfcc):
        raise ValueError(f"expected {n_features(n_mfcc)} feature columns for n_mfcc={n_mfcc}, got {features.shape[-1]}")
    return {"mfcc": features[..., :n_mfcc], "delta": features[..., n_mfcc : 2 * n_mfcc], "zcr": features[..., 2 * n_mfcc :]}


def input_name(tensor: str) -> str:
    """The contract's input name inside a runtime's tensor name (``serving_default_mfcc:0`` -> ``mfcc``)."""
    for name in INPUTS:
        if name in tensor:
            return name
    raise ValueError(f"unexpected input tensor {tensor!r} (expected one of {', '.join(INPUTS)})")
