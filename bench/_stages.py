"""Child process of the benchmarks: time one pass over a file, stage by stage.

    python bench/_stages.py read FILE                 # iter_audio only
    python bench/_stages.py features FILE             # iter_audio + iter_features (the floor of detect)
    python bench/_stages.py detect FILE RUN RUNTIME   # Detector.detect_file, with stage timers

Prints one JSON object on stdout. Stage times are the wall time spent inside each
stage's own code (time in a generator's ``next`` minus the time of the generators it
pulls from), so they add up to the total.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class Clock:
    def __init__(self):
        self.spent: dict[str, float] = {}

    def gen(self, name: str, inner: str | None, iterator):
        """Wrap a generator: time in its next() minus the time its source spent."""
        iterator = iter(iterator)
        while True:
            before_inner = self.spent.get(inner, 0.0) if inner else 0.0
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                self._add(name, time.perf_counter() - start - ((self.spent.get(inner, 0.0) - before_inner) if inner else 0))
                return
            self._add(name, time.perf_counter() - start - ((self.spent.get(inner, 0.0) - before_inner) if inner else 0))
            yield item

    def fn(self, name: str, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._add(name, time.perf_counter() - start)

        return timed

    def _add(self, name: str, seconds: float) -> None:
        self.spent[name] = self.spent.get(name, 0.0) + seconds


def main() -> None:
    mode, path = sys.argv[1], Path(sys.argv[2])
    t0 = time.perf_counter()
    from soundnet.audio import iter_audio
    from soundnet.config import FeatureConfig
    from soundnet.features import iter_features

    clock = Clock()
    out: dict = {"mode": mode}
    if mode in ("read", "features"):
        config = FeatureConfig()
        out["import_s"] = time.perf_counter() - t0
        start = time.perf_counter()
        blocks = clock.gen("read", None, iter_audio(path, sample_rate=config.sample_rate))
        frames = 0
        if mode == "read":
            samples = sum(len(b) for b in blocks)
            frames = samples // config.hop_length + 1
        else:
            for chunk in clock.gen("features", "read", iter_features(blocks, config=config)):
                frames += len(chunk)
        out.update(frames=frames, total_s=time.perf_counter() - start, stages=clock.spent)
    elif mode == "detect":
        run, runtime = Path(sys.argv[3]), sys.argv[4]
        import soundnet.detection as detect_module
        import soundnet.windows as windows_module
        from soundnet.detection import Detector

        detector = Detector(run, runtime=runtime)
        start = time.perf_counter()
        detector.load()
        out["import_s"] = start - t0
        out["load_s"] = time.perf_counter() - start
        detector._predict = clock.fn("predict", detector._predict)
        card = detector.card
        normalise = card.normalise
        object.__setattr__(card, "normalise", clock.fn("normalise", normalise))
        # route the generators through the clock
        original_iter_audio, original_iter_features = detect_module.iter_audio, detect_module.iter_features
        detect_module.iter_audio = lambda *a, **k: clock.gen("read", None, original_iter_audio(*a, **k))
        detect_module.iter_features = lambda *a, **k: clock.gen("features", "read", original_iter_features(*a, **k))
        original_stream = windows_module.stream_probabilities
        detect_module.stream_probabilities = clock.fn(
            "stream_probabilities (incl. predict, normalise, features, read)", original_stream
        )
        # Detect computes features in a background thread (detect.prefetched) while the
        # network scores the previous chunk; stages would overlap and not add up, so the
        # split is taken with the pipeline off (one thread, stages in sequence).
        detect_module.prefetched = lambda items, **_: items
        original_events = detect_module.to_events
        detect_module.to_events = clock.fn("to_events", original_events)
        start = time.perf_counter()
        detection = detector.detect_file(path)
        total = time.perf_counter() - start
        stream = clock.spent.pop("stream_probabilities (incl. predict, normalise, features, read)")
        inner = sum(clock.spent.get(k, 0.0) for k in ("predict", "normalise", "features", "read"))
        clock.spent["windowing + overlap-add"] = stream - inner
        clock.spent["other"] = total - sum(clock.spent.values())
        out.update(frames=len(detection.probabilities), events=len(detection.events), total_s=total, stages=clock.spent)
    else:
        raise SystemExit(f"unknown mode {mode}")
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
