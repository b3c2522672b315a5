"""Build soundnet's bundled default detector: smoke and CO alarms, from synthetic audio.

Usage::

    python scripts/build_default_model.py --work build/alarm [--seed 0] [--install]
        [--alarm-realism field|plain] [--sounders all|piezo] [--negatives NEG/train]
        [--tune-negative-packages PKG,PKG] [--max-false-alarms-per-hour X]
        [--heldout-negatives NEG/heldout] [--retune-only]
    python scripts/build_default_model.py --work build/measure --measure-only \
        --heldout-negatives NEG/heldout [--model RUN]

Nothing is downloaded by this script (``scripts/real_negatives.py`` builds ``NEG``, real
non-alarm audio from Debian packages). Every sound is made by the pure-numpy generators of
:mod:`soundnet.signals` (each draws only from the ``numpy.random.Generator`` it is
given; there is no module-level randomness), so the same ``--seed`` gives the same
clips, mixtures and examples, byte for byte.

What is built
-------------
``WORK/clips/`` holds isolated clips, one folder per label:

* ``smoke_alarm`` (the target):
  - ISO 8201 temporal-three (T3) smoke alarms: three 0.5 s beeps 0.5 s apart, then
    1.5 s of silence (timing within +-7 %), one or two cycles per clip, from a piezo
    sounder at 2.8-3.6 kHz (a sine with some 2nd/3rd harmonic, slight detuning and
    drift, a random amplitude envelope) or from a newer low-frequency sounder (a
    520 Hz square wave) in the same T3 pattern;
  - temporal-four (T4) CO alarms: four 0.1 s beeps 0.1 s apart at 3.1-3.4 kHz (one
    group per clip; the 5 s pause that separates groups in a sounding CO alarm lies
    between events, never inside one);
  - about half of them through a random simple room response (an exponentially
    decaying noise impulse response, RT60 0.15-0.8 s).

  That is ``--alarm-realism plain``, the data of the detector bundled now (byte for
  byte). The default, ``--alarm-realism field`` (:func:`field_alarm_clip`), makes the
  alarms as a microphone in a home hears them: a third from other sounders
  (:func:`device_variant`: every interval within ISO 8201's +-10 %, piezo 2.4-4.2 kHz,
  low-frequency 440-620 Hz, overdriven piezos with strong harmonics), then a room at a
  distance (RT60 0.2-1.5 s, direct-to-reverberant -12 to +10 dB, early reflections; 85 %),
  a door (0.8-2.5 kHz low-pass; 15 %), a cheap microphone or small loudspeaker
  (band-limiting, sometimes telephone band, resonances; 60 %) and clipping (15 %).
  ``WORK/clips_alarms.json`` records what each clip was drawn with.
* ``backgrounds`` (no label): white, pink and brown noise, mains hum (50/60 Hz with
  harmonics), speech-like babble (glottal pulse trains at 90-250 Hz with random pitch
  contours through four formant resonators, amplitude-modulated at syllable rate),
  music-like textures (random notes of harmonic tones with ADSR envelopes),
  clicks and knocks, and near-silence; 20-40 s each at -50 to -15 dBFS RMS, often
  with a second, quieter kind mixed in.
* distractors, which teach the detector what is *not* an alarm: ``beep`` (single
  appliance beeps of 0.1-0.3 s at 0.8-2.5 kHz), ``ring`` (telephone rings: two
  tones at 400-480 Hz, alternated or together, in 0.4-2 s bursts) and ``whistle``
  (sine glides of at least a third of an octave, 0.8-3.8 kHz, with vibrato).

Labelling decision
------------------
**An alarm clip is one event from the onset of its first beep to the offset of its
last beep.** The silences *inside* a T3 cycle (and between the two cycles of a
two-cycle clip) belong to the event: the whole pattern is "the alarm sounding". Each
clip starts at its first beep's onset and ends at its last beep's offset (a room
response's tail is faded out there), so ``soundnet synth``'s annotation of a placed
clip is exactly that event. A T4 event is one group of four beeps (0.7 s).

Pipeline
--------
The clips feed the real command line of the ``soundnet`` installed beside this
Python: ``synth`` (training mixtures; tuning mixtures from the same clips with another
seed; a held-out set from freshly generated clips with other seeds), ``extract``,
``train`` (with a small config written to ``WORK/train.yaml``, sized for about 15
minutes on 2 cores) and ``evaluate`` on the held-out set (``WORK/heldout.json``).
Between training and evaluation the post-processing is re-tuned on the tuning
mixtures with soundnet's own search, but with merge gaps up to 2 s (``soundnet train``
stops at 0.5 s): under the labelling decision above a sounding T3 alarm is one event
across its 1.5 s inter-cycle silence, longer than the network's 1 s window can bridge.
The script also writes ``WORK/smoke_alarm.wav`` (a kitchen-like scene: babble, mains
hum, appliance beeps and one T3 alarm sounding twice, from seeds never used for
training) and its Audacity label file ``WORK/smoke_alarm.txt``.

Real negatives
--------------
``--negatives DIR`` (``scripts/real_negatives.py``'s ``train/``: audio with no alarm) is
given to ``soundnet extract --negatives`` when the installed soundnet has that option
(read from ``soundnet extract --help``), and its files are mixed in as backgrounds of
the training and tuning mixtures beside the synthetic ones (``WORK/backgrounds_train/``,
links; as many real files as synthetic ones, or all of them when extract has no
``--negatives``). ``--tune-negative-packages`` first splits it by whole package
(:func:`split_negatives`): those packages' files (``WORK/negatives_tune/``) are never
trained on and join the tuning mixtures in the re-tuning, every detection there a false
alarm; ``--max-false-alarms-per-hour X`` then chooses the fewest misses within X false
alarms per hour over all the tuning audio (:func:`retune`, :data:`RETUNE_GRID`).
``--heldout-negatives DIR`` (its ``heldout/``, whole packages never trained or tuned on)
measures false alarms per hour of the trained detector there, into
``WORK/heldout.json`` (``heldout_negatives``) and, with ``--install``, the card
(:func:`measure_negatives`: ``soundnet detect`` events, checked against ``soundnet
evaluate``). ``--measure-only`` does only that measurement, for ``--model`` or the
bundled detector. With ``--heldout-negatives``, the held-out alarm clips are also mixed
over that real audio (``WORK/test_real``, synth seed + 3000) and scored there
(``heldout_real_backgrounds``); ``WORK/test`` keeps synthetic backgrounds, comparable
with earlier builds. ``--retune-only`` re-tunes, re-measures (and with ``--install``
installs) the run already trained in ``WORK`` with the same options;
``scripts/operating_points.py`` gives a build's other operating points.
``--sounders piezo`` leaves the low-frequency (440-620 Hz) sounders out of the target
and of the held-out alarms.
``--tune-clips N`` makes the tuning mixtures of N alarm clips drawn for tuning alone
(``WORK/clips_tune``, their own seeds) over fresh synthetic backgrounds and the tuning
share of the real negatives, instead of the training clips (:func:`fresh_tuning_set`; with
``--retune-only`` too).

Nothing in the repository changes without ``--install``. With it, the run folder (all
but its history and log) is copied to ``soundnet/models/default/``, its card extended
with a ``description`` and a ``heldout`` section (the held-out sed_eval figures and the
rebuild command), and the example to ``examples/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from soundnet.signals import (
    BACKGROUND_KINDS,
    DISTRACTORS,
    SR,
    alarm_clip,
    background_clip,
    db,
    fft_convolve,
    kitchen_scene,
    pattern,
    piezo_beep,
    resonance,
    spectral_shape,
    square_beep,
)
from soundnet.storage import write_atomic, write_text

TARGET = "smoke_alarm"
EXAMPLE, EXAMPLE_LABELS = "smoke_alarm.wav", "smoke_alarm.txt"  # in WORK/, and examples/ once installed
REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "soundnet" / "models" / "default"
EXAMPLES = REPO / "examples"
BUNDLE_LIMIT = 1_000_000  # bytes
NOT_BUNDLED = {"history.csv", "train.log"}

# Random streams: each clip draws from default_rng([seed, stream, kind, index]).
STREAM_TRAIN, STREAM_TEST, STREAM_EXAMPLE, STREAM_TUNE = 1, 2, 3, 4
TEST_SYNTH_OFFSET = 1000  # held-out mixtures use synth seed = seed + this
TUNE_SYNTH_OFFSET = 2000  # post-processing tuning mixtures use seed + this
TEST_REAL_SYNTH_OFFSET = 3000  # held-out alarms over held-out real negatives use seed + this


def description(sounders: str = "all") -> str:
    """The card's description of the detector built with ``--sounders``."""
    t3 = (
        "from piezo sounders at 2.4-4.2 kHz (low-frequency 440-620 Hz sounders are NOT detected)"
        if sounders == "piezo"
        else "from piezo sounders at 2.4-4.2 kHz or 440-620 Hz square-wave sounders"
    )
    return (
        "Detects smoke and CO alarms sounding: the ISO 8201 temporal-three pattern (three 0.5 s beeps "
        f"0.5 s apart, then 1.5 s silence) {t3}, and the CO temporal-four pattern (four 0.1 s beeps 0.1 s "
        "apart). One event runs from the first beep's onset to the last beep's offset of a sounding pattern. "
        "Trained on synthetic alarms (field-realistic rooms, devices and microphones) over synthetic and real "
        "non-alarm audio (scripts/build_default_model.py, scripts/real_negatives.py); its post-processing keeps "
        "false alarms near 1 an hour on real audio it never heard, at the cost of missing many alarms (see the "
        "card's heldout figures). Not trained on, and not meant for, other alarms (sirens, car and burglar "
        "alarms, timers, low-battery chirps). Check it on your own recordings before relying on it; it is not "
        "a life-safety device."
    )


