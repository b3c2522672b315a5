"""The verifier of events (soundnet.verification): its descriptors on sounds whose shape
is known, its regression against scikit-learn's, the choice of its threshold, its place
in the card, and the same verdicts live (soundnet.live) as offline (detect)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from clirun import cli, fails, ok

import soundnet
import soundnet.tuning
from soundnet.config import PostConfig
from soundnet.detection import BUNDLED_MODEL, Detector
from soundnet.events import Event
from soundnet.live import CausalEvents, LivePost
from soundnet.postprocess import to_events
from soundnet.run import read_card, write_card
from soundnet.signals import SR, alarm_clip, mix_in, noise_background, tone
from soundnet.tuning import search_verified
from soundnet.verification import (
    DESCRIPTORS,
    Verifier,
    choose_threshold,
    describe,
    fit_verifier,
    span_bounds,
    span_descriptors,
)

FRAME = 0.01
D = {name: i for i, name in enumerate(DESCRIPTORS)}


def pulsed(freq: float, seconds: float, *, on: float, off: float) -> np.ndarray:
    """``freq`` Hz beeps ``on`` seconds long every ``on + off`` seconds, over faint noise."""
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1e-3, int(seconds * SR))
    t = 0.0
    while t + on <= seconds:
        y = mix_in(y, tone(freq, on, amplitude=0.3), int(t * SR))
        t += on + off
    return y


def test_descriptors_tell_beeps_a_held_tone_and_noise_apart():
    probs = np.full(200, 0.9)
    beeps = describe(pulsed(3000.0, 2.0, on=0.25, off=0.25), probs, sample_rate=SR, frame_seconds=FRAME)
    held = describe(tone(3000.0, 2.0, amplitude=0.3), probs, sample_rate=SR, frame_seconds=FRAME)
    noise = describe(np.random.default_rng(1).normal(0, 0.1, 2 * SR), probs, sample_rate=SR, frame_seconds=FRAME)
    assert beeps.shape == (len(DESCRIPTORS),) and np.all(np.isfinite(np.stack([beeps, held, noise])))
    assert beeps[D["band_depth_db"]] > 40 > 3 > held[D["band_depth_db"]]  # beeps switch fully on and off
    assert beeps[D["band_share"]] > 0.9 and held[D["band_share"]] > 0.9 > 0.1 > noise[D["band_share"]]
    assert beeps[D["band_steadiness"]] == held[D["band_steadiness"]] == 1.0 > 0.3 > noise[D["band_steadiness"]]
    assert beeps[D["band_periodicity"]] > 0.6 > 0.2 > noise[D["band_periodicity"]]  # a 0.5 s period
    assert beeps[D["span_seconds"]] == pytest.approx(2.0) and beeps[D["peak_probability"]] == pytest.approx(0.9)
    silence = describe(np.zeros(SR), np.zeros(100), sample_rate=SR, frame_seconds=FRAME)
    assert silence.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_the_power_spectrogram_is_librosas():
    import librosa

    from soundnet.verification import _power_spectrogram

    y = np.random.default_rng(4).normal(0, 0.1, SR + 123)
    power, freqs = _power_spectrogram(y, SR)
    expected = np.abs(librosa.stft(y, n_fft=1024, hop_length=160, window="hann", center=False)).T ** 2
    keep = librosa.fft_frequencies(sr=SR, n_fft=1024) >= 200
    np.testing.assert_allclose(power, expected[:, keep], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(freqs, librosa.fft_frequencies(sr=SR, n_fft=1024)[keep])


def test_a_span_is_the_events_first_seconds_in_samples_and_frames():
    assert span_bounds(Event("f", 1.005, 5.0, "x"), 2.0, sample_rate=SR, frame_seconds=FRAME) == (16080, 48080, 101, 301)
    assert span_bounds(Event("f", 0.0, 0.5, "x"), 2.0, sample_rate=SR, frame_seconds=FRAME) == (0, 8000, 0, 50)
    y = np.arange(10 * SR, dtype=np.float64)
    rows = span_descriptors(
        [Event("f", 1.005, 5.0, "x")],
        lambda a, b: y[a:b] % 7,
        np.linspace(0, 1, 1000),
        sample_rate=SR,
        frame_seconds=FRAME,
        span_seconds=2.0,
    )
    assert rows.shape == (1, len(DESCRIPTORS))
    assert rows[0, D["peak_probability"]] == pytest.approx(np.linspace(0, 1, 1000)[300])  # frames 101..300


def _planted_descriptors(seed: int, n_true: int = 30, n_false: int = 60):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n_true + n_false, len(DESCRIPTORS)))
    y = np.arange(n_true + n_false) < n_true
    x[y, D["band_depth_db"]] += 2.5  # the true events swing more
    files = [f"file_{i % 12}" for i in range(len(y))]
    return x, y, files


def test_the_verifier_scores_as_scikit_learn_predicts_and_is_the_same_for_a_seed():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, files = _planted_descriptors(0)
    verifier = fit_verifier(x, y, files, references=30, hours=2.0, max_false_alarms_per_hour=2.0)
    penalty = verifier.fitted["penalty_c"]
    library = make_pipeline(
        StandardScaler(), LogisticRegression(C=penalty, class_weight="balanced", max_iter=1000, random_state=0)
    )
    np.testing.assert_allclose(verifier.score(x), library.fit(x, y).predict_proba(x)[:, 1], rtol=1e-9, atol=1e-12)
    assert verifier == fit_verifier(x, y, files, references=30, hours=2.0, max_false_alarms_per_hour=2.0)
    assert verifier.fitted["out_of_fold"]["false_alarms_per_hour"] <= 2.0
    assert np.argmax(np.abs(verifier.coef)) == D["band_depth_db"]


def test_the_threshold_has_the_fewest_misses_within_the_limit_or_the_best_f1():
    scores = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4])
    true = np.array([True, True, False, True, False, True, False, False])
    # 1 hour of audio, 5 reference events (4 of them found by some event)
    threshold, figures = choose_threshold(scores, true, references=5, hours=1.0, max_false_alarms_per_hour=1.0)
    assert threshold == 0.8 and figures["found"] == 3 and figures["false_alarms"] == 1
    threshold, figures = choose_threshold(scores, true, references=5, hours=1.0, max_false_alarms_per_hour=0.0)
    assert threshold == 0.9 and (figures["found"], figures["false_alarms"]) == (2, 0)
    threshold, figures = choose_threshold(scores, true, references=5, hours=1.0)
    assert figures["event_f1"] == round(max(2 * f / (5 + k) for f, k in [(1, 1), (2, 2), (2, 3), (3, 4), (3, 5), (4, 6)]), 4)
    assert threshold == 0.6
    with pytest.raises(soundnet.SoundnetError, match="hours must be > 0"):
        choose_threshold(scores, true, references=5, hours=0.0)


def test_too_few_events_to_fit_a_verifier_is_one_clear_error():
    x, y, files = _planted_descriptors(0, n_true=4)
    with pytest.raises(soundnet.SoundnetError, match=r"too few events to fit a verifier: 4 true and 60 false"):
        fit_verifier(x, y, files, references=4, hours=1.0)


def _verifier(*, threshold: float, depth_weight: float = 1.0, intercept: float = 0.0) -> Verifier:
    """A hand-made verifier on band depth alone: score 1/2 at 20 dB, rising with depth."""
    n = len(DESCRIPTORS)
    coef = [0.0] * n
    coef[D["band_depth_db"]] = depth_weight
    mean = [0.0] * n
    mean[D["band_depth_db"]] = 20.0
    return Verifier(threshold=threshold, mean=tuple(mean), scale=(5.0,) * n, coef=tuple(coef), intercept=intercept)


def test_the_card_keeps_its_verifier_and_refuses_a_broken_one(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(BUNDLED_MODEL, run)
    card = dataclasses.replace(read_card(run), verifier=None)
    write_card(run, card)
    assert read_card(run).verifier is None and "verifier" not in json.loads((run / "card.json").read_text())
    write_card(run, dataclasses.replace(card, verifier=_verifier(threshold=0.7)))
    assert read_card(run).verifier == _verifier(threshold=0.7)
    data = json.loads((run / "card.json").read_text())
    data["verifier"]["coef"] = data["verifier"]["coef"][:-1]
    (run / "card.json").write_text(json.dumps(data))
    with pytest.raises(soundnet.SoundnetError, match=r"card\.json verifier: a verifier needs 7 finite"):
        read_card(run)


# -- live and offline agree


@pytest.mark.parametrize("post", [PostConfig(threshold=0.5), PostConfig(threshold=0.6, min_duration=0.15, merge_gap=0.05)])
def test_causal_events_with_a_verifier_keep_what_detect_keeps(post):
    """A verdict on the span's probabilities (the audio side is the same rule): frame by
    frame, live keeps exactly the events that to_events then the verdict keep."""
    span = 0.3

    def keep(probabilities) -> bool:
        return float(np.mean(probabilities)) >= 0.75

    rng = np.random.default_rng(2)
    for trial in range(30):
        n = int(rng.integers(1, 400))
        probs = np.clip(np.repeat(rng.random(n), rng.integers(1, 8))[:n] + rng.normal(0, 0.1, n), 0, 1)
        duration = (n - 1) * FRAME + rng.uniform(0, FRAME)
        offline = []
        for event in to_events(probs, post=post, frame_seconds=FRAME, duration=duration, filename="f", label="x"):
            _, _, first, last = span_bounds(event, span, sample_rate=SR, frame_seconds=FRAME)
            if keep(probs[first:last]):
                offline.append((event.onset, event.offset))

        def verify(onset, offset, probabilities):
            _, _, first, last = span_bounds(Event("", onset, offset, "x"), span, sample_rate=SR, frame_seconds=FRAME)
            return keep(probabilities[: last - first])

        causal = CausalEvents(LivePost.from_card(post), FRAME, "x", verify=verify, span_seconds=span)
        lines = []
        for piece in np.array_split(probs, int(rng.integers(1, 6))):
            lines += causal.feed(piece)
        lines += causal.finish(end_time=duration)
        kinds = [e.event for e in lines]
        assert kinds == ["start", "end"] * (len(lines) // 2), (trial, kinds)
        live = [(a.stream_time, b.stream_time) for a, b in zip(lines[::2], lines[1::2], strict=True)]
        assert live == offline, (trial, live, offline)


def alarm_scene(tmp_path):
    """Noise with two T3 piezo alarms: what the bundled detector finds."""
    rng = np.random.default_rng(5)
    y = noise_background(30.0, rng=rng).astype(np.float64)
    for onset in (4.0, 18.0):
        clip, _ = alarm_clip(rng, kind="t3_piezo", cycles=2, room=False)
        y = mix_in(y, clip * 0.5, int(onset * SR))
    path = tmp_path / "scene.wav"
    sf.write(path, y, SR, subtype="PCM_16")
    return path


def test_detect_and_listen_apply_the_cards_verifier_alike(tmp_path):
    """The bundled network with a verifier on band depth: a threshold the alarms' beeps
    pass keeps every event in detect and listen; one no event reaches keeps none in
    either; a verifier that keeps all changes nothing."""
    scene = alarm_scene(tmp_path)
    run = tmp_path / "run"
    shutil.copytree(BUNDLED_MODEL, run)
    card = read_card(run)
    write_card(run, dataclasses.replace(card, verifier=None))
    plain = soundnet.detect(scene, model=run).detections[0].events
    assert len(plain) == 2
    depths = Detector(run).descriptors(scene, soundnet.detect(scene, model=run).detections[0].probabilities, plain)[
        :, D["band_depth_db"]
    ]
    assert np.all(depths > 25), depths  # the beeps switch on and off
    for verifier, expected in [
        (_verifier(threshold=0.5), len(plain)),  # depth above 20 dB: kept
        (_verifier(threshold=0.5, intercept=-50.0), 0),  # no event scores 1/2
    ]:
        write_card(run, dataclasses.replace(card, verifier=verifier))
        offline = soundnet.detect(scene, model=run).detections[0].events
        assert len(offline) == expected
        assert soundnet.detect(scene, model=run, jobs=2).detections[0].events == offline  # in worker processes too
        unverified = soundnet.detect(scene, model=run, verify=False).detections[0].events  # raw confidences
        assert [(e.onset, e.offset) for e in unverified] == [(e.onset, e.offset) for e in plain]
        if expected:
            assert [(e.onset, e.offset) for e in offline] == [(e.onset, e.offset) for e in plain]
        lines = [
            json.loads(line)
            for line in ok(cli("listen", "--input", "-", "--model", run, input=scene.read_bytes())).stdout.splitlines()
        ]
        assert len(lines) == 2 * expected, lines


def _stub_detector(descriptors: dict[tuple[str, float], np.ndarray]):
    """What search_verified needs of a Detector: the frame hop, and each event's descriptors
    (here looked up by file and onset instead of read from audio)."""

    class Stub:
        card = dataclasses.make_dataclass("Card", ["features"])(dataclasses.make_dataclass("F", ["frame_seconds"])(FRAME))

        def descriptors(self, path, probs, events):
            return np.array([descriptors[(str(path), e.onset)] for e in events]).reshape(len(events), len(DESCRIPTORS))

    return Stub()


def test_tuning_with_a_verifier_drops_the_false_events_the_post_processing_lets_through():
    """Planted files: every event the network 'finds' has probability 0.9 for 1 s; the
    true ones (on a reference event) have deep band levels, the false ones shallow. The
    first stage must keep them all (no threshold tells them apart), the verifier then
    drops the false ones: on these files, every reference found and no false alarm."""
    rng = np.random.default_rng(3)
    probabilities, reference, durations, descriptors, paths = {}, {}, {}, {}, {}
    for i in range(24):
        name = f"f{i:02d}.wav"
        p = np.full(30000, 0.05)  # 300 s: 2 h in all, so 24 false events are 12 an hour
        reference[name] = []
        for j, onset in enumerate((1.0, 4.0, 7.0)):
            p[round(onset / FRAME + 0.5) : round((onset + 1.0) / FRAME + 0.5)] = 0.9
            true = (i + j) % 3 != 0
            row = rng.normal(0, 1, len(DESCRIPTORS))
            row[D["band_depth_db"]] = rng.uniform(30, 50) if true else rng.uniform(2, 15)
            event_onset = round(max(0.0, (round(onset / FRAME + 0.5) - 0.5) * FRAME), 6)
            descriptors[(name, event_onset)] = row
            if true:
                reference[name].append(Event(name, onset, onset + 1.0, "x"))
        probabilities[name], durations[name], paths[name] = p, 300.0, name
    references = sum(len(v) for v in reference.values())
    chosen = search_verified(
        _stub_detector(descriptors), paths, probabilities, reference, label="x", durations=durations,
        grid={"threshold": (0.5, 0.95), "median_seconds": (0.0,), "min_duration": (0.0,), "merge_gap": (0.0,)},
        max_false_alarms_per_hour=1.0,
    )  # fmt: skip
    assert chosen.result.post.threshold == 0.5  # 0.95 finds nothing: the first stage keeps every event
    kept = [e for events in chosen.events.values() for e in events]
    assert len(kept) == references == chosen.result.scores.alarms.reference - chosen.result.scores.alarms.misses
    assert chosen.result.scores.alarms.false_alarms == 0
    assert chosen.verifier.fitted["out_of_fold"]["found"] == references
    assert chosen.verifier.fitted["first_stage"]["threshold"] == 0.5
    # without a limit, on a cross-validation's files: the first stage by the F1 averaged over the folds
    from soundnet.tuning import BEST_FOLD_F1

    by_f1 = search_verified(
        _stub_detector(descriptors), paths, probabilities, reference, label="x", durations=durations,
        grid={"threshold": (0.5, 0.95), "median_seconds": (0.0,), "min_duration": (0.0,), "merge_gap": (0.0,)},
        folds={name: 1 + i % 2 for i, name in enumerate(sorted(probabilities))},
    )  # fmt: skip
    assert by_f1.result.criterion == BEST_FOLD_F1 and len(by_f1.result.fold_f1) == 2
    assert sum(map(len, by_f1.events.values())) == references and by_f1.result.scores.alarms.false_alarms == 0


def test_tune_verify_reads_the_audio_of_its_events_and_needs_enough_of_them(trained, tmp_path):
    """On the four planted test files the network makes too few false events to fit a
    verifier: one clear line, and the card is left as it was. On out-of-fold predictions
    the audio is read where extract found it: a file no longer there is named."""
    from soundnet.evaluation import read_references
    from soundnet.run import OutOfFold, write_out_of_fold
    from soundnet.tuning import reference_probabilities

    run = tmp_path / "run"
    shutil.copytree(trained.run, run)
    before = (run / "card.json").read_bytes()
    result = fails(cli("tune", run, trained.test, "--annotations", trained.test_table, "--verify"))
    assert "no verifier could be fitted" in result.output and "too few events" in result.output, result.output
    assert (run / "card.json").read_bytes() == before
    with pytest.raises(soundnet.SoundnetError, match="no reviewed table"):
        soundnet.tuning.tune(
            run, trained.test, annotations=trained.test_table, verify=True, reviewed=trained.test_table, audio=trained.test
        )

    references = read_references([trained.test], trained.test_table, target=read_card(run).target)
    probabilities, durations = reference_probabilities(Detector(run), references)
    paths = {str(references.paths[name].resolve()): name for name in probabilities}
    oof = OutOfFold(
        {path: probabilities[name] for path, name in paths.items()},
        {path: references.events[name] for path, name in paths.items()},
        {path: durations[name] for path, name in paths.items()},
        read_card(run).target,
        {path: 1 + i % 2 for i, path in enumerate(paths)},
    )
    write_out_of_fold(run, oof)
    with pytest.raises(soundnet.SoundnetError, match="too few events"):  # the audio was found and read
        soundnet.tuning.tune(run, verify=True)
    moved = sorted(paths)[0]
    write_out_of_fold(run, dataclasses.replace(oof, probabilities={**oof.probabilities, moved + ".gone": oof.probabilities[moved]},
        events={**oof.events, moved + ".gone": []}, durations={**oof.durations, moved + ".gone": 8.0}, folds={**oof.folds, moved + ".gone": 1}))  # fmt: skip
    with pytest.raises(soundnet.SoundnetError, match=r"\.gone: not found \(1 of the run's 5 out-of-fold files\)"):
        soundnet.tuning.tune(run, verify=True)


def _windows_by_index(values):
    """A network stand-in: window k (in stream order) gives probability ``values(k)`` to all its frames."""
    count = [0]

    def predict(windows):
        out = np.array([np.full(windows.shape[1], values(count[0] + k), np.float32) for k in range(len(windows))])
        count[0] += len(windows)
        return out

    return predict


@pytest.mark.parametrize("case", ["a run above off for 20 s before it reaches on", "an event in the second of two 10 s blocks"])
def test_listen_keeps_the_audio_its_verifier_still_needs(case):
    """The audio of an event's onset must still be there when the verifier asks for it,
    however long ago the event's run began and however the stream was cut into blocks:
    the same lines with 10 s blocks as with 20 ms ones, and no error."""
    from soundnet.live import LiveDetector

    card = dataclasses.replace(read_card(BUNDLED_MODEL), verifier=_verifier(threshold=0.5, intercept=-50.0))  # keeps none
    rng = np.random.default_rng(6)
    y = (rng.normal(0, 0.05, 30 * SR)).astype(np.float32)
    if case.startswith("a run"):
        values = lambda k: 0.6 if k < 200 else 0.95  # noqa: E731  (windows every 0.1 s: on after 20 s)
    else:
        y[: int(9.5 * SR)] = 0  # digital silence (probability 0), then noise
        values = lambda k: 0.95  # noqa: E731
    post = LivePost.from_card(card.postprocessing)
    lines = []
    for block in (10 * SR, 320):
        live = LiveDetector(card, _windows_by_index(values), post=post, hop_seconds=0.1)
        lines.append([(e.event, e.stream_time) for e in live.run([y[i : i + block] for i in range(0, len(y), block)])])
    assert lines[0] == lines[1] == []  # the verifier was asked (it keeps nothing) and found its audio
    kept = dataclasses.replace(card, verifier=_verifier(threshold=0.0))  # keeps all
    live = LiveDetector(kept, _windows_by_index(values), post=post, hop_seconds=0.1)
    told = [(e.event, e.stream_time) for e in live.run([y[i : i + 10 * SR] for i in range(0, len(y), 10 * SR)])]
    assert [kind for kind, _ in told] == ["start", "end"]
    assert told[0][1] == (0.0 if case.startswith("a run") else pytest.approx(9.5, abs=0.06))


def test_a_verifier_needs_events_of_both_kinds_in_two_files_or_more():
    x, y, files = _planted_descriptors(0)
    with pytest.raises(soundnet.SoundnetError, match=r"too few files to fit a verifier out of fold: true events in 1"):
        fit_verifier(x, y, ["one.wav" if t else f"f{i}.wav" for i, t in enumerate(y)], references=30, hours=1.0)


def test_without_the_verifier_confidences_are_raw(tmp_path):
    """A calibration fitted on the events a verifier kept does not hold for those it drops."""
    run = tmp_path / "run"
    shutil.copytree(BUNDLED_MODEL, run)
    assert read_card(run).verifier is not None and read_card(run).calibration is not None
    assert Detector(run).calibrated and not Detector(run, verify=False).calibrated
