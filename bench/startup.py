"""Start-up cost: ``soundnet --help`` and detect on a 10-second clip in a fresh process.

    /work/venv/bin/python bench/startup.py                 # ~1-2 minutes
    /work/venv/bin/python bench/startup.py --repeats 7 --model RUN

Each command runs ``--repeats`` times in a fresh process; the median wall is shown
(and the best). References measured the same way: ``python -c pass``, importing
TensorFlow, librosa and the LiteRT interpreter alone, so the detect figures can be
read as "imports + model load + work".

The model is ``--model``, else the bundled model, else a quick untrained run folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CACHE, PYTHON, SOUNDNET, dump_json, long_wav, machine_header, measure, resolve_model, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    print(machine_header())
    run, origin = resolve_model(args.model)
    clip = long_wav(10.0, path=CACHE / "clip-10s.wav")
    out = CACHE / "startup-out.txt"
    print(f"# clip {clip}; model {run} ({origin})")
    commands = {
        "python -c pass": [PYTHON, "-c", "pass"],
        "soundnet --help": [SOUNDNET, "--help"],
        "soundnet detect --help": [SOUNDNET, "detect", "--help"],
        "python -c 'import ai_edge_litert.interpreter'": [PYTHON, "-c", "import ai_edge_litert.interpreter"],
        "python -c 'import librosa' + first stft": [
            PYTHON,
            "-c",
            "import numpy, librosa; librosa.stft(numpy.zeros(1024, numpy.float32), n_fft=512, center=False)",
        ],
        "python -c 'import tensorflow'": [PYTHON, "-c", "import tensorflow"],
        "python -c 'import keras' (TF backend)": [PYTHON, "-c", "import keras"],
        **{
            f"detect 10 s clip --runtime {runtime}": [
                SOUNDNET,
                "detect",
                str(clip),
                "--model",
                str(run),
                "--runtime",
                runtime,
                "-o",
                str(out),
            ]
            for runtime in ("litert", "keras")
        },
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, float] = {name: 0.0 for name in commands}
    for cmd in commands.values():  # one untimed run each: warm the page cache
        measure(cmd)
    for _ in range(args.repeats):  # interleaved, so load changes hit every command alike
        for name, cmd in commands.items():
            m = measure(cmd)
            walls[name].append(m.wall)
            rss[name] = max(rss[name], m.rss_mb)
    rows = [[name, statistics.median(w), min(w), rss[name]] for name, w in walls.items()]
    print(f"\nFresh-process wall times ({args.repeats} runs each, interleaved)")
    print(table(rows, ["command", "median s", "best s", "peak RSS MiB"]))
    tf = statistics.median(walls["python -c 'import tensorflow'"])
    for name in ("detect 10 s clip --runtime litert", "detect 10 s clip --runtime keras", "soundnet --help"):
        print(f"{name}: {statistics.median(walls[name]) / tf:.2f}x the time of importing TensorFlow")
    dump_json(args.json, {"model": str(run), "model_origin": origin, "walls": walls, "peak_rss_mb": rss})


if __name__ == "__main__":
    main()