# ---------------------------------------------------------------------------
# Files


def write_wav(path: Path, y: np.ndarray, *, sr: int = SR) -> None:
    """Write mono 16-bit PCM WAV (clipped to [-1, 1]), all or nothing.

    The samples are rounded to 16 bits here (``round(32767 y)``, the rounding the
    bundled clips and example were made with) rather than by libsndfile, whose
    float-to-PCM rounding differs by one step in places and would change their bytes.
    """
    pcm = np.round(np.clip(y, -1.0, 1.0) * 32767).astype(np.int16)
    write_atomic(path, lambda tmp: sf.write(tmp, pcm, sr, subtype="PCM_16", format="WAV"))


# ---------------------------------------------------------------------------
# Field realism (--alarm-realism field): alarms as a real microphone hears them.
# Each step draws only from the clip's own generator, so a seed still gives the same bytes.


def device_variant(rng: np.random.Generator, *, sr: int = SR) -> tuple[np.ndarray, dict]:
    """An alarm from a sounder that :func:`soundnet.signals.alarm_clip` does not model.

    ISO 8201's full tolerance drawn for *each* interval (T3: every beep 0.5 s, gap
    0.5 s and pause 1.5 s within +-10 %; T4: 0.1 s beeps and gaps within +-10 %),
    sounder frequencies past the usual band (piezo 2.4-4.2 kHz, low-frequency
    sounders 440-620 Hz), one or two T3 cycles, and a piezo driven hard (a
    ``tanh`` overdrive: strong odd harmonics, those above 8 kHz filtered off). Starts at the first beep's onset and
    ends at the last beep's offset, like every alarm clip.
    """
    kind = str(rng.choice(["t3_piezo", "t3_low", "t4_co"], p=[0.5, 0.2, 0.3]))
    if kind == "t4_co":
        frequency, cycles, per_cycle, on, off, pause = rng.uniform(2700, 3700), 1, 4, 0.1, 0.1, 0.0
    else:
        frequency = rng.uniform(2400, 4200) if kind == "t3_piezo" else rng.uniform(440, 620)
        cycles, per_cycle, on, off, pause = int(rng.integers(1, 3)), 3, 0.5, 0.5, 1.5
    drive = rng.uniform(1.0, 5.0) if kind != "t3_low" and rng.random() < 0.5 else 0.0
    from scipy.signal import resample_poly

    onsets, beeps, t = [], [], 0.0
    for _ in range(cycles):
        for b in range(per_cycle):
            length = on * rng.uniform(0.9, 1.1)
            detune = frequency * (1 + rng.uniform(-0.005, 0.005))
            make = square_beep if kind == "t3_low" else piezo_beep
            if drive:  # overdriven at 4x the rate and filtered down, so its harmonics never alias
                beep = make(length, frequency=detune, rng=rng, sr=4 * sr)
                beep = resample_poly(np.tanh(drive * beep) / np.tanh(drive), 1, 4)[: int(round(length * sr))]
            else:
                beep = make(length, frequency=detune, rng=rng, sr=sr)
            onsets.append(t)
            beeps.append(beep * db(rng.uniform(-2.0, 2.0)))
            t += length + (off * rng.uniform(0.9, 1.1) if b < per_cycle - 1 else 0.0)
        t += pause * rng.uniform(0.9, 1.1)
    info = {"kind": f"{kind}_variant", "frequency": round(float(frequency), 1), "cycles": cycles, "overdrive": round(drive, 2)}
    return pattern(beeps, onsets, sr=sr), info


