"""evaluate's figures are sed_eval's figures; the post-processing search finds what it should."""

import numpy as np
import pytest
import sed_eval

from soundnet.config import PostConfig
from soundnet.events import Event
from soundnet.scoring import event_scores, frame_scores
from soundnet.tuning import GRID, search_postprocessing


def random_events(rng, name, n, label="x", duration=30.0):
    starts = np.sort(rng.uniform(0, duration - 2, n))
    return [Event(name, round(float(s), 3), round(float(s + rng.uniform(0.2, 1.5)), 3), label) for s in starts]


def as_dicts(events):
    return [{"filename": e.filename, "onset": e.onset, "offset": e.offset, "event_label": e.label} for e in events]


@pytest.fixture
def lists():
    rng = np.random.default_rng(0)
    reference = {f"f{i}.wav": random_events(rng, f"f{i}.wav", 6) for i in range(3)}
    estimated = {}
    for name, events in reference.items():
        moved = [Event(name, max(0, e.onset + rng.normal(0, 0.4)), e.offset + rng.normal(0, 0.4), "x") for e in events[:5]]
        estimated[name] = sorted(moved + random_events(rng, name, 2))
    return reference, estimated


def test_event_and_segment_scores_equal_sed_eval(lists):
    reference, estimated = lists
    durations = dict.fromkeys(reference, 30.0)
    ours = event_scores(reference, estimated, label="x", durations=durations)
    onset = sed_eval.sound_event.EventBasedMetrics(
        ["x"], t_collar=0.5, percentage_of_length=0.5, evaluate_onset=True, evaluate_offset=False
    )
    both = sed_eval.sound_event.EventBasedMetrics(
        ["x"], t_collar=0.5, percentage_of_length=0.5, evaluate_onset=True, evaluate_offset=True
    )
    segment = sed_eval.sound_event.SegmentBasedMetrics(["x"], time_resolution=1.0)
    for name in reference:
        ref, est = as_dicts(reference[name]), as_dicts(estimated[name])
        onset.evaluate(ref, est)
        both.evaluate(ref, est)
        segment.evaluate(ref, est, evaluated_length_seconds=30.0)
    for key, metric in (("event_onset", onset), ("event_onset_offset", both), ("segment", segment)):
        expected = metric.results_overall_metrics()
        scores = getattr(ours, key)
        assert scores.f_measure == pytest.approx(expected["f_measure"]["f_measure"])
        assert scores.precision == pytest.approx(expected["f_measure"]["precision"])
        assert scores.recall == pytest.approx(expected["f_measure"]["recall"])
        assert scores.error_rate == pytest.approx(expected["error_rate"]["error_rate"])
        assert scores.deletion_rate == pytest.approx(expected["error_rate"]["deletion_rate"])
        assert scores.insertion_rate == pytest.approx(expected["error_rate"]["insertion_rate"])
    # the onset-only score is not trivially perfect or zero, so the comparison means something
    assert 0.2 < ours.event_onset.f_measure < 0.95
    assert sum(f.reference for f in ours.files.values()) == 18
    assert sum(f.estimated for f in ours.files.values()) == 21


def test_other_labels_do_not_count(lists):
    reference, estimated = lists
    noisy = {n: e + [Event(n, 1.0, 2.0, "other")] for n, e in estimated.items()}
    assert event_scores(reference, noisy, label="x") == event_scores(reference, estimated, label="x")


def test_frame_scores():
    labels = [np.array([0, 0, 1, 1]), np.array([0, 1])]
    perfect = frame_scores(labels, [np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.3, 0.7])])
    assert perfect.average_precision == pytest.approx(1.0) and perfect.roc_auc == pytest.approx(1.0)
    assert frame_scores([np.zeros(5)], [np.random.rand(5)]).average_precision is None


def test_tune_finds_a_threshold_and_filter_that_remove_blips():
    """Probabilities with a true event at 0.6 and one-frame blips at 0.9: plain 0.5
    thresholding reports the blips, the search finds a setting that does not."""
    p = np.full(1000, 0.05, np.float32)
    p[200:300] = 0.6
    p[600:700] = 0.6
    p[[100, 450, 800, 900]] = 0.9
    reference = {"a": [Event("a", 2.0, 3.0, "x"), Event("a", 6.0, 7.0, "x")]}
    result = search_postprocessing({"a": p}, reference, label="x", frame_seconds=0.01, durations={"a": 10.0})
    assert result.baseline.event_onset.f_measure < 0.7
    assert result.scores.event_onset.f_measure == pytest.approx(1.0)
    assert result.post.median_seconds > 0 or result.post.min_duration > 0
    assert isinstance(result.post, PostConfig)


def test_plain_threshold_is_a_point_of_the_grid():
    """What makes tuned >= plain (threshold 0.5, no filtering) hold by construction."""
    plain = PostConfig()
    assert (plain.threshold, plain.median_seconds, plain.min_duration, plain.merge_gap) == (0.5, 0.0, 0.0, 0.0)
    for name in ("threshold", "median_seconds", "min_duration", "merge_gap"):
        assert getattr(plain, name) in GRID[name], name


def test_tuned_never_scores_below_the_plain_baseline():
    """On the files searched, whatever the probabilities: plain thresholding is a grid point."""
    rng = np.random.default_rng(1)
    probabilities, reference = {}, {}
    for name in ("a", "b"):
        p = np.clip(rng.normal(0.3, 0.25, 1000), 0, 1).astype(np.float32)
        events = random_events(rng, name, 4, duration=10.0)
        for e in events:
            p[int(e.onset * 100) : int(e.offset * 100)] += 0.3
        probabilities[name], reference[name] = np.clip(p, 0, 1), events
    result = search_postprocessing(
        probabilities, reference, label="x", frame_seconds=0.01, durations=dict.fromkeys(probabilities, 10.0)
    )
    assert result.scores.event_onset.f_measure >= (result.baseline.event_onset.f_measure or 0.0)
    assert result.baseline.event_onset.f_measure < 1.0  # noisy enough that the search has work to do
