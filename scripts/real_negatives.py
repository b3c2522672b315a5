"""Build real non-alarm audio from Debian packages: negatives for the alarm detector.

Usage::

    python scripts/real_negatives.py --out build/negatives [--cache /tmp/debs] [--seed 0]

Every sound comes from Debian packages of free games, telephony prompts and
children's software (their audio: speech in many languages, music, nature and town
ambiences, animals, vehicles, machines, appliance-like bleeps, game effects). Nothing
audio is committed: a package missing from the cache is fetched with ``apt-get
download PACKAGE`` into ``CACHE/`` and unpacked with ``dpkg-deb -x`` into
``CACHE/x/PACKAGE/`` (run ``apt-get update`` once first on a fresh machine).

What is written
---------------
``OUT/train/`` and ``OUT/heldout/``: 16 kHz mono 16-bit WAV files, every frame of
which is a negative (no smoke or CO alarm anywhere). The two parts are made from
**disjoint whole packages** (:data:`PACKAGES`), so no source recording, and no
recording of the same game or voice, is in both.

* A source of at least :data:`LONG_SECONDS` (music, ambience loops) is written on its
  own, cut into pieces of at most :data:`MAX_PIECE_SECONDS`.
* Shorter sources (effects, spoken words and prompts) are shuffled (seeded) and
  concatenated, per package, into files of 1-5 minutes, with gaps of 0.2-1.5 s
  between them, so that the material has a realistic density of sound events.
* Each file gets a noise floor of white noise at -70 dBFS RMS: real recordings are
  never digital silence, and soundnet gives digitally silent frames probability 0,
  which would make the gaps trivially negative.
* Levels are the packages' own; a source whose peak is over 0.99 after resampling
  is scaled down to 0.99. (Level variety is the ``augmentation:`` section's job.)

``OUT/<part>/annotations.tsv``: a DCASE reference table with one row per file and no
event (``soundnet evaluate OUT/heldout --annotations OUT/heldout/annotations.tsv``
then scores false alarms). ``OUT/manifest.json``: per part its hours and packages;
per package its version, licence (the ``License:`` fields of
``usr/share/doc/PACKAGE/copyright``) and hours; per written file its package and the
source files it holds with their onset and offset in it.

Excluded
--------
* Packages never used or opened: :data:`FORBIDDEN` (and no example audio of
  ``dcase_util``).
* Any source whose path inside its package matches :data:`EXCLUDE` (alarms, sirens,
  klaxons, fire engines and emergency vehicles, beep-beep patterns): a negative must
  never hold an alarm pattern. Single beeps and bleeps stay: they are what the
  detector must learn to ignore.

The same ``--seed`` and packages give the same files, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
AUDIO_SUFFIXES = (".wav", ".ogg", ".flac", ".mp3")
LONG_SECONDS = 60.0
MAX_PIECE_SECONDS = 300.0
CHUNK_SECONDS = (60.0, 300.0)
GAP_SECONDS = (0.2, 1.5)
FLOOR_DBFS = -70.0
MIN_SOURCE_SECONDS = 0.05

#: package -> (part, what its audio is). Held-out packages are whole, never in train.
PACKAGES = {
    # train
    "asterisk-moh-opsound-wav": ("train", "music on hold (8 kHz)"),
    "colobot-common-sounds": ("train", "game music, machines, robots, ambiences"),
    "hedgewars-data": ("train", "game voices in many languages, explosions, music"),
    "megaglest-data": ("train", "game voices, battle and nature effects, music"),
    "scratch": ("train", "children's sound library: animals, instruments, voices, electronic"),
    "supertux-data": ("train", "game music and effects"),
    "tuxpaint-stamps-default": ("train", "animals, vehicles, nature, objects; spoken descriptions in many languages"),
    "wesnoth-1.16-data": ("train", "game effects, voices, ambiences"),
    "frozen-bubble-data": ("train", "game music and effects"),
    "pingus-data": ("train", "game effects and music"),
    "extremetuxracer-data": ("train", "game music, sliding and crowd effects"),
    "scorched3d-data": ("train", "explosions, weapons, wind, water, game music"),
    # held out
    "widelands-data": ("heldout", "game music; nature, farm, workshop and town ambiences"),
    "asterisk-core-sounds-en-wav": ("heldout", "telephone speech prompts (8 kHz), a prompt beep"),
    "ktuberling-data": ("heldout", "spoken words in many languages, toy sounds"),
    "lincity-ng-data": ("heldout", "city, industry, traffic and machine effects, music"),
    "warmux-data": ("heldout", "cartoon voices in many languages, weapons, explosions, a mine's beep, music"),
    "freedroidrpg-data": ("heldout", "game music, robots, doors, weapons, ambiences"),
}
#: Never downloaded, unpacked or read.
FORBIDDEN = {"openttd-opensfx", "gcompris-qt-data", "sound-theme-freedesktop"}
EXCLUDE = re.compile(
    r"alarm|siren|klaxon|beep[-_ ]?beep|smoke[-_ ]?(alarm|detect)|fire[-_ ]?(engine|truck)|"
    r"emergency|police|ambulance|alert|warning",
    re.IGNORECASE,
)


# ---------------------------------------------------------------------------
# Packages


def unpacked(package: str, *, cache: Path) -> Path:
    """``CACHE/x/PACKAGE``, downloading (``apt-get download``) and unpacking it if missing."""
    if package in FORBIDDEN:
        raise SystemExit(f"{package}: forbidden package")
    folder = cache / "x" / package
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        print(f"apt-get download {package}", flush=True)
        subprocess.run(["apt-get", "download", package], cwd=cache, check=True)
        debs = sorted(cache.glob(f"{package}_*.deb"))
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(folder)], check=True)
    return folder


def version(package: str, *, cache: Path) -> str:
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        return "unknown"
    out = subprocess.run(["dpkg-deb", "-f", str(debs[-1]), "Version"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def licences(folder: Path, package: str) -> list[str]:
    """The distinct ``License:`` short names of the package's copyright file (DEP-5),
    or, for a free-form file, the licence names it mentions."""
    path = folder / "usr" / "share" / "doc" / package / "copyright"
    if not path.is_file():
        return ["unknown (no copyright file)"]
    text = path.read_text(encoding="utf-8", errors="replace")
    names: list[str] = []
    for match in re.finditer(r"^License:[ \t]*(\S.*)$", text, re.MULTILINE):  # DEP-5 short names
        if match.group(1).strip() not in names:
            names.append(match.group(1).strip())
    if not names:  # a free-form file: the licences it points to or names
        found = re.findall(r"/usr/share/common-licenses/([\w.+-]+?)['`\s,.]", text)
        found += re.findall(r"\b(CC[- ]BY(?:[- ]SA)?[- ]\d\.\d|CC0|public domain|Expat|BSD)\b", text, re.IGNORECASE)
        for name in found:
            if name not in names:
                names.append(name)
    return names or ["see copyright file"]


def sources(folder: Path) -> tuple[list[Path], list[str]]:
    """The package's audio files (sorted) and the excluded ones (by :data:`EXCLUDE`)."""
    keep, dropped = [], []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file() or path.is_symlink():
            continue
        relative = path.relative_to(folder).as_posix()
        (dropped if EXCLUDE.search(relative) else keep).append(path)
    return keep, [p.relative_to(folder).as_posix() for p in dropped]