def field_room(y: np.ndarray, *, rng: np.random.Generator, sr: int = SR) -> tuple[np.ndarray, dict]:
    """``y`` heard in a room at a distance: RT60 0.2-1.5 s, direct-to-reverberant ratio
    -12 to +10 dB (far to near), a few early reflections, a tail that darkens with time;
    cut to the length of ``y``."""
    rt60, drr = rng.uniform(0.2, 1.5), rng.uniform(-12, 10)
    length = int(min(rt60, 1.0) * sr)
    t = np.arange(length) / sr
    tail = rng.standard_normal(length) * np.exp(-6.91 * t / rt60)
    # air and furnishings absorb highs faster: a low-pass whose corner falls along the tail
    half = length // 2
    tail[:half] = spectral_shape(tail[:half], gain=lambda f: 1 / np.sqrt(1 + (f / rng.uniform(3000, 7000)) ** 2), sr=sr)
    tail[half:] = spectral_shape(tail[half:], gain=lambda f: 1 / np.sqrt(1 + (f / rng.uniform(1500, 3500)) ** 2), sr=sr)
    tail *= db(-drr) / np.sqrt(np.sum(tail**2))
    h = np.zeros(length + int(0.03 * sr))
    h[0] = 1.0
    for _ in range(int(rng.integers(2, 6))):
        h[int(rng.uniform(0.001, 0.025) * sr)] += db(rng.uniform(-12, -3)) * rng.choice([-1, 1])
    start = int(rng.uniform(0.003, 0.02) * sr)
    h[start : start + length] += tail[: len(h) - start]
    return fft_convolve(y, h)[: len(y)], {"rt60": round(rt60, 2), "drr_db": round(drr, 1)}


def device_colouring(y: np.ndarray, *, rng: np.random.Generator, sr: int = SR) -> tuple[np.ndarray, dict]:
    """A cheap microphone or a small loudspeaker (a phone, a doorbell camera, a TV):
    a high-pass at 80-400 Hz, a low-pass at 3.4-7.5 kHz (sometimes telephone-band,
    300-3400 Hz, which takes most of a 3 kHz piezo's level), one or two resonances of
    +3 to +10 dB at 1-6 kHz."""
    if rng.random() < 0.15:
        high, low, order = 300.0, 3400.0, 4
    else:
        high, low, order = rng.uniform(80, 400), rng.uniform(3400, 7500), int(rng.choice([2, 4]))
    peaks = [(rng.uniform(1000, 6000), rng.uniform(3, 10), rng.uniform(0.1, 0.4)) for _ in range(int(rng.integers(1, 3)))]

    def gain(f: np.ndarray) -> np.ndarray:
        g = 1 / np.sqrt(1 + (high / np.maximum(f, 1.0)) ** 4) / np.sqrt(1 + (f / low) ** (2 * order))
        for centre, boost, width in peaks:
            r = resonance(f, centre=centre, bandwidth=width * centre)
            g *= 1 + (db(boost) - 1) * r / np.max(r)
        return g

    info = {"highpass_hz": round(high), "lowpass_hz": round(low), "resonances_hz": [round(c) for c, _, _ in peaks]}
    return spectral_shape(y, gain=gain, sr=sr), info


def field_alarm_clip(rng: np.random.Generator, *, sr: int = SR) -> tuple[np.ndarray, dict]:
    """One alarm event as recorded in the field; peak 0.5, first beep's onset to last
    beep's offset (the labelling decision holds).

    A third of the clips come from :func:`device_variant`, the rest from
    :func:`soundnet.signals.alarm_clip` without its simple room. Then, each step drawn:
    a room at a distance (:func:`field_room`, 85 %), behind a door (a 0.8-2.5 kHz
    low-pass, 15 %), a cheap microphone or small loudspeaker (:func:`device_colouring`,
    60 %), and clipping of an overloaded input (15 %: hard clipping at 1.5-9 dB of
    overdrive, sometimes asymmetric). About 3 % of the clips pass through none.
    """
    if rng.random() < 1 / 3:
        y, info = device_variant(rng, sr=sr)
    else:
        y, info = alarm_clip(rng, room=False, sr=sr)
        info = {k: v for k, v in info.items() if k not in ("room", "duration")}
    chain = []
    if rng.random() < 0.85:
        y, room = field_room(y, rng=rng, sr=sr)
        chain.append({"room": room})
    if rng.random() < 0.15:
        corner = rng.uniform(800, 2500)
        y = spectral_shape(y, gain=lambda f: 1 / np.sqrt(1 + (f / corner) ** 4), sr=sr)
        chain.append({"door_lowpass_hz": round(corner)})
    if rng.random() < 0.6:
        y, colour = device_colouring(y, rng=rng, sr=sr)
        chain.append({"device": colour})
    if rng.random() < 0.15:
        overdrive = rng.uniform(1.5, 9.0)
        y = y * db(overdrive) / np.max(np.abs(y))
        low = -1.0 if rng.random() < 0.5 else -rng.uniform(0.6, 1.0)
        y = np.clip(y, low, 1.0)
        chain.append({"clipping_db": round(overdrive, 1)})
    fade = min(len(y), int(0.015 * sr))
    y[-fade:] *= np.linspace(1.0, 0.0, fade)
    y = y * 0.5 / np.max(np.abs(y))
    return y, {**info, "chain": chain, "duration": len(y) / sr}


LOW_FREQUENCY_KINDS = ("t3_520", "t3_low_variant")  # the 440-620 Hz square-wave sounders


