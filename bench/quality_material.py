"""Real-audio material of the quality benchmark (issue 11): catalogue, splits, mixtures.

Every sound comes from a Debian package of real recordings (game and education sound
libraries, telephone prompts, hold music); nothing is synthetic and nothing audio is
committed. The script finds the packages unpacked under ``SOUNDNET_BENCH_DEBS``
(default ``/tmp/debs/x/<package>/``), else fetches them with ``apt-get download`` and
unpacks them with ``dpkg-deb -x`` into the cache.

The catalogue below is explicit: per target, named *sources* (one source = one
recording and the variants a package ships of it, e.g. ``cow_ack1..3.wav`` of one
megaglest unit), each on the train or the test side; backgrounds likewise. Distractors
are every other sound effect of the listed folders whose name matches no exclusion of
the target, grouped by name without its trailing number and split by a hash of that
group. ``build`` asserts that no source file lies on both sides.

Mixtures follow DCASE 2017 task 2 (Mesaros et al. 2017): 10 s at 16 kHz, a background
excerpt, with probability 0.5 one target event (a random excerpt of at most 5 s of a
longer clip) at an event-to-background ratio drawn from -6, 0, +6 dB (energy of the
event over the energy of the background under it), here plus 0-2 distractors at the
same ratios placed beside the event. Training mixtures come in 5 folds: the training
target sources, backgrounds and distractor groups are dealt into folds and each
mixture uses one fold's material only; the table's ``group`` column names the fold.

Per target the cache then holds::

    <target>/train/            mixtures + annotations.tsv (filename onset offset event_label group)
    <target>/test/             mixtures + annotations.tsv (group "test")
    <target>/negatives/        training backgrounds and training distractors strung together: no target
    <target>/test-background/  test backgrounds only (no target), for false alarms per hour
    <target>/material.json     sources, files, licences, splits, folds, counts, EBR checks
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MATERIAL_VERSION = 3  # bump when the catalogue or the mixing changes: the cache key holds it
SR = 16000
MIX_SECONDS = 10.0
EBRS = (-6.0, 0.0, 6.0)
MAX_EVENT_SECONDS = 5.0
FOLDS = 5
BACKGROUND_CAP_SECONDS = 120.0  # longer recordings (music) are cut: enough variety, less decoding
TEST_BACKGROUND_CAP_SECONDS = 60.0  # per recording in the pure-background test audio
SILENT_RMS = 1e-4  # a 1 s stretch of background below this (-80 dBFS) counts as silence
BACKGROUND_RMS = 0.03  # about -30 dBFS before the +-3 dB random gain

FORBIDDEN_PACKAGES = ("openttd-opensfx", "gcompris-qt-data", "sound-theme-freedesktop")

#: package -> licence of the audio used (from usr/share/doc/<package>/copyright).
LICENCES = {
    "tuxpaint-stamps-default": "GPL-2 (Files: *)",
    "scratch": "CC-BY-SA-3.0 (Files: Media/*)",
    "widelands-data": "GPL-2+ (Files: *)",
    "megaglest-data": "CC-BY-SA-3.0 (Files: *)",
    "wesnoth-1.16-data": "GPL-2+ (whole package)",
    "hedgewars-data": "GFDL-1.3 (Files: share/hedgewars/Data/Sounds/*)",
    "supertux-data": "GPL-3+ (Files: *)",
    "colobot-common-sounds": "GPL-3+ (Files: *)",
    "asterisk-core-sounds-en-wav": "CC-BY-SA-3.0 (Allison Smith prompts)",
    "asterisk-moh-opsound-wav": "CC-BY-SA-3.0 (by permission of the authors)",
    "0ad-data": "CC-BY-SA-3.0 (Files: *; audio/LICENSE.txt: Wildfire Games)",
}

_TUX = "tuxpaint-stamps-default:usr/share/tuxpaint/stamps/"
_SCR = "scratch:usr/share/scratch/Media/Sounds/"
_WL = "widelands-data:usr/share/games/widelands/data/"
_MG = "megaglest-data:usr/share/games/megaglest/"
_WES = "wesnoth-1.16-data:usr/share/games/wesnoth/1.16/data/core/sounds/"
_HW = "hedgewars-data:usr/share/games/hedgewars/Data/"
_ST = "supertux-data:usr/share/games/supertux2/"
_COL = "colobot-common-sounds:usr/share/games/colobot/"
_AST = "asterisk-core-sounds-en-wav:usr/share/asterisk/sounds/en_US_f_Allison/"
_MOH = "asterisk-moh-opsound-wav:usr/share/asterisk/moh/"
_0AD = "0ad-data:usr/share/games/0ad/mods/public/public.zip!audio/"  # "!": members of the zip archive


@dataclass(frozen=True)
class Source:
    """One recording (and its shipped variants): ``patterns`` are ``package:glob``."""

    name: str
    patterns: tuple[str, ...]
    kind: str = ""  # backgrounds: rain, wind, night, day, machinery, music, speech


def S(name: str, *patterns: str, kind: str = "") -> Source:  # noqa: N802 - a table constructor
    return Source(name, patterns, kind)


@dataclass(frozen=True)
class Target:
    label: str
    train: tuple[Source, ...]
    test: tuple[Source, ...]
    exclude: str  # regex on a distractor's path: sounds that are (or may be) the target
    backgrounds_excluded: tuple[str, ...] = ()  # background kinds that may hold the target


# ---------------------------------------------------------------- the catalogue
TARGETS = {
    "bird": Target(
        "bird",
        train=(
            S("widelands_bird1", _WL + "sound/animals/bird1_*.ogg"),
            S("widelands_bird2", _WL + "sound/animals/bird2_*.ogg"),
            S("widelands_bird3", _WL + "sound/animals/bird3_*.ogg"),
            S("widelands_bird4", _WL + "sound/animals/bird4_*.ogg"),
            S("tuxpaint_blackbird", _TUX + "animals/birds/blackbird.ogg"),
            S("tuxpaint_crow", _TUX + "animals/birds/crow.ogg"),
            S("tuxpaint_cuckoo", _TUX + "animals/birds/cuckoo.ogg"),
            S("tuxpaint_seagull", _TUX + "animals/birds/seagull.ogg"),
            S("scratch_bird", _SCR + "Animal/Bird.wav"),
            S("megaglest_owl", _MG + "tilesets/autumn/sounds/owl.ogg"),
            S("wesnoth_birds", _WES + "ambient/birds[123].ogg"),
        ),
        test=(
            S("widelands_bird5", _WL + "sound/animals/bird5_*.ogg"),
            S("widelands_bird6", _WL + "sound/animals/bird6_*.ogg"),
            S("tuxpaint_lark", _TUX + "animals/birds/lark.ogg"),
            S("tuxpaint_owl", _TUX + "animals/birds/owl.ogg"),
            S("tuxpaint_tucan", _TUX + "animals/birds/tucan.ogg"),
            S("tuxpaint_quetzal", _TUX + "animals/birds/quetzal.ogg"),
            S("scratch_owl", _SCR + "Animal/Owl.wav"),
            S("megaglest_hawk", _MG + "tilesets/desert2/sounds/hawk.ogg", _MG + "tilesets/desert4/sounds/hawk.ogg"),
        ),
        # every bird, poultry and winged creature, and ambiences named after them
        exclude=r"(?i)bird|owl|crow|cuckoo|lark|gull|tucan|quetzal|hawk|eagle|gryphon|chicken|hen\.|rooster|duck|"
        r"goose|gander|drake|turkey|penguin|heron|nandou|vulture|peacock|parrot|cricket|ambient/|tilesets/",
        backgrounds_excluded=("day", "night"),  # forest ambiences are full of birds
    ),
    "cattle": Target(
        "cattle",
        train=(
            S("tuxpaint_cow", _TUX + "animals/mammals/bovines/cow.ogg"),
            S("tuxpaint_bull", _TUX + "animals/mammals/bovines/bull.ogg"),
            S("megaglest_cow", _MG + "techs/megapack/commondata/sounds/cow_*.wav"),
            S("megaglest_bull", _MG + "techs/megapack/factions/indian/units/bull/sounds/bull_*.wav"),
            S("widelands_ox", _WL + "sound/farm/ox_*.ogg"),
        ),
        test=(
            S("tuxpaint_cow_white", _TUX + "animals/mammals/bovines/cow_white.ogg"),
            S("tuxpaint_bison", _TUX + "animals/mammals/bovines/bison.ogg"),
            S("megaglest_mudchute_cow", _MG + "tilesets/pine_peat/sounds/mudchute_cow_*.ogg"),
            S("0ad_cattle", _0AD + "actor/fauna/animal/cattle_0*.ogg"),
        ),
        exclude=r"(?i)cow|bull|bison|ox_|\box\b|farm_animal|moo|buffalo|yak|tilesets/",
    ),
}

#: Backgrounds: long real ambiences, machinery, music and speech. Megaglest ships the same
#: ambience under several tilesets; one path per recording is listed (``build`` also drops
#: byte-identical files).
BACKGROUNDS_TRAIN = (
    S("megaglest_rain_forest", _MG + "tilesets/birch_forest/sounds/rain.ogg", kind="rain"),
    S("megaglest_rain_desert", _MG + "tilesets/desert2/sounds/rain.wav", kind="rain"),
    S("megaglest_wind", _MG + "tilesets/winter/sounds/wind.ogg", _MG + "tilesets/winter_forest/sounds/wind.ogg", kind="wind"),
    S("widelands_furnace", _WL + "sound/metal/furnace.ogg", kind="machinery"),
    S("widelands_weaving", _WL + "sound/mill/weaving.ogg", kind="machinery"),
    S("widelands_inn", _WL + "sound/barbarians/taverns/inn_01.ogg", kind="crowd"),
    S("megaglest_night_forest", _MG + "tilesets/birch_forest/sounds/night.ogg", kind="night"),
    S("megaglest_day_forest", _MG + "tilesets/dark_forest/sounds/day.ogg", kind="day"),
    S("megaglest_day_fernland", _MG + "tilesets/fernland/sounds/day.ogg", kind="day"),
    S("moh_macroform_cold_day", _MOH + "macroform-cold_day.wav", kind="music"),
    S("moh_macroform_robot_dity", _MOH + "macroform-robot_dity.wav", kind="music"),
    S("colobot_music002", _COL + "music/music002.ogg", kind="music"),
    S("hedgewars_music_city", _HW + "Music/City.ogg", kind="music"),
    S("asterisk_prompts_a_to_m", _AST + "[a-m]*.wav", kind="speech"),
)
BACKGROUNDS_TEST = (
    S("megaglest_rain_autumn", _MG + "tilesets/autumn/sounds/rain.ogg", kind="rain"),
    S("supertux_rain", _ST + "sounds/rain.wav", kind="rain"),
    S("megaglest_hell", _MG + "tilesets/hell/sounds/hell.ogg", kind="wind"),
    S("widelands_stonecutter", _WL + "sound/atlanteans/cutting/stonecutter_*.ogg", kind="machinery"),
    S("widelands_sharpening", _WL + "sound/smiths/sharpening.ogg", kind="machinery"),
    S("megaglest_night_mediterran", _MG + "tilesets/mediterran/sounds/night.ogg", kind="night"),
    S("megaglest_day_desert", _MG + "tilesets/mediterran/sounds/desertday.ogg", kind="day"),
    S("moh_reno_project_system", _MOH + "reno_project-system.wav", kind="music"),
    S("colobot_music005", _COL + "music/music005.ogg", kind="music"),
    S("asterisk_prompts_n_to_z", _AST + "[n-z]*.wav", kind="speech"),
)

#: Distractor folders (every file, minus the target's exclusions, minus anything a
#: target or background uses).
DISTRACTOR_PATTERNS = (
    _WES + "*.ogg",
    _WES + "*.wav",
    _HW + "Sounds/*.ogg",
    _ST + "sounds/*.wav",
    _ST + "sounds/*.ogg",
    _SCR + "*/*.wav",
    _COL + "sounds/*.wav",
    _WL + "sound/*/*.ogg",
    _WL + "sound/*/*/*.ogg",
    _TUX + "household/**/*.ogg",
    _TUX + "hobbies/**/*.ogg",
    _TUX + "animals/**/*.ogg",
    _TUX + "naturalforces/*.ogg",
    _TUX + "seasonal/**/*.ogg",
    _TUX + "space/*.ogg",
)
_DISTRACTOR_DROP = re.compile(r"(?i)_desc|/alphabets/|/voices/|/music/|/Music|custom\d|tux_rap|speech/")
MIN_DISTRACTOR_SECONDS = 0.15


# ---------------------------------------------------------------- packages
def debs_root(cache: Path) -> Path:
    return Path(os.environ.get("SOUNDNET_BENCH_DEBS", "/tmp/debs/x"))


def package_dir(package: str, cache: Path) -> Path:
    """The unpacked package: under the debs root, else downloaded and unpacked into the cache."""
    assert package not in FORBIDDEN_PACKAGES, package
    here = debs_root(cache) / package
    if here.is_dir():
        return here
    target = cache / "debs" / package
    if target.is_dir():
        return target
    download = cache / "debs" / "download"
    download.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", package], cwd=download, check=True)
    (deb,) = download.glob(f"{package}_*.deb")
    tmp = target.with_name(target.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
    tmp.rename(target)
    return target


def expand(pattern: str, cache: Path) -> list[Path]:
    """The files of ``package:glob``; ``package:archive.zip!glob`` globs inside a zip archive."""
    package, rel = pattern.split(":", 1)
    root = package_dir(package, cache)
    if "!" in rel:
        archive, rel = rel.split("!", 1)
        root = archive_members(root / archive, rel, cache / "archives" / package / Path(archive).name)
    return sorted(Path(p) for p in glob.glob(str(root / rel), recursive=True) if Path(p).is_file())


def archive_members(archive: Path, pattern: str, into: Path) -> Path:
    """Unpack the members of the zip ``archive`` matching ``pattern`` into ``into`` (once)."""
    import fnmatch
    import zipfile

    with zipfile.ZipFile(archive) as z:
        for name in fnmatch.filter(z.namelist(), pattern):
            target = into / name
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f"{target.name}.{os.getpid()}.part")  # each process its own
                tmp.write_bytes(z.read(name))
                os.replace(tmp, target)
    return into


def source_files(source: Source, cache: Path) -> list[Path]:
    files = [f for p in source.patterns for f in expand(p, cache)]
    if not files:
        raise SystemExit(f"quality_material: source {source.name!r} matches no file ({', '.join(source.patterns)})")
    return _unique_content(files)


def _digest(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _unique_content(files: list[Path]) -> list[Path]:
    seen, out = set(), []
    for f in files:
        d = _digest(f)
        if d not in seen:
            seen.add(d)
            out.append(f)
    return out


def package_of(path: Path) -> str:
    for part in path.parts:
        if part in LICENCES:
            return part
    raise ValueError(f"not from a catalogued package: {path}")


# ---------------------------------------------------------------- audio
def load(path: Path, *, max_seconds: float | None = None) -> np.ndarray:
    """Mono float32 at 16 kHz (soundfile + soxr), optionally only the first seconds."""
    import soundfile as sf
    import soxr

    with sf.SoundFile(str(path)) as f:
        frames = -1 if max_seconds is None else int(max_seconds * f.samplerate)
        y = f.read(frames, dtype="float32", always_2d=True)
        rate = f.samplerate
    y = y.mean(axis=1)
    if rate != SR:
        y = soxr.resample(y, rate, SR).astype(np.float32)
    return np.ascontiguousarray(y, dtype=np.float32)


def trim(y: np.ndarray, *, top_db: float = 40.0, frame: int = 400) -> np.ndarray:
    """Drop leading and trailing frames quieter than ``top_db`` below the loudest frame."""
    n = len(y) // frame
    if n < 2:
        return y
    rms = np.sqrt(np.mean(y[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -top_db)
    return y[loud[0] * frame : (loud[-1] + 1) * frame]


def energy(y: np.ndarray) -> float:
    return float(np.mean(y.astype(np.float64) ** 2) + 1e-12)


def excerpt(y: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A random ``seconds`` of ``y`` (tiled when shorter)."""
    n = int(seconds * SR)
    if len(y) < n:
        y = np.tile(y, int(np.ceil(n / len(y))) + 1)
    start = int(rng.integers(0, len(y) - n + 1))
    return y[start : start + n]


