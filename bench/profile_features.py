"""Where the feature path spends its time (the floor of detect and extract).

    /work/venv/bin/python bench/profile_features.py              # 10 minutes of audio, ~30 s
    /work/venv/bin/python bench/profile_features.py --minutes 60

In one process: the one-off cost of the first features call (librosa's lazy imports
and numba cache loads), then cProfile over ``iter_audio`` + ``iter_features`` on a
cached planted-tone WAV in steady state, grouped by the step of
``soundnet.features._frame_block`` each function belongs to, plus the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import long_wav, machine_header, table  # noqa: E402

# librosa / numpy / scipy functions -> the step of the feature path they serve
GROUPS = {
    "zero_crossing": "ZCR (librosa zero_crossing_rate: numba gufunc over framed signal)",
    "gufunc.py": "ZCR (librosa zero_crossing_rate: numba gufunc over framed signal)",
    "bmm_einsum": "mel filterbank (einsum)",
    "einsum": "mel filterbank (einsum)",
    "r2c": "FFT (pocketfft r2c)",
    "stft": "STFT framing/window/copies (librosa.stft own time)",
    "correlate1d": "delta (savgol correlate1d)",
    "valid_audio": "librosa valid_audio checks",
    "power_to_db": "power_to_db",
    "dct": "MFCC DCT",
    "hstack": "hstack / concatenate",
    "concatenate": "hstack / concatenate",
    "_cdata_io": "read WAV (soundfile)",
    "abs": "abs()**2",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(machine_header())
    wav = long_wav(args.minutes * 60)

    start = time.perf_counter()
    import numpy as np

    from soundnet.audio import iter_audio
    from soundnet.config import FeatureConfig
    from soundnet.features import compute_features, iter_features

    imported = time.perf_counter() - start
    config = FeatureConfig()
    start = time.perf_counter()
    compute_features(np.zeros(config.sample_rate, np.float32), config=config)
    first = time.perf_counter() - start
    print(
        f"\nimport soundnet.features: {imported:.2f} s; first features call (1 s of audio): {first:.2f} s "
        "(librosa lazy imports + numba cache loads)"
    )

    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    frames = sum(len(c) for c in iter_features(iter_audio(wav, sample_rate=config.sample_rate), config=config))
    profile.disable()
    wall = time.perf_counter() - start
    seconds = args.minutes * 60
    print(
        f"steady state: {frames:,} frames of {seconds:g} s audio in {wall:.2f} s under cProfile = "
        f"{seconds / wall:.0f}x real time (one core; profiling adds overhead)"
    )

    stats = pstats.Stats(profile)
    grouped: dict[str, float] = {}
    top = []
    for (filename, _line, name), (_cc, _nc, tottime, _cum, _callers) in stats.stats.items():
        key = next((g for k, g in GROUPS.items() if k in name or k in filename), None)
        grouped[key or "other"] = grouped.get(key or "other", 0.0) + tottime
        top.append((tottime, f"{Path(filename).name}:{name}"))
    total = sum(grouped.values())
    print("\nSelf time grouped by step")
    print(table([[g, s, 100 * s / total] for g, s in sorted(grouped.items(), key=lambda kv: -kv[1])], ["step", "seconds", "%"]))
    print(f"\nTop {args.top} functions by self time")
    print(table([[n, t, 100 * t / total] for t, n in sorted(top, reverse=True)[: args.top]], ["function", "seconds", "%"]))


if __name__ == "__main__":
    main()