def make_clips(
    root: Path,
    *,
    seed: int,
    stream: int,
    alarms: int,
    backgrounds: int,
    distractors: int,
    realism: str = "plain",
    sounders: str = "all",
) -> dict:
    """Generate the clip folders under ``root`` (replacing them); returns a summary.

    ``realism`` "plain": the alarms of :func:`soundnet.signals.alarm_clip` (the bundled
    detector's); "field": :func:`field_alarm_clip`. ``sounders`` "piezo": no
    low-frequency sounder (:data:`LOW_FREQUENCY_KINDS`): such a draw is redrawn from the
    clip's own generator, so the clips stay reproducible.
    """
    if root.exists():
        shutil.rmtree(root)
    summary: dict = {"alarms": {}, "backgrounds": {}, "distractors": {}}
    drawn = {}
    for i in range(alarms):
        rng = np.random.default_rng([seed, stream, 0, i])
        y, info = field_alarm_clip(rng) if realism == "field" else alarm_clip(rng)
        while sounders == "piezo" and info["kind"] in LOW_FREQUENCY_KINDS:
            y, info = field_alarm_clip(rng) if realism == "field" else alarm_clip(rng)
        write_wav(root / TARGET / f"alarm_{i:03d}_{info['kind']}.wav", y)
        drawn[f"alarm_{i:03d}_{info['kind']}.wav"] = info
        summary["alarms"][info["kind"]] = summary["alarms"].get(info["kind"], 0) + 1
    for i in range(backgrounds):
        kind = list(BACKGROUND_KINDS)[i % len(BACKGROUND_KINDS)]  # every kind equally often
        y, info = background_clip(np.random.default_rng([seed, stream, 1, i]), kind=kind)
        write_wav(root / "backgrounds" / f"bg_{i:03d}_{info['kind']}.wav", y)
        summary["backgrounds"][info["kind"]] = summary["backgrounds"].get(info["kind"], 0) + 1
    for k, (label, make) in enumerate(DISTRACTORS.items()):
        for i in range(distractors):
            write_wav(root / label / f"{label}_{i:03d}.wav", make(np.random.default_rng([seed, stream, 2 + k, i])))
        summary["distractors"][label] = distractors
    # what each alarm clip was drawn with, beside (not inside) the clip folders
    write_text(
        root.parent / f"{root.name}_alarms.json",
        json.dumps({"realism": realism, "sounders": sounders, "clips": drawn}, indent=1) + "\n",
    )
    return summary


def write_example(folder: Path, *, seed: int) -> list[tuple[float, float]]:
    """Write the example scene ``folder/smoke_alarm.wav`` and its Audacity labels ``smoke_alarm.txt``."""
    y, events = kitchen_scene(np.random.default_rng([seed, STREAM_EXAMPLE]))
    write_wav(folder / EXAMPLE, y)
    write_text(folder / EXAMPLE_LABELS, "".join(f"{a:.6f}\t{b:.6f}\t{TARGET}\n" for a, b in events))
    return events


# ---------------------------------------------------------------------------
# The pipeline


def soundnet(*args, log: Path, echo: bool = True) -> str:
    """Run the ``soundnet`` beside this Python with ``args``; echo and log; return stdout."""
    exe = Path(sys.executable).parent / "soundnet"
    command = [str(exe), *map(str, args)]
    if echo:
        print("$", " ".join(command[1:]).replace(str(REPO) + "/", ""), flush=True)
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n[{time.monotonic() - started:.1f} s]\n\n")
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"soundnet {args[0]} failed (exit {result.returncode}); see {log}")
    if echo:
        print(result.stdout.rstrip() + f"\n  [{time.monotonic() - started:.1f} s]", flush=True)
    return result.stdout


# ---------------------------------------------------------------------------
# False alarms on real non-alarm audio (--heldout-negatives)


def measure_negatives(folder: Path, *, model: Path | None, example: Path, work: Path, log: Path) -> dict:
    """False alarms per hour of ``model`` (None: the bundled detector) on ``folder``,
    audio holding no alarm, counted two ways that must agree:

    * ``soundnet detect FOLDER --format tsv``: every event is a false alarm;
    * ``soundnet evaluate``: with a reference table naming every file with no event.
      ``soundnet evaluate`` refuses a reference that holds no event of the target
      label, so the alarm example (``example``, with its Audacity labels beside it)
      is scored with them; its counts are reported apart (it must still be found) and
      left out of the false alarms.
    """
    from soundnet.audio import audio_files

    folder = folder.resolve()
    files = audio_files(folder)
    hours = sum(sf.info(str(path)).duration for path in files) / 3600
    names = [path.relative_to(folder).as_posix() for path in files]
    model_args = ["--model", model] if model is not None else []
    detected = work / "heldout_negatives_detect.tsv"
    soundnet("detect", folder, *model_args, "--format", "tsv", "--output", detected, log=log)
    per_file: dict[str, int] = {}
    for line in detected.read_text(encoding="utf-8").splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1]:
            per_file[fields[0]] = per_file.get(fields[0], 0) + 1
    reference = work / "heldout_negatives_reference.tsv"
    labels = example.with_suffix(".txt").read_text(encoding="utf-8").splitlines()
    rows = [f"{name}\n" for name in names] + [f"{example.name}\t{line}\n" for line in labels if line.strip()]
    write_text(reference, "".join(rows))
    scored = work / "heldout_negatives_evaluate.json"
    soundnet("evaluate", folder, example, "--annotations", reference, *model_args, "--output", scored, log=log)
    evaluation = json.loads(scored.read_text(encoding="utf-8"))["files"]
    example_counts = next(v for k, v in evaluation.items() if Path(k).name == example.name)
    evaluated = sum(v["estimated"] for k, v in evaluation.items() if Path(k).name != example.name)
    events = sum(per_file.values())
    top = sorted(per_file.items(), key=lambda item: -item[1])[:15]
    return {
        "folder": str(folder),
        "files": len(files),
        "hours": round(hours, 3),
        "false_alarms_detect": events,
        "false_alarms_evaluate": evaluated,
        "agree": events == evaluated,
        "false_alarms_per_hour": round(events / hours, 2) if hours else None,
        "example": {"file": str(example), **example_counts},
        "top_files": [{"file": name, "false_alarms": count} for name, count in top],
        "method": "events of soundnet detect --format tsv (each a false alarm: the audio holds no alarm), "
        "checked against soundnet evaluate with a reference naming every file with no event",
    }


