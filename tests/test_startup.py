"""What a fresh ``soundnet detect`` loads: the default (LiteRT) path must not pay for
librosa, scipy, numba or TensorFlow, whose imports cost a short clip most of its time
(bench/startup.py measures it; no timing here)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf
from clirun import child_env

HEAVY = ("librosa", "numba", "scipy", "sklearn", "tensorflow", "keras", "matplotlib")

CHILD = """
import json, sys
from soundnet.cli import main
try:
    main(sys.argv[2:])
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1].split(",")))}))
"""


def test_detect_with_the_bundled_model_imports_no_heavy_library(tmp_path):
    t = np.arange(3 * 16000) / 16000
    sf.write(tmp_path / "clip.wav", (0.3 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32), 16000)
    out = tmp_path / "events.tsv"
    command = [
        sys.executable,
        "-c",
        CHILD,
        ",".join(HEAVY),
        "detect",
        str(tmp_path / "clip.wav"),
        "-o",
        str(out),
        "--format",
        "tsv",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=child_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stderr
    assert out.is_file()
    assert report["loaded"] == [], f"a fresh detect imported {report['loaded']}"