def event_clip(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The clip, or a random loud-enough excerpt of at most MAX_EVENT_SECONDS, trimmed."""
    n = int(MAX_EVENT_SECONDS * SR)
    if len(y) <= n:
        return y
    whole = energy(y)
    for _ in range(20):
        start = int(rng.integers(0, len(y) - n + 1))
        part = trim(y[start : start + n])
        if energy(part) >= 0.3 * whole and len(part) >= 0.3 * SR:
            return part
    return trim(y[:n])


# ---------------------------------------------------------------- the build
@dataclass
class Pool:
    """Decoded clips of one role on one side: name -> list of (path, signal)."""

    sources: dict[str, list[tuple[Path, np.ndarray]]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.sources)

    def files(self) -> set[Path]:
        return {p for clips in self.sources.values() for p, _ in clips}

    def subset(self, names) -> Pool:
        return Pool({n: self.sources[n] for n in names})

    def draw(self, rng: np.random.Generator) -> tuple[str, Path, np.ndarray]:
        name = self.names()[int(rng.integers(len(self.sources)))]
        path, y = self.sources[name][int(rng.integers(len(self.sources[name])))]
        return name, path, y


def _decode(sources, cache: Path, *, background: bool = False) -> Pool:
    pool = Pool()
    for s in sources:
        files = source_files(s, cache)
        if background and s.kind == "speech":
            # telephone prompts strung together into one long recording (its files: _speech_files)
            parts = [np.concatenate([trim(load(f)), np.zeros(SR // 4, np.float32)]) for f in files]
            pool.sources[s.name] = [(files[0], np.concatenate(parts)[: int(BACKGROUND_CAP_SECONDS * SR)])]
            continue
        clips = []
        for f in files:
            y = load(f, max_seconds=BACKGROUND_CAP_SECONDS if background else None)
            y = y if background else trim(y)
            if background and _silent_seconds(y):
                raise SystemExit(f"quality_material: background {f} has {_silent_seconds(y)} s of silence")
            if len(y) >= 0.1 * SR:
                clips.append((f, y))
        pool.sources[s.name] = clips
    return pool


def _silent_seconds(y: np.ndarray) -> int:
    """Whole seconds of ``y`` quieter than SILENT_RMS (a background must have none)."""
    k = len(y) // SR
    return int((np.sqrt(np.mean(y[: k * SR].reshape(k, SR) ** 2, axis=1)) < SILENT_RMS).sum()) if k else 0


def _speech_files(sources, cache: Path) -> set[Path]:
    return {f for s in sources if s.kind == "speech" for f in source_files(s, cache)}


def _distractor_group(path: Path) -> str:
    stem = re.sub(r"[-_ ]?\d+$", "", path.stem.lower())
    return f"{package_of(path)}/{path.parent.name}/{stem}"


def _distractors(target: Target, used: set[Path], cache: Path) -> tuple[Pool, Pool]:
    files = [f for p in DISTRACTOR_PATTERNS for f in expand(p, cache)]
    files = [f for f in _unique_content(sorted(set(files))) if f not in used]
    used_digests = {_digest(f) for f in used}
    exclude = re.compile(target.exclude)
    train, test = Pool(), Pool()
    for f in files:
        rel = str(f)
        if exclude.search(rel) or _DISTRACTOR_DROP.search(rel) or _digest(f) in used_digests:
            continue
        y = trim(load(f))
        if len(y) < MIN_DISTRACTOR_SECONDS * SR:
            continue
        group = _distractor_group(f)
        side = test if int(hashlib.sha1(group.encode()).hexdigest(), 16) % 3 == 0 else train
        side.sources.setdefault(group, []).append((f, y))
    return train, test


def _folds(names: list[str], rng: np.random.Generator) -> list[list[str]]:
    order = list(names)
    rng.shuffle(order)
    folds = [order[i::FOLDS] for i in range(FOLDS)]
    assert all(folds), f"fewer than {FOLDS} sources: {names}"
    return folds


def mix_one(bg: np.ndarray, event: np.ndarray | None, distractors: list[np.ndarray], rng: np.random.Generator):
    """One 10 s mixture; returns (signal, target (onset, offset) or None, checks)."""
    n = int(MIX_SECONDS * SR)
    for _ in range(20):  # no stretch of digital silence (music intros, gaps): the EBR needs a background
        base = excerpt(bg, MIX_SECONDS, rng).astype(np.float64)
        if np.sqrt(np.mean(base.reshape(-1, SR) ** 2, axis=1)).min() >= SILENT_RMS:
            break
    base *= BACKGROUND_RMS * 10 ** (rng.uniform(-3, 3) / 20) / np.sqrt(energy(base))
    y = base.copy()
    placed: list[tuple[int, int]] = []
    target = None
    checks = {}

    def put(clip: np.ndarray, ebr: float, start: int) -> float:
        clip = clip[: n - start].astype(np.float64)
        # the background's energy under the event, floored at 1 % of the excerpt's so that a
        # quiet stretch never scales the event down to nothing
        under = max(energy(base[start : start + len(clip)]), 0.01 * energy(base))
        gain = np.sqrt(10 ** (ebr / 10) * under / energy(clip))
        y[start : start + len(clip)] += gain * clip
        got = 10 * np.log10(np.mean((gain * clip) ** 2) / np.mean(base[start : start + len(clip)] ** 2))
        placed.append((start, start + len(clip)))
        return got

    if event is not None:
        ebr = float(rng.choice(EBRS))
        start = int(rng.integers(0, n - len(event) + 1))
        checks = {"ebr": ebr, "ebr_measured": round(put(event, ebr, start), 3)}
        target = (start / SR, (start + min(len(event), n - start)) / SR)
    for clip in distractors:
        clip = clip[: n // 2]
        for _ in range(20):
            start = int(rng.integers(0, n - len(clip) + 1))
            if all(start + len(clip) + SR // 4 <= a or start >= b + SR // 4 for a, b in placed):
                put(clip, float(rng.choice(EBRS)), start)
                break
    peak = np.max(np.abs(y))
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32), target, checks


def _write(path: Path, y: np.ndarray) -> None:
    import soundfile as sf

    sf.write(str(path), y, SR, subtype="PCM_16")


def _mixtures(out: Path, count: int, label: str, groups: list[tuple[str, Pool, Pool, Pool]], rng) -> dict:
    """``count`` mixtures into ``out``; group i takes mixtures i, i+len(groups), ..."""
    out.mkdir(parents=True, exist_ok=True)
    rows = ["filename\tonset\toffset\tevent_label\tgroup"]
    used = {"target": set(), "background": set(), "distractor": set()}
    ebr_errors, present = [], 0
    for i in range(count):
        group, events, backgrounds, distractors = groups[i % len(groups)]
        _, bg_path, bg = backgrounds.draw(rng)
        used["background"].add(str(bg_path))
        event = None
        if rng.random() < 0.5:
            _, ev_path, clip = events.draw(rng)
            used["target"].add(str(ev_path))
            event = event_clip(clip, rng)
        extra = []
        for _ in range(int(rng.integers(0, 3))):
            _, d_path, d = distractors.draw(rng)
            used["distractor"].add(str(d_path))
            extra.append(d)
        y, target, checks = mix_one(bg, event, extra, rng)
        name = f"{label}_{i:04d}.wav"
        _write(out / name, y)
        if target is None:
            rows.append(f"{name}\t\t\t\t{group}")
        else:
            present += 1
            rows.append(f"{name}\t{target[0]:.3f}\t{target[1]:.3f}\t{label}\t{group}")
            ebr_errors.append(abs(checks["ebr_measured"] - checks["ebr"]))  # > 0 only where floored
    (out / "annotations.tsv").write_text("\n".join(rows) + "\n")
    return {
        "mixtures": count,
        "with_target": present,
        "max_ebr_error_db": max(ebr_errors, default=0.0),
        "events_over_floored_background": int(sum(e > 0.01 for e in ebr_errors)),
        "files_used": {k: sorted(v) for k, v in used.items()},
    }


def _string_together(clips: list[np.ndarray], seconds: float, gap: float = 0.5) -> list[np.ndarray]:
    """Clips one after another with gaps, cut into files of about ``seconds``."""
    files, current, length = [], [], 0
    for c in clips:
        current += [c, np.zeros(int(gap * SR), np.float32)]
        length += len(c) + int(gap * SR)
        if length >= seconds * SR:
            files.append(np.concatenate(current))
            current, length = [], 0
    if current:
        files.append(np.concatenate(current))
    return files


def build(target_name: str, cache: Path, *, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Build (or reuse) one target's material; returns its folder."""
    target = TARGETS[target_name]
    key = f"{target_name}-v{MATERIAL_VERSION}-train{n_train}-test{n_test}-seed{seed}"
    folder = cache / "material" / key
    if (folder / "material.json").is_file():
        return folder
    rng = np.random.default_rng([seed, sum(map(ord, target_name))])
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    bg_train = [b for b in BACKGROUNDS_TRAIN if b.kind not in target.backgrounds_excluded]
    bg_test = [b for b in BACKGROUNDS_TEST if b.kind not in target.backgrounds_excluded]
    ev_train, ev_test = _decode(target.train, cache), _decode(target.test, cache)
    bgs_train, bgs_test = _decode(bg_train, cache, background=True), _decode(bg_test, cache, background=True)
    used = ev_train.files() | ev_test.files() | bgs_train.files() | bgs_test.files()
    used |= _speech_files(bg_train + bg_test, cache)
    # every catalogued target file of either side is excluded from distractors
    d_train, d_test = _distractors(target, used, cache)

    train_files = ev_train.files() | bgs_train.files() | d_train.files() | _speech_files(bg_train, cache)
    test_files = ev_test.files() | bgs_test.files() | d_test.files() | _speech_files(bg_test, cache)
    shared = train_files & test_files
    assert not shared, f"train and test share source files: {sorted(map(str, shared))[:5]}"
    digests_train = {_digest(f) for f in train_files}
    assert not any(_digest(f) in digests_train for f in test_files), "train and test share identical audio"

    ev_folds, bg_folds, d_folds = (_folds(p.names(), rng) for p in (ev_train, bgs_train, d_train))
    groups = [
        (f"fold{k + 1}", ev_train.subset(ev_folds[k]), bgs_train.subset(bg_folds[k]), d_train.subset(d_folds[k]))
        for k in range(FOLDS)
    ]
    train_info = _mixtures(tmp / "train", n_train, target.label, groups, rng)
    test_info = _mixtures(tmp / "test", n_test, target.label, [("test", ev_test, bgs_test, d_test)], rng)

    negatives = tmp / "negatives"
    negatives.mkdir()
    for name in bgs_train.names():
        for j, (_, y) in enumerate(bgs_train.sources[name]):
            _write(negatives / f"background_{name}_{j}.wav", y)
    clips = [y for n in d_train.names() for _, y in d_train.sources[n]]
    for j, y in enumerate(_string_together(clips, 60.0)):
        _write(negatives / f"effects_{j:02d}.wav", y)

    background = tmp / "test-background"
    background.mkdir()
    seconds = 0.0
    for name in bgs_test.names():
        for j, (_, y) in enumerate(bgs_test.sources[name]):
            y = y[: int(TEST_BACKGROUND_CAP_SECONDS * SR)]  # no kind (music) dominates the hour
            _write(background / f"{name}_{j}.wav", y)
            seconds += len(y) / SR

    def describe(pool: Pool, roles) -> dict:
        return {
            n: {"files": [str(p) for p, _ in pool.sources[n]], "packages": sorted({package_of(p) for p, _ in pool.sources[n]})}
            for n in pool.names()
        } | ({"kinds": {s.name: s.kind for s in roles}} if roles else {})

    info = {
        "target": target.label,
        "seed": seed,
        "mixture_seconds": MIX_SECONDS,
        "sample_rate": SR,
        "ebrs_db": list(EBRS),
        "max_event_seconds": MAX_EVENT_SECONDS,
        "licences": LICENCES,
        "targets": {"train": describe(ev_train, None), "test": describe(ev_test, None)},
        "backgrounds": {"train": describe(bgs_train, bg_train), "test": describe(bgs_test, bg_test)},
        "distractor_groups": {"train": len(d_train.sources), "test": len(d_test.sources)},
        "distractor_files": {"train": len(d_train.files()), "test": len(d_test.files())},
        "folds": {
            f"fold{k + 1}": {"targets": ev_folds[k], "backgrounds": bg_folds[k], "distractor_groups": len(d_folds[k])}
            for k in range(FOLDS)
        },
        "train": train_info,
        "test": test_info,
        "negatives_files": len(list(negatives.glob("*.wav"))),
        "test_background_seconds": round(seconds, 2),
    }
    (tmp / "material.json").write_text(json.dumps(info, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def summary(folder: Path) -> dict:
    info = json.loads((folder / "material.json").read_text())
    return {
        "target": info["target"],
        "target_sources": {side: len(info["targets"][side]) for side in ("train", "test")},
        "target_files": {side: sum(len(v["files"]) for v in info["targets"][side].values()) for side in ("train", "test")},
        "background_sources": {side: len(info["backgrounds"][side]) - 1 for side in ("train", "test")},
        "distractor_files": info["distractor_files"],
        "mixtures": {side: info[side]["mixtures"] for side in ("train", "test")},
        "with_target": {side: info[side]["with_target"] for side in ("train", "test")},
        "max_ebr_error_db": max(info["train"]["max_ebr_error_db"], info["test"]["max_ebr_error_db"]),
        "test_background_seconds": info["test_background_seconds"],
        "packages": sorted(
            {
                p
                for role in ("targets", "backgrounds")
                for side in ("train", "test")
                for k, v in info[role][side].items()
                if k != "kinds"
                for p in v["packages"]
            }
        ),
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--train", type=int, default=250)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("SOUNDNET_BENCH_CACHE", "/tmp/soundnet-bench")) / "quality"
    )
    args = parser.parse_args()
    for name in args.targets.split(","):
        folder = build(name, args.cache, n_train=args.train, n_test=args.test)
        print(folder)
        print(json.dumps(summary(folder), indent=1))