def negatives_backgrounds(work: Path, *, synthetic: Path, negatives: Path, name: str, real: int | None = None) -> Path:
    """A folder ``WORK/name`` of links to the synthetic backgrounds and the real negatives
    (for ``soundnet synth --backgrounds``, which takes one folder).

    ``real``: link only that many of the real files, evenly spaced in name order (every
    package stays in), so that the synthetic backgrounds are not swamped; None: all.
    """
    from soundnet.audio import audio_files

    folder = work / name
    if folder.exists():
        shutil.rmtree(folder)
    real_files = audio_files(negatives.resolve())
    if real is not None and real < len(real_files):
        real_files = [real_files[i] for i in np.linspace(0, len(real_files) - 1, real).round().astype(int)]
    for source, prefix, paths in (
        (synthetic, "synthetic", audio_files(synthetic)),
        (negatives.resolve(), "real", real_files),
    ):
        for path in paths:
            link = folder / prefix / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
    return folder


def split_negatives(negatives: Path, *, packages: list[str], work: Path) -> tuple[Path, Path]:
    """Split ``negatives`` (``scripts/real_negatives.py``'s ``train/``) by whole package into
    ``WORK/negatives_train/`` and ``WORK/negatives_tune/`` (links): the files named
    ``PACKAGE_NNN.wav`` of ``packages`` go to the tuning share, never trained on."""
    from soundnet.audio import audio_files

    negatives = negatives.resolve()
    unknown = [p for p in packages if not any(f.name.startswith(p + "_") for f in audio_files(negatives))]
    if unknown:
        raise SystemExit(f"--tune-negative-packages: no file of {', '.join(unknown)} in {negatives}")
    shares = {"negatives_train": work / "negatives_train", "negatives_tune": work / "negatives_tune"}
    for folder in shares.values():
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    for path in audio_files(negatives):
        share = "negatives_tune" if any(path.name.startswith(p + "_") for p in packages) else "negatives_train"
        (shares[share] / path.relative_to(negatives)).symlink_to(path)
    return shares["negatives_train"], shares["negatives_tune"]


def extract_supports_negatives(log: Path) -> bool:
    """Whether the installed ``soundnet extract`` takes ``--negatives DIR``."""
    return "--negatives" in soundnet("extract", "--help", log=log, echo=False)


def training_config(args: argparse.Namespace) -> str:
    """The YAML features framing and training section for this build (everything else at
    soundnet's defaults). With ``--hop-length 640`` a frame is 40 ms, so the network's
    100-frame window spans 4 s: a whole T3 cycle (three beeps and the 1.5 s pause)."""
    return (
        "# written by scripts/build_default_model.py\n"
        "features:\n"
        f"  hop_length: {args.hop_length}\n"
        f"  n_fft: {args.n_fft}\n"
        f"  win_length: {args.win_length}\n"
        "training:\n"
        f"  epochs: {args.epochs}\n"
        f"  patience: {args.patience}\n"
        f"  stride: {args.stride}\n"
        f"  batch_size: {args.batch_size}\n"
        f"  learning_rate: {args.learning_rate}\n"
        f"  validation_fraction: {args.validation_fraction}\n"
        f"  negative_ratio: {args.negative_ratio}\n"
        f"  hard_negative_weight: {args.hard_negative_weight}\n"
        f"  seed: {args.seed}\n"
    )


def rebuild_command(args: argparse.Namespace) -> str:
    parts = ["python scripts/build_default_model.py", "--work", str(args.work_arg), "--seed", str(args.seed)]
    for name, default in DEFAULTS.items():
        value = getattr(args, name)
        if value != default:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    if args.alarm_realism != "field":
        parts += ["--alarm-realism", args.alarm_realism]
    if args.sounders != "all":
        parts += ["--sounders", args.sounders]
    for name in ("negatives", "tune_negative_packages", "max_false_alarms_per_hour", "heldout_negatives"):
        if getattr(args, name) is not None:
            parts += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return " ".join(parts + (["--verify"] if args.verify else []) + ["--install"])


def heldout_summary(evaluation: dict) -> dict:
    keep = ("f_measure", "precision", "recall", "error_rate")
    return {
        "files": len(evaluation.get("files", {})),
        "event_onset": {k: evaluation["event_onset"][k] for k in keep},
        "event_onset_offset": {k: evaluation["event_onset_offset"][k] for k in keep},
        "segment": {k: evaluation["segment"][k] for k in keep},
        "frame": evaluation.get("frame"),
        "psds": {k: v["psds"] for k, v in (evaluation.get("psds") or {}).items()},
        "confidence": {
            k: (evaluation.get("confidence") or {}).get(k) for k in ("events", "true_events", "calibration", "ece", "ece_raw")
        },
        "metrics": "sed_eval: event-based with 0.5 s onset collar (offsets ignored), "
        "onset+offset (offset collar 50 % of length), segment-based on 1 s segments; frame-level average precision; "
        "PSDS1 and PSDS2 of sed_scores_eval (DCASE scenarios, per-frame probabilities); expected calibration error "
        "of event confidence (10 bins; ece: as detect reports it, ece_raw: the network's)",
        **{k: evaluation[k] for k in ("heldout_negatives", "heldout_real_backgrounds") if k in evaluation},
    }


# The re-tuning grid: soundnet's, with merge gaps up to 2 s (the labelling decision), and
# stricter thresholds and longer medians and minimum durations (for a false alarm limit: an
# alarm keeps the probability up for a second or more, most false alarms are shorter), and
# hysteresis (an alarm whose probability dips below a strict threshold keeps its length).
RETUNE_GRID = {
    "threshold": (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.96, 0.965, 0.97, 0.975, 0.98, 0.985, 0.99),
    "median_seconds": (0.0, 0.11, 0.21, 0.51, 1.01),
    "min_duration": (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 1.6, 2.0),
    "merge_gap": (0.5, 1.0, 1.6, 2.0),
    "off_threshold": (None, 0.5, 0.8),
}


