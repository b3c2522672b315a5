"""Planted-event audio for tests: files whose right answers are known.

The signals come from :mod:`soundnet.signals`; this module writes them as test WAVs
and their annotation tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from soundnet.signals import SR, planted_scene, tone

__all__ = ["SR", "planted_file", "planted_set", "tone"]


def planted_file(
    path: Path,
    *,
    seconds: float,
    events: list[tuple[float, float]],
    rng: np.random.Generator,
    freq: float = 2000.0,
    distractors: int = 1,
    sr: int = SR,
) -> None:
    """Write a WAV of noise with `target` tone bursts at `events` and 500 Hz distractor bursts."""
    y = planted_scene(seconds, events, rng=rng, freq=freq, distractors=distractors, sr=sr)
    sf.write(path, y, sr, subtype="PCM_16")


def planted_set(
    folder: Path, *, files: int, seconds: float = 8.0, seed: int = 0, label: str = "beep", empty_every: int = 4
) -> tuple[Path, dict[str, list[tuple[float, float]]]]:
    """A folder of planted files and its DCASE annotation table; returns (table, truth)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, list[tuple[float, float]]] = {}
    rows = ["filename\tonset\toffset\tevent_label"]
    for i in range(files):
        name = f"clip_{i:02d}.wav"
        events = []
        if empty_every == 0 or i % empty_every != empty_every - 1:
            t = rng.uniform(0.3, 1.5)
            while t < seconds - 1.0:
                length = rng.uniform(0.3, 0.8)
                events.append((round(t, 3), round(t + length, 3)))
                t += length + rng.uniform(1.0, 2.5)
        planted_file(folder / name, seconds=seconds, events=events, rng=rng)
        truth[name] = events
        rows += [f"{name}\t{on}\t{off}\t{label}" for on, off in events] or [name]
    table = folder.parent / f"{folder.name}.tsv"
    table.write_text("\n".join(rows) + "\n")
    return table, truth
