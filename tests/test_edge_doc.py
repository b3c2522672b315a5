"""docs/edge.md's feature recipe (plain NumPy, for people porting soundnet to a board)
computes soundnet's features."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from soundnet.config import FeatureConfig
from soundnet.features import compute_features

DOC = Path(__file__).resolve().parents[1] / "docs" / "edge.md"


def board_features():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    recipe = [block for block in blocks if "def board_features" in block]
    assert len(recipe) == 1, "docs/edge.md should hold one board_features block"
    namespace: dict = {}
    exec(compile(recipe[0], str(DOC), "exec"), namespace)
    return namespace["board_features"]


def test_the_documented_recipe_gives_soundnets_features():
    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(16000 * 2 + 77)).astype(np.float32)
    y[5000:6000] = 0.0  # digital silence: the log floor and zero crossings at exact zeros
    y[9000:9400] += 0.5 * np.sin(2 * np.pi * 2000 * np.arange(400) / 16000).astype(np.float32)
    expected = compute_features(y, config=FeatureConfig())
    got = board_features()(y)
    assert got.shape == expected.shape == (1 + len(y) // 160, 129)
    scale = np.abs(expected).max(axis=0)
    np.testing.assert_allclose(got, expected, atol=1e-6 * scale.max(), rtol=1e-5)
    np.testing.assert_array_equal(got[:, -1], expected[:, -1])  # the ZCR is a count: exact