def retune(
    run: Path,
    folder: Path,
    *,
    work: Path,
    negatives: Path | None = None,
    max_false_alarms_per_hour: float | None = None,
    verify: bool = False,
) -> dict:
    """Re-tune the run's post-processing on the tuning mixtures in ``folder`` (and the
    real non-alarm audio in ``negatives``, every detection there a false alarm), over
    :data:`RETUNE_GRID`, and write it to the run's card.

    Why: under the labelling decision a two-cycle T3 event spans the 1.5 s silence
    between cycles, which a 1 s window cannot bridge, so the detection of one
    sounding alarm splits at every cycle; ``soundnet train`` searches merge gaps only
    up to 0.5 s. The search is soundnet's own (:func:`soundnet.tuning.search_postprocessing`):
    best event F1 (0.5 s onset collar), or with ``max_false_alarms_per_hour`` the
    fewest misses among the settings within that many false alarms per hour over all
    the tuning audio. If no setting meets the limit, the one with the fewest false
    alarms is kept (and the result says so). The calibration of event confidence is then
    fitted on the events of the chosen post-processing there, as ``soundnet tune`` fits it
    (:func:`soundnet.calibration.fit_event_calibration`). The probabilities are saved in
    ``WORK/tune_probabilities.npz``. With ``verify``, the first stage and a verifier of its
    events are chosen together on the same audio, as ``soundnet tune --verify`` chooses
    them (:func:`soundnet.tuning.search_verified`), and the calibration is fitted on the
    events the verifier keeps. Returns what it found (for the log).
    """
    import dataclasses

    from soundnet.calibration import fit_event_calibration
    from soundnet.config import to_dict
    from soundnet.detection import Detector
    from soundnet.evaluation import read_references
    from soundnet.run import write_card
    from soundnet.tuning import (
        FalseAlarmLimitError,
        reference_probabilities,
        search_postprocessing,
        search_verified,
        tuned_validation,
    )

    inputs, table = [folder], (folder / "annotations.tsv").read_text(encoding="utf-8")
    if negatives is not None:
        from soundnet.audio import audio_files

        inputs.append(negatives)
        table += "".join(f"{p.relative_to(negatives).as_posix()}\n" for p in audio_files(negatives))
    annotations = work / "tune_annotations.tsv"
    write_text(annotations, table)
    detector = Detector(run)
    card = detector.card
    references = read_references(inputs, annotations, target=card.target)
    probabilities, durations = reference_probabilities(detector, references)
    np.savez_compressed(work / "tune_probabilities.npz", **{n.replace("/", "|"): p for n, p in probabilities.items()})
    search = dict(label=references.target, frame_seconds=card.features.frame_seconds, durations=durations, grid=RETUNE_GRID)
    limit, met, verifier, kept = max_false_alarms_per_hour, True, None, None
    if verify:
        result, verifier, kept = search_verified(
            detector,
            references.paths,
            probabilities,
            references.events,
            label=references.target,
            durations=durations,
            grid=RETUNE_GRID,
            max_false_alarms_per_hour=limit,
        )  # a verifier's threshold always meets the limit (at worst it keeps no event): met stays True
    else:
        try:
            result = search_postprocessing(probabilities, references.events, max_false_alarms_per_hour=limit, **search)
        except FalseAlarmLimitError as error:  # nothing meets the limit: the fewest false alarms the grid reaches
            print(f"  {error}", flush=True)
            limit, met = round(error.fewest, 2) + 0.005, False
            result = search_postprocessing(probabilities, references.events, max_false_alarms_per_hour=limit, **search)
    calibration, note = fit_event_calibration(
        probabilities, references.events, post=result.post, estimated=kept, **{k: v for k, v in search.items() if k != "grid"}
    )
    print(f"  {note}", flush=True)
    validation = tuned_validation(card.validation, result, tuned_on=[str(p) for p in references.paths.values()], calibration=note)
    card = dataclasses.replace(
        card, postprocessing=result.post, validation=validation, calibration=calibration, verifier=verifier
    )
    write_card(run, card)
    hours_negative = sum(d for n, d in durations.items() if not references.events.get(n)) / 3600
    return {
        "tuned_on": f"{folder.relative_to(work)}: {sum(1 for n in references.events if references.events[n])} "
        f"mixtures with events and {len(references.paths)} files in all ({sum(durations.values()) / 3600:.2f} h, "
        f"{hours_negative:.2f} h without an event)",
        "max_false_alarms_per_hour": max_false_alarms_per_hour,
        "limit_met": met,
        "train_postprocessing": to_dict(card.postprocessing),
        "postprocessing": to_dict(result.post),
        "calibration": None if calibration is None else calibration.to_json(),
        "verifier": None if verifier is None else verifier.to_json(),
        **result.scores.summary_json(),
    }


def install(run: Path, *, evaluation: dict, command: str, work: Path, sounders: str = "all") -> int:
    """Copy the run folder (all but history and log) to the bundle with an extended card."""
    if BUNDLE.exists():
        shutil.rmtree(BUNDLE)
    BUNDLE.mkdir(parents=True)
    for path in sorted(run.iterdir()):
        if path.is_file() and path.name not in NOT_BUNDLED:
            shutil.copy2(path, BUNDLE / path.name)
    card_path = BUNDLE / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["description"] = description(sounders)
    card["heldout"] = {**heldout_summary(evaluation), "rebuild": command}
    card = _repo_relative(card, work)  # no absolute path of the build machine in the bundle
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in BUNDLE.iterdir())
    if total >= BUNDLE_LIMIT:
        raise SystemExit(f"{BUNDLE}: {total} bytes, over the {BUNDLE_LIMIT}-byte limit for a bundled model")
    return total


def _repo_relative(value, work: Path):
    """``value`` (JSON data) with every absolute path inside the repository made relative
    to it, and every other one inside ``work`` written ``WORK/...``."""
    if isinstance(value, dict):
        return {k: _repo_relative(v, work) for k, v in value.items()}
    if isinstance(value, list):
        return [_repo_relative(v, work) for v in value]
    if isinstance(value, str) and value.startswith(str(REPO) + os.sep):
        return Path(value).relative_to(REPO).as_posix()
    if isinstance(value, str) and value.startswith(str(work) + os.sep):
        return "WORK/" + Path(value).relative_to(work).as_posix()
    return value


