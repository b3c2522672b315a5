"""The review loop with a known answer: a site's own sound that the detector takes for
its target, reviewed on part of the site, is no longer detected on the rest of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from clirun import cli, fails, ok

from soundnet.detection import Detector
from soundnet.formats import render_events
from soundnet.review import ACCEPTED, REJECTED, ReviewSession, read_detections, read_reviewed
from soundnet.run import read_card
from soundnet.signals import SR, mix_in, tone, white_noise

TARGET_HZ = 2000.0  # the planted target of the session's trained run (tests/planted.py)
LOOKALIKE_HZ = 2300.0  # a site's own sound the run never heard: it fires on it


def site(folder: Path, *, files: int, seed: int) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Noisy 8 s recordings alternating target tones and look-alike tones; returns their spans."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(files):
        y = white_noise(8 * SR, rng=rng, std=0.03)
        spans: dict[str, list[tuple[float, float]]] = {"target": [], "lookalike": []}
        t, k = rng.uniform(0.3, 1.0), i
        while t < 7.0:
            kind = "lookalike" if k % 2 == 0 else "target"
            length = rng.uniform(0.4, 0.7)
            mix_in(y, tone(LOOKALIKE_HZ if kind == "lookalike" else TARGET_HZ, length, sr=SR), int(t * SR))
            spans[kind].append((t, t + length))
            t, k = t + length + rng.uniform(0.8, 1.5), k + 1
        name = f"site_{i:02d}.wav"
        sf.write(folder / name, y, SR, subtype="PCM_16")
        truth[name] = spans
    return truth


def overlaps(event, spans) -> bool:
    return any(event.onset < off and on < event.offset for on, off in spans)


def detections_of(run: Path, folder: Path) -> list:
    detector = Detector(run)
    return [e for path in sorted(folder.glob("*.wav")) for e in detector.detect_file(path).events]


def found(events, truth) -> tuple[int, int, int, int]:
    """(look-alikes detected, look-alikes, targets detected, targets)."""
    lookalikes = [(n, s) for n, t in truth.items() for s in t["lookalike"]]
    targets = [(n, s) for n, t in truth.items() for s in t["target"]]

    def hit(name, span):
        return any(e.filename == name and overlaps(e, [span]) for e in events)

    return sum(hit(*x) for x in lookalikes), len(lookalikes), sum(hit(*x) for x in targets), len(targets)


@pytest.fixture(scope="module")
def loop(trained_session, tmp_path_factory):
    """Detect on part A of the site with the session's run, review A's detections by the
    truth (through a review session, as the page does), and fine-tune on the table."""
    root = tmp_path_factory.mktemp("review-loop")
    truth_a = site(root / "site_a", files=6, seed=11)
    truth_b = site(root / "site_b", files=4, seed=12)
    before = detections_of(trained_session.run, root / "site_b")
    table = root / "detections.csv"
    table.write_text(render_events(detections_of(trained_session.run, root / "site_a"), "csv"))
    session = ReviewSession(read_detections(table), root / "reviewed.tsv")
    for i, e in enumerate(session.detections):
        session.decide(i, REJECTED if overlaps(e, truth_a[e.filename]["lookalike"]) else ACCEPTED)
    config = root / "tune.yaml"
    config.write_text("training:\n  epochs: 3\n  patience: 3\n  batch_size: 16\n")
    ok(
        cli(
            "train", trained_session.data, "--out", root / "run2", "--config", config, "--seed", 3,
            "--reviewed", root / "reviewed.tsv", "--audio", root / "site_a", "--from", trained_session.run,
        )
    )  # fmt: skip
    return root, truth_b, before


def test_the_planted_false_alarms_are_gone_on_held_out_audio_of_the_same_kind(loop, trained_session):
    root, truth_b, before = loop
    reviews = read_reviewed(root / "reviewed.tsv")
    assert sum(r.decision == REJECTED for r in reviews) >= 8  # the run fired on A's look-alikes
    fired, lookalikes, hit, targets = found(before, truth_b)
    assert fired >= lookalikes - 1 and hit == targets  # before: the look-alikes fire (a known answer)
    after = detections_of(root / "run2", root / "site_b")
    fired, lookalikes, hit, targets = found(after, truth_b)
    assert fired == 0, f"{fired} of {lookalikes} look-alikes still detected"
    assert hit == targets, f"{hit} of {targets} targets found after the review"
    assert all(overlaps(e, [s for t in truth_b[e.filename].values() for s in t]) for e in after)


def test_the_card_records_the_review_data_and_the_run_fine_tuned(loop, trained_session):
    root, _, _ = loop
    training = read_card(root / "run2").training
    reviewed = training["reviewed"]
    assert reviewed["table"] == str((root / "reviewed.tsv").resolve())
    assert reviewed["audio"] == str((root / "site_a").resolve())
    assert reviewed["accepted"] + reviewed["rejected"] == len(read_reviewed(root / "reviewed.tsv"))
    assert reviewed["files"] == 6 and reviewed["windows"] > 0 and len(reviewed["sha256"]) == 64
    assert training["fine_tuned_from"]["run"] == str(trained_session.run.resolve())
    assert training["fine_tuned_from"]["model_sha256"] == read_card(trained_session.run).checksums["model.keras"]
    assert not (root / "run2" / "reviewed").exists()  # the features of the reviewed audio are not kept


def test_tune_on_the_reviewed_clips_counts_rejected_spans_as_false_alarms(loop, tmp_path):
    root, _, _ = loop
    run = tmp_path / "run"
    shutil.copytree(root / "run2", run)
    result = ok(cli("tune", run, "--reviewed", root / "reviewed.tsv", "--audio", root / "site_a"))
    assert "event F1" in result.stdout
    validation = read_card(run).validation
    tuned = validation["tuned_on_reviewed"]
    assert tuned["clips"] >= 6 and tuned["rejected"] >= 8 and validation["tuned_on"] == []
    assert validation["event_onset"]["f_measure"] == 1.0  # run2 finds A's targets and none of its look-alikes


def test_fine_tuning_refuses_a_run_of_another_target(loop, trained_session, tmp_path):
    root, _, _ = loop
    other = tmp_path / "other"
    shutil.copytree(root / "run2", other)
    card = (other / "card.json").read_text().replace('"target": "beep"', '"target": "horn"')
    (other / "card.json").write_text(card)
    fails(
        cli("train", trained_session.data, "--out", tmp_path / "r", "--from", other),
        "detects 'horn', the dataset's target is 'beep'",
    )
