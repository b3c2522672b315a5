"""Shared helpers of the benchmark scripts (not part of soundnet, not run in CI).

- machine facts (cores, CPU, load, versions);
- running a command in a fresh process and measuring its wall time and peak RSS
  (``/usr/bin/time -v`` when present, else a tiny Python wrapper reading
  ``getrusage(RUSAGE_CHILDREN)`` so each measurement has its own child set);
- a run folder to detect with: ``--model``, the bundled model, or a quick untrained
  one (speed does not depend on the weights);
- long planted-tone WAVs written block by block (little memory), cached in /tmp, from
  the generators of ``soundnet.signals``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundnet.signals import SR, mix_in, tone, white_noise

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
SOUNDNET = str(BIN / "soundnet") if (BIN / "soundnet").exists() else "soundnet"
CACHE = Path(os.environ.get("SOUNDNET_BENCH_CACHE", "/tmp/soundnet-bench"))
TIME = "/usr/bin/time"

# Children inherit this: TensorFlow's C++ start-up chatter off, oneDNN notes off.
QUIET_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


# ---------------------------------------------------------------- machine facts
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("tensorflow", "keras", "ai-edge-litert", "librosa", "numpy", "soundfile", "soxr"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def machine_header() -> str:
    v = versions()
    return (
        f"# {time.strftime('%Y-%m-%d %H:%M:%S')}  nproc={os.cpu_count()}  cpu={cpu_model()!r}  load={loadavg()}\n"
        f"# " + "  ".join(f"{k}={val}" for k, val in v.items())
    )


# ---------------------------------------------------------------- measuring a child
@dataclass
class Measured:
    wall: float  # seconds, measured here around the child
    rss_mb: float  # peak resident set of the child (MiB)
    returncode: int
    stdout: str
    stderr: str


_RUSAGE_WRAPPER = (
    "import resource, subprocess, sys;"
    "r = subprocess.run(sys.argv[1:]);"
    "sys.stderr.write('\\nMaximum resident set size (kbytes): %d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
    "sys.exit(r.returncode)"
)


def measure(cmd: list[str], *, env: dict | None = None, check: bool = True) -> Measured:
    """Run ``cmd`` in a fresh process; its wall time and peak RSS."""
    if Path(TIME).exists():
        full = [TIME, "-v", *cmd]
    else:
        full = [PYTHON, "-c", _RUSAGE_WRAPPER, *cmd]
    start = time.perf_counter()
    proc = subprocess.run(full, env=env or QUIET_ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    rss = int(match.group(1)) / 1024 if match else float("nan")
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return Measured(wall, rss, proc.returncode, proc.stdout, proc.stderr)


def repeat(cmd: list[str], n: int, **kwargs) -> list[Measured]:
    return [measure(cmd, **kwargs) for _ in range(n)]


def median(values) -> float:
    return statistics.median(values)


def table(rows: list[list], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.01 or value == 0:
            return f"{value:.2f}"
        return f"{value:.2e}"
    return str(value)


# ---------------------------------------------------------------- a run folder
def bundled_model() -> Path | None:
    path = ROOT / "soundnet" / "models" / "default"
    return path if (path / "card.json").is_file() else None


def quick_run(folder: Path | None = None) -> Path:
    """An untrained run folder (model.keras, model.tflite, card.json with mean 0, std 1).

    Built in a child process so the benchmark process itself never imports TensorFlow.
    """
    folder = Path(folder or CACHE / "quick-run")
    if all((folder / f).is_file() for f in ("card.json", "model.keras", "model.tflite")):
        return folder
    code = f"""
import os, shutil
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from pathlib import Path
import numpy as np
from soundnet.backend import quiet_import_keras
quiet_import_keras()
from soundnet.config import FeatureConfig, ModelConfig, PostConfig
from soundnet.litert import TFLITE_FILE, export_tflite
from soundnet.model import build_model
from soundnet.run import MODEL_FILE, ModelCard, write_card
out = Path({str(folder)!r}); tmp = out.with_name(out.name + ".tmp")
shutil.rmtree(tmp, ignore_errors=True); tmp.mkdir(parents=True)
features, config = FeatureConfig(), ModelConfig()
model = build_model(config, n_mfcc=features.n_mfcc)
model.save(tmp / MODEL_FILE)
export_tflite(model, tmp / TFLITE_FILE, n_mfcc=features.n_mfcc)
n = features.n_features
write_card(tmp, ModelCard("beep", features, config, np.zeros(n, np.float32), np.ones(n, np.float32), PostConfig()))
shutil.rmtree(out, ignore_errors=True); tmp.rename(out)
"""
    subprocess.run([PYTHON, "-c", code], check=True, env=QUIET_ENV)
    return folder


def resolve_model(arg: str | None) -> tuple[Path, str]:
    """The run folder to detect with and where it came from."""
    if arg:
        return Path(arg), "given"
    bundled = bundled_model()
    if bundled is not None:
        return bundled, "bundled"
    return quick_run(), "quick untrained run"


# ---------------------------------------------------------------- long audio
def long_wav(seconds: float, *, path: Path | None = None, seed: int = 0, block_seconds: float = 60.0) -> Path:
    """A 16 kHz PCM_16 WAV of low noise with a 2 kHz burst every ~10 s, written block by
    block (memory: one block). Cached: reused when a file of the same length exists."""
    import soundfile as sf

    path = Path(path or CACHE / f"long-{seconds:g}s.wav")
    total = int(round(seconds * SR))
    if path.is_file():
        try:
            if sf.info(str(path)).frames == total:
                return path
        except RuntimeError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".part")
    block = int(block_seconds * SR)
    burst = tone(2000.0, 0.5, sr=SR)
    with sf.SoundFile(str(tmp), "w", samplerate=SR, channels=1, subtype="PCM_16", format="WAV") as f:
        for start in range(0, total, block):
            n = min(block, total - start)
            y = white_noise(n, rng=rng, std=0.03)
            # a burst at 3 s past every 10 s mark that starts inside this block
            for onset in range(((start // SR) // 10) * 10 + 3, (start + n) // SR + 1, 10):
                s = onset * SR - start
                if 0 <= s < n:
                    mix_in(y, burst, s)
            f.write(y)
    tmp.rename(path)
    return path


def free_disk_gb(path: Path) -> float:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free / 1e9


def dump_json(path: Path | None, data: dict) -> None:
    if path is not None:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