DEFAULTS = {
    "mixtures": 240,
    "test_mixtures": 60,
    "tune_mixtures": 40,
    "tune_clips": 0,
    "alarms": 160,
    "backgrounds": 48,
    "distractors": 60,
    "epochs": 8,
    "patience": 3,
    "stride": 100,
    "batch_size": 32,
    "learning_rate": 0.002,
    "validation_fraction": 0.08,
    "negative_ratio": 0.5,
    "hard_negative_weight": 3.0,
    "augment": 0,
    "hop_length": 160,
    "n_fft": 512,
    "win_length": 400,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, type=Path, help="Build folder (clips, mixtures, dataset, run).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of everything (default 0).")
    parser.add_argument("--install", action="store_true", help="Copy the trained detector to soundnet/models/default/.")
    parser.add_argument("--skip-train", action="store_true", help="Only generate clips, mixtures and the example.")
    parser.add_argument(
        "--alarm-realism", choices=("field", "plain"), default="field",
        help="Alarm clips: 'field' (rooms at a distance, device variety, cheap microphones and small "
        "loudspeakers, clipping; default) or 'plain' (soundnet.signals.alarm_clip: the data of the "
        "detector bundled now).",
    )  # fmt: skip
    parser.add_argument(
        "--sounders", choices=("all", "piezo"), default="all",
        help="Alarm sounders the target holds: 'all' (default) or 'piezo' (no 440-620 Hz "
        "low-frequency sounder: T3 piezo and T4 CO alarms only).",
    )  # fmt: skip
    parser.add_argument(
        "--negatives", type=Path, metavar="DIR",
        help="Real audio with no alarm for training (scripts/real_negatives.py's train/): given to "
        "'soundnet extract --negatives' when the installed soundnet has it, else mixed into the "
        "training and tuning backgrounds.",
    )  # fmt: skip
    parser.add_argument(
        "--heldout-negatives", type=Path, metavar="DIR",
        help="Real audio with no alarm never trained on (scripts/real_negatives.py's heldout/): "
        "false alarms per hour written to WORK/heldout.json.",
    )  # fmt: skip
    parser.add_argument(
        "--tune-negative-packages", metavar="PKG,PKG",
        help="With --negatives: the packages whose files (PACKAGE_NNN.wav) are kept out of training and "
        "used, with the tuning mixtures, to tune the post-processing.",
    )  # fmt: skip
    parser.add_argument(
        "--max-false-alarms-per-hour", type=float, metavar="X",
        help="Tune the post-processing for the fewest misses within X false alarms per hour on the "
        "tuning audio (default: best event F1).",
    )  # fmt: skip
    parser.add_argument(
        "--retune-only", action="store_true",
        help="Build nothing: re-tune the run already trained in WORK (with the same options), "
        "evaluate and measure it again (and --install it).",
    )  # fmt: skip
    parser.add_argument(
        "--measure-only", action="store_true",
        help="Build nothing: measure --model on --heldout-negatives into WORK/heldout.json.",
    )  # fmt: skip
    parser.add_argument("--model", type=Path, help="With --measure-only: the run folder (default: the bundled detector).")
    parser.add_argument(
        "--verify", action="store_true",
        help="Re-tune with a verifier of events (soundnet tune --verify): the first stage of post-processing and "
        "the verifier chosen together on the tuning audio.",
    )  # fmt: skip
    for name, default in DEFAULTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default, help=f"(default {default})")
    args = parser.parse_args(argv)
    for name in ("negatives", "heldout_negatives", "model"):
        folder = getattr(args, name)
        if folder is not None and not folder.is_dir():
            parser.error(f"--{name.replace('_', '-')} {folder}: not a folder")
    if args.measure_only and args.heldout_negatives is None:
        parser.error("--measure-only needs --heldout-negatives")
    args.work_arg = args.work
    return args


def synth_mixtures(name: str, *, clips: Path, backgrounds: Path, count: int, seed: int, work: Path, log: Path) -> None:
    """``WORK/name``: ``count`` mixtures of 10 s of the alarm clips in ``clips`` over ``backgrounds``,
    with its distractors (replacing what was there)."""
    if (work / name).exists():
        shutil.rmtree(work / name)
    distractor_args = [a for label in DISTRACTORS for a in ("--distractors", clips / label)]
    soundnet(
        "synth", "--events", clips / TARGET, "--backgrounds", backgrounds, *distractor_args,
        "--out", work / name, "-n", count, "--duration", 10, "--ebr", "-6,0,6", "--presence", 0.6,
        "--seed", seed, log=log,
    )  # fmt: skip