# ---------------------------------------------------------------------------
# Audio


def load(path: Path) -> np.ndarray | None:
    """``path`` as 16 kHz mono float32 (peak at most 0.99), or None if unreadable/empty."""
    import librosa

    try:
        y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # a broken file in a package is skipped, not fatal
        print(f"  skipped {path}: {error}", file=sys.stderr)
        return None
    y = y.mean(axis=1)
    if sr != SR and len(y):
        y = librosa.resample(y, orig_sr=sr, target_sr=SR, res_type="soxr_hq")
    if len(y) < MIN_SOURCE_SECONDS * SR or not np.any(y):
        return None
    peak = float(np.max(np.abs(y)))
    if peak > 0.99:
        y = y * (0.99 / peak)
    return y.astype(np.float32)


def write_wav(path: Path, y: np.ndarray, *, rng: np.random.Generator) -> None:
    floor = rng.standard_normal(len(y)) * 10 ** (FLOOR_DBFS / 20)
    pcm = np.round(np.clip(y + floor, -1.0, 1.0) * 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    sf.write(str(tmp), pcm, SR, subtype="PCM_16", format="WAV")
    tmp.replace(path)


def build_package(package: str, folder: Path, out: Path, *, seed: int) -> tuple[list[dict], list[str]]:
    """Write the package's files into ``out``; return their manifest rows and the exclusions."""
    rng = np.random.default_rng([seed, zlib.crc32(package.encode())])  # by name: stable when packages are added
    paths, dropped = sources(folder)
    order = rng.permutation(len(paths))
    files: list[dict] = []
    pending: list[tuple[str, np.ndarray]] = []
    target = rng.uniform(*CHUNK_SECONDS)

    def emit(pieces: list[tuple[str, np.ndarray]], gaps: list[float]) -> None:
        name = f"{package}_{len(files):03d}.wav"
        parts, rows, t = [], [], 0.0
        for (source, y), gap in zip(pieces, gaps, strict=True):
            rows.append({"source": source, "onset": round(t, 3), "offset": round(t + len(y) / SR, 3)})
            parts += [y, np.zeros(int(gap * SR), np.float32)]
            t += len(y) / SR + int(gap * SR) / SR
        y = np.concatenate(parts)
        write_wav(out / name, y, rng=rng)
        files.append({"file": name, "package": package, "seconds": round(len(y) / SR, 3), "sources": rows})

    for k in order:
        path = paths[k]
        y = load(path)
        if y is None:
            continue
        source = path.relative_to(folder).as_posix()
        if len(y) >= LONG_SECONDS * SR:
            step = int(MAX_PIECE_SECONDS * SR)
            for start in range(0, len(y), step):
                piece = y[start : start + step]
                if len(piece) >= 10 * SR or start == 0:
                    label = source if len(y) <= step else f"{source}@{start / SR:.0f}s"
                    emit([(label, piece)], [0.0])
            continue
        pending.append((source, y))
        if sum(len(p) for _, p in pending) / SR + GAP_SECONDS[1] * len(pending) / 2 >= target:
            emit(pending, list(rng.uniform(*GAP_SECONDS, size=len(pending) - 1)) + [0.0])
            pending, target = [], rng.uniform(*CHUNK_SECONDS)
    if pending:
        emit(pending, list(rng.uniform(*GAP_SECONDS, size=len(pending) - 1)) + [0.0])
    return files, dropped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="Folder for train/, heldout/ and manifest.json.")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/debs"), help="Folder of .deb files and x/PACKAGE unpacked.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the shuffles, gaps and noise floor (default 0).")
    parser.add_argument("--only", action="append", default=[], help="Build only this package (repeatable; for trials).")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only) - set(PACKAGES))
    if unknown:
        parser.error(f"--only: not among the packages of this script: {', '.join(unknown)}")
    started = time.monotonic()
    out, cache = args.out.resolve(), args.cache.resolve()
    manifest: dict = {"sample_rate": SR, "seed": args.seed, "parts": {}, "packages": {}, "files": []}
    previous = out / "manifest.json"
    if args.only and previous.is_file():  # a partial build keeps the other packages' entries
        old = json.loads(previous.read_text(encoding="utf-8"))
        if old.get("seed") == args.seed:
            manifest["packages"] = {k: v for k, v in old["packages"].items() if k not in args.only}
            manifest["files"] = [f for f in old["files"] if f["package"] not in args.only]
    for package, (part, what) in PACKAGES.items():
        if args.only and package not in args.only:
            continue
        folder = unpacked(package, cache=cache)
        for stale in (out / part).glob(f"{package}_*.wav"):
            stale.unlink()
        files, dropped = build_package(package, folder, out / part, seed=args.seed)
        seconds = sum(f["seconds"] for f in files)
        manifest["packages"][package] = {
            "part": part,
            "content": what,
            "version": version(package, cache=cache),
            "licence": licences(folder, package),
            "copyright": f"usr/share/doc/{package}/copyright",
            "hours": round(seconds / 3600, 3),
            "files": len(files),
            "sources": sum(len(f["sources"]) for f in files),
            "excluded_by_name": dropped,
        }
        manifest["files"] += [{**f, "file": f"{part}/{f['file']}", "part": part} for f in files]
        print(
            f"{part:8s} {package}: {len(files)} files, {seconds / 3600:.2f} h, {len(dropped)} excluded  [{time.monotonic() - started:.0f} s]",
            flush=True,
        )
    for part in ("train", "heldout"):
        rows = [f for f in manifest["files"] if f["part"] == part]
        if not rows:
            continue
        manifest["parts"][part] = {
            "hours": round(sum(f["seconds"] for f in rows) / 3600, 3),
            "files": len(rows),
            "packages": sorted({f["package"] for f in rows}),
        }
        names = sorted(Path(f["file"]).name for f in rows)
        (out / part / "annotations.tsv").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(manifest["parts"], indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
