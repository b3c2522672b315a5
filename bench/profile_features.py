"""Where the feature path spends its time, step by step, against its arithmetic.

    python bench/profile_features.py                 # 10 minutes of audio, ~20 s
    python bench/profile_features.py --minutes 60

In one process, BLAS on one thread (as detect and extract run it): the one-off cost of
the first features call, then ``iter_features(iter_audio(...))`` on a cached
planted-tone WAV in steady state, then the same work taken apart: each step of
``soundnet.features._mfcc`` (window, FFT, power, mel product, log, DCT product) timed
on its own over the same frames in the same 128-frame blocks, plus the ZCR, the
deltas and reading the audio. For each step: seconds per hour of audio, the floating
point operations a frame needs and the rate achieved (GFLOP/s), so the distance to
the machine's peak is plain.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import long_wav, machine_header, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    print(machine_header())
    wav = long_wav(args.minutes * 60)

    start = time.perf_counter()
    import numpy as np

    from soundnet import features as F
    from soundnet.audio import iter_audio, load_audio
    from soundnet.config import FeatureConfig

    imported = time.perf_counter() - start
    c = FeatureConfig()
    start = time.perf_counter()
    F.compute_features(np.zeros(c.sample_rate, np.float32), config=c)
    first = time.perf_counter() - start
    print(f"\nimport soundnet.features: {imported:.2f} s; first features call (1 s of audio): {first:.3f} s")

    per_hour = 3600 / (args.minutes * 60)
    with F.one_blas_thread():
        start = time.perf_counter()
        frames = sum(len(x) for x in F.iter_features(iter_audio(wav, sample_rate=c.sample_rate), config=c))
        wall = time.perf_counter() - start
        print(
            f"steady state: read + features of {frames:,} frames in {wall:.2f} s = {wall * per_hour:.2f} s per hour of audio "
            f"({args.minutes * 60 / wall:.0f}x real time, one core)"
        )

        y = load_audio(wav, sample_rate=c.sample_rate)
        start = time.perf_counter()
        list(iter_audio(wav, sample_rate=c.sample_rate))
        read = time.perf_counter() - start
        plan = F._plan(c)
        bins, mels, mfccs, B = plan.mel.shape[0], plan.mel.shape[1], plan.cepstrum.shape[1], F.BLOCK_FRAMES
        spent = dict.fromkeys(["window", "FFT (float64)", "power", "mel product", "log", "DCT product", "ZCR", "deltas"], 0.0)
        n_total = 0
        chunk = F.CHUNK_FRAMES * c.hop_length
        for s0 in range(0, len(y), chunk):
            padded = np.ascontiguousarray(y[s0 : s0 + chunk + c.n_fft])
            frames_view = F._frames(padded, n_fft=c.n_fft, hop_length=c.hop_length)
            n_total += len(frames_view)
            windowed = np.empty((B, c.n_fft))
            power = np.zeros((B, bins), np.float32)
            log_mel = np.empty((B, mels), np.float32)
            mfcc = np.empty((B, mfccs), np.float32)
            out = np.empty((len(frames_view), mfccs), np.float32)
            for b in range(0, len(frames_view), B):
                n = min(B, len(frames_view) - b)
                t0 = time.perf_counter()
                np.multiply(frames_view[b : b + n], plan.window, out=windowed[:n])
                t1 = time.perf_counter()
                spectrum = np.fft.rfft(windowed[:n], axis=1)
                t2 = time.perf_counter()
                np.square(spectrum.real, out=power[:n], casting="same_kind")
                power[:n] += np.square(spectrum.imag)
                t3 = time.perf_counter()
                np.matmul(power, plan.mel, out=log_mel)
                t4 = time.perf_counter()
                np.maximum(log_mel, F.AMIN, out=log_mel)
                np.log(log_mel, out=log_mel)
                t5 = time.perf_counter()
                np.matmul(log_mel, plan.cepstrum, out=mfcc)
                out[b : b + n] = mfcc[:n]
                t6 = time.perf_counter()
                for key, a, z in zip(list(spent)[:6], (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6), strict=True):
                    spent[key] += z - a
            t0 = time.perf_counter()
            F._zero_crossing_rate(padded, frame_length=c.n_fft, hop_length=c.hop_length, n=len(frames_view))
            t1 = time.perf_counter()
            F.delta(out, width=c.delta_width)
            spent["ZCR"] += t1 - t0
            spent["deltas"] += time.perf_counter() - t1
    # floating point operations per frame (a multiply-add counts 2)
    fft = 2.5 * c.n_fft * math.log2(c.n_fft)  # a real FFT: about half the 5 N log2 N of a complex one
    flops = {
        "window": float(c.n_fft),
        "FFT (float64)": fft,
        "power": 3.0 * bins,
        "mel product": 2.0 * bins * mels,
        "log": float(mels),
        "DCT product": 2.0 * mels * mfccs,
        "ZCR": 3.0 * c.hop_length,
        "deltas": 3.0 * (c.delta_width // 2) * mfccs,
    }
    scale = 360_000 / n_total  # frames in an hour / frames timed
    rows = [
        [step, seconds * scale, flops[step], flops[step] * n_total / seconds / 1e9 if seconds else float("nan")]
        for step, seconds in spent.items()
    ]
    rows.append(["read (soundfile, 16-bit WAV)", read * per_hour, float("nan"), float("nan")])
    total = sum(r[1] for r in rows)
    rows.append(["total of the steps", total, sum(flops.values()), float("nan")])
    print(f"\nThe steps alone, {n_total:,} frames in {B}-frame blocks, scaled to one hour of audio")
    print(table(rows, ["step", "s per hour", "flop per frame", "GFLOP/s"]))
    dense = flops["mel product"]
    sparse = 2 * int(np.count_nonzero(plan.mel))
    print(
        f"\nThe mel product is dense: {dense:,.0f} flop a frame where the filter bank holds {sparse // 2} non-zero weights "
        f"({sparse} flop); the DCT is dense by nature."
    )


if __name__ == "__main__":
    main()