def fresh_tuning_set(args: argparse.Namespace, *, work: Path, tune_negatives: Path | None, log: Path) -> None:
    """``--tune-clips N``: the tuning mixtures ``WORK/tune`` from N alarm clips (and half as many
    backgrounds and distractors) generated for tuning alone (``WORK/clips_tune``, their own seeds),
    over those synthetic backgrounds and the tuning share of the real negatives, so that the
    tuning hears alarms and backgrounds the network was never trained on, as the held-out sets do."""
    sizes = dict(alarms=args.tune_clips, backgrounds=max(8, args.backgrounds // 2), distractors=max(8, args.distractors // 2))
    clips = work / "clips_tune"
    summary = make_clips(clips, seed=args.seed, stream=STREAM_TUNE, **sizes, realism=args.alarm_realism, sounders=args.sounders)
    print(f"  tuning clips {summary}", flush=True)
    backgrounds = clips / "backgrounds"
    if tune_negatives is not None:
        backgrounds = negatives_backgrounds(
            work, synthetic=backgrounds, negatives=tune_negatives, name="backgrounds_tune", real=sizes["backgrounds"]
        )
    synth_mixtures(
        "tune",
        clips=clips,
        backgrounds=backgrounds,
        count=args.tune_mixtures,
        seed=args.seed + TUNE_SYNTH_OFFSET,
        work=work,
        log=log,
    )


def build(args: argparse.Namespace, *, work: Path, log: Path, started: float) -> tuple[bool, Path | None]:
    """Clips, mixtures and the example in ``work``, then (unless ``--skip-train``)
    features and training. Returns whether a run was trained, and the tuning share of
    the real negatives (None without one)."""
    seed = args.seed
    sizes = dict(alarms=args.alarms, backgrounds=args.backgrounds, distractors=args.distractors)
    kinds = dict(realism=args.alarm_realism, sounders=args.sounders)

    print(f"generating clips in {work / 'clips'} and {work / 'clips_test'}", flush=True)
    train_clips = make_clips(work / "clips", seed=seed, stream=STREAM_TRAIN, **sizes, **kinds)
    test_sizes = {k: max(8, v // 2) for k, v in sizes.items()}
    test_clips = make_clips(work / "clips_test", seed=seed, stream=STREAM_TEST, **test_sizes, **kinds)
    print(f"  train clips {train_clips}\n  test clips {test_clips}", flush=True)
    events = write_example(work, seed=seed)
    print(f"example: {work / EXAMPLE} with events {events}  [{time.monotonic() - started:.0f} s]", flush=True)

    with_negatives = args.negatives is not None and extract_supports_negatives(log)
    train_backgrounds, train_negatives, tune_negatives = work / "clips" / "backgrounds", args.negatives, None
    if args.negatives is not None and args.tune_negative_packages:
        train_negatives, tune_negatives = split_negatives(
            args.negatives, packages=args.tune_negative_packages.split(","), work=work
        )
        print(f"real negatives: {tune_negatives} (tuning only) and {train_negatives} (training)", flush=True)
    if train_negatives is not None:
        # real audio as backgrounds of the training and tuning mixtures too, as many files as synthetic ones
        # (with --negatives for extract as well, when this soundnet has it)
        train_backgrounds = negatives_backgrounds(
            work, synthetic=train_backgrounds, negatives=train_negatives, name="backgrounds_train",
            real=None if not with_negatives else args.backgrounds,
        )  # fmt: skip
        print(f"training backgrounds: {train_backgrounds} (synthetic and real)", flush=True)
    sets = [("train", work / "clips", train_backgrounds, args.mixtures, seed)]
    if not args.tune_clips:  # the tuning mixtures from the training clips, another seed
        sets.append(("tune", work / "clips", train_backgrounds, args.tune_mixtures, seed + TUNE_SYNTH_OFFSET))
    sets.append(("test", work / "clips_test", work / "clips_test" / "backgrounds", args.test_mixtures, seed + TEST_SYNTH_OFFSET))
    if args.heldout_negatives is not None:  # held-out alarms over held-out real audio: recall where it is hard
        sets.append(("test_real", work / "clips_test", args.heldout_negatives, args.test_mixtures, seed + TEST_REAL_SYNTH_OFFSET))
    for name, clips, backgrounds, count, synth_seed in sets:
        synth_mixtures(name, clips=clips, backgrounds=backgrounds, count=count, seed=synth_seed, work=work, log=log)
    if args.tune_clips:
        fresh_tuning_set(args, work=work, tune_negatives=tune_negatives, log=log)
    if args.skip_train:
        return False, tune_negatives

    for stale in ("data", "run"):
        if (work / stale).exists():
            shutil.rmtree(work / stale)
    config = work / "train.yaml"
    config.write_text(training_config(args), encoding="utf-8")
    soundnet(
        "extract", work / "train", "--annotations", work / "train" / "annotations.tsv", "--target", TARGET,
        "--out", work / "data", "--jobs", 2, "--config", config, *(("--negatives", train_negatives) if with_negatives else ()),
        "--augment", args.augment, log=log,
    )  # fmt: skip
    soundnet("train", work / "data", "--out", work / "run", "--config", config, "--seed", seed, log=log)
    return True, tune_negatives


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    if not args.retune_only:
        log.write_text("", encoding="utf-8")
    if args.measure_only:
        model = args.model.resolve() if args.model else None
        found = measure_negatives(args.heldout_negatives, model=model, example=EXAMPLES / EXAMPLE, work=work, log=log)
        result = {"model": str(model) if model else "bundled (soundnet/models/default)", "heldout_negatives": found}
        write_text(work / "heldout.json", json.dumps(result, indent=1) + "\n")
        print(json.dumps(found, indent=1), flush=True)
        return 0
    if args.retune_only:  # a run built before in WORK: re-tune, re-measure (and install)
        if not (work / "run" / "card.json").is_file():
            raise SystemExit(f"--retune-only: no trained run in {work / 'run'}")
        tune_negatives = None
        if args.negatives is not None and args.tune_negative_packages:
            tune_negatives = split_negatives(args.negatives, packages=args.tune_negative_packages.split(","), work=work)[1]
        if args.tune_clips:
            fresh_tuning_set(args, work=work, tune_negatives=tune_negatives, log=log)
    else:
        trained, tune_negatives = build(args, work=work, log=log, started=started)
        if not trained:
            return 0
    step = time.monotonic()
    retuned = retune(
        work / "run", work / "tune", work=work, negatives=tune_negatives,
        max_false_alarms_per_hour=args.max_false_alarms_per_hour, verify=args.verify,
    )  # fmt: skip
    write_text(work / "retune.json", json.dumps(retuned, indent=1) + "\n")
    print(
        f"re-tuned post-processing on {retuned['tuned_on']}: {retuned['postprocessing']}; event F1 "
        f"{retuned['event_onset']['f_measure']}, alarms {retuned['alarms']}, limit met: {retuned['limit_met']} "
        f"(soundnet train chose {retuned['train_postprocessing']})"
        f"\n  [{time.monotonic() - step:.1f} s]",
        flush=True,
    )
    heldout = work / "heldout.json"
    soundnet(
        "evaluate", work / "test", "--annotations", work / "test" / "annotations.tsv", "--target", TARGET,
        "--model", work / "run", "--output", heldout, log=log,
    )  # fmt: skip
    evaluation = json.loads(heldout.read_text(encoding="utf-8"))
    if args.heldout_negatives is not None:
        found = measure_negatives(args.heldout_negatives, model=work / "run", example=work / EXAMPLE, work=work, log=log)
        evaluation["heldout_negatives"] = {**found, "folder": str(args.heldout_negatives)}
        real = work / "heldout_real_backgrounds.json"
        soundnet(
            "evaluate", work / "test_real", "--annotations", work / "test_real" / "annotations.tsv", "--target", TARGET,
            "--model", work / "run", "--output", real, log=log,
        )  # fmt: skip
        evaluation["heldout_real_backgrounds"] = {
            **heldout_summary(json.loads(real.read_text(encoding="utf-8"))),
            "mixtures": "WORK/test_real: the held-out alarm clips over the held-out real negatives (synth seed + 3000)",
        }
        write_text(heldout, json.dumps(evaluation, indent=1) + "\n")
        print(f"real negatives: {found['false_alarms_per_hour']} false alarms per hour over {found['hours']} h", flush=True)
    summary = heldout_summary(evaluation)
    print(json.dumps({k: v for k, v in summary.items() if k != "metrics"}, indent=1), flush=True)
    if args.install:
        total = install(work / "run", evaluation=evaluation, command=rebuild_command(args), work=work, sounders=args.sounders)
        print(f"installed {BUNDLE.relative_to(REPO)}: {total} bytes", flush=True)
        for name in (EXAMPLE, EXAMPLE_LABELS):
            shutil.copyfile(work / name, EXAMPLES / name)
        print(f"installed {(EXAMPLES / EXAMPLE).relative_to(REPO)} and its labels", flush=True)
        soundnet("detect", EXAMPLES / EXAMPLE, log=log)  # the bundled detector
    else:
        soundnet("detect", work / EXAMPLE, "--model", work / "run", log=log)
    print(f"done in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
