"""Property tests (hypothesis) of post-processing, streaming windows, frame labels and event tables."""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from soundnet.annotations import frame_labels, read_event_table
from soundnet.config import PostConfig
from soundnet.events import Event
from soundnet.postprocess import to_events
from soundnet.windows import stream_probabilities

FS = 0.01
SETTINGS = settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

unit = st.floats(0.0, 1.0, allow_nan=False, width=32)


@st.composite
def probability_arrays(draw) -> np.ndarray:
    n = draw(st.integers(0, 300))
    kind = draw(st.sampled_from(["floats", "binary", "blocks"]))
    if kind == "floats":
        return np.asarray(draw(st.lists(unit, min_size=n, max_size=n)), np.float32)
    if kind == "binary":
        return np.asarray(draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n)), np.float32)
    p = np.zeros(n, np.float32)
    for _ in range(draw(st.integers(0, 8))):
        start = draw(st.integers(0, max(n - 1, 0)))
        p[start : start + draw(st.integers(1, 40))] = draw(unit)
    return p


post_configs = st.builds(
    PostConfig,
    threshold=unit,
    median_seconds=st.floats(0.0, 0.2),
    min_duration=st.floats(0.0, 0.3),
    merge_gap=st.floats(0.0, 0.3),
)


@SETTINGS
@given(p=probability_arrays(), post=post_configs, extra=st.floats(0.0, 0.0099))
@example(p=np.zeros(1, np.float32), post=PostConfig(threshold=0.0), extra=1e-9)  # an event 1e-9 s long rounded to none
def test_events_inside_sorted_disjoint(p, post, extra):
    duration = max(len(p) - 1, 0) * FS + extra  # a file of n samples gives 1 + n // hop frames
    events = to_events(p, post=post, frame_seconds=FS, duration=duration, filename="f.wav", label="x")
    assert events == sorted(events)
    for e in events:
        assert 0.0 <= e.onset < e.offset <= duration + 1e-6
        assert 0.0 <= e.confidence <= 1.0
        assert e.offset - e.onset >= post.min_duration - 1e-6
        assert e.filename == "f.wav" and e.label == "x"
    for a, b in zip(events, events[1:], strict=False):
        assert a.offset < b.onset
        assert b.onset - a.offset > post.merge_gap - 1e-6 - FS  # closer events would have been merged


@SETTINGS
@given(p=probability_arrays(), post=post_configs)
def test_events_only_where_probabilities_reach_threshold_without_filter(p, post):
    post = PostConfig(threshold=post.threshold, min_duration=0.0, merge_gap=0.0, median_seconds=0.0)
    duration = max(len(p) - 1, 0) * FS + 0.005
    events = to_events(p, post=post, frame_seconds=FS, duration=duration, filename="f.wav", label="x")
    active = np.zeros(len(p), bool)
    for e in events:
        first, stop = round(e.onset / FS + 0.5), round(e.offset / FS + 0.5)
        if e.onset == 0.0:
            first = 0
        if e.offset == round(duration, 6):
            stop = len(p)
        active[first:stop] = True
    assert np.array_equal(active, p >= post.threshold)


@st.composite
def streams(draw):
    window = draw(st.integers(1, 50))
    hop = draw(st.integers(1, window))
    n = draw(st.integers(1, 400))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=8)))
    return window, hop, n, cuts, draw(st.integers(1, 6)), draw(st.integers(0, 2**32 - 1))


@SETTINGS
@given(streams())
def test_stream_gives_one_probability_per_frame(case):
    window, hop, n, cuts, batch, seed = case
    x = (3 * np.random.default_rng(seed).standard_normal((n, 2))).astype(np.float32)

    def predict(windows):
        return 1.0 / (1.0 + np.exp(-windows[..., 0]))

    p = stream_probabilities(iter(np.split(x, cuts)), predict, window=window, hop=hop, batch_windows=batch)
    assert p.shape == (n,)
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p, 1.0 / (1.0 + np.exp(-x[:, 0].astype(np.float64))), atol=1e-6)


decimal_times = st.integers(0, 200_000).map(lambda k: k / 1000)  # annotation times as written: millisecond decimals


@SETTINGS
@given(spans=st.lists(st.tuples(decimal_times, decimal_times), max_size=6), n=st.integers(0, 25_000))
def test_frame_labels_agree_with_centres(spans, n):
    spans = [(min(a, b), max(a, b)) for a, b in spans]
    labels = frame_labels([Event("f", a, b, "x") for a, b in spans], n, frame_seconds=FS)
    assert labels.shape == (n,) and labels.dtype == np.uint8
    exact = [(Fraction(round(a * 1000), 1000), Fraction(round(b * 1000), 1000)) for a, b in spans]
    brute = np.zeros(n, np.uint8)
    for a, b in exact:
        # centres i/100 in [a, b): i from ceil(100 a) to ceil(100 b) - 1, done in exact arithmetic
        first, stop = -((-a * 100) // 1), -((-b * 100) // 1)
        brute[int(min(first, n)) : int(min(stop, n))] = 1
    assert np.array_equal(labels, brute)


@SETTINGS
@given(onset=st.floats(0, 1000, allow_nan=False), length=st.floats(0, 10, allow_nan=False))
def test_frame_labels_agree_with_centres_for_any_float(onset, length):
    offset = onset + length
    n = int(offset / FS) + 20
    labels = frame_labels([Event("f", onset, offset, "x")], n, frame_seconds=FS)
    centres = np.arange(n) * FS
    inside = (centres >= onset) & (centres < offset)
    near = (np.abs(centres - onset) < 1e-6) | (np.abs(centres - offset) < 1e-6)  # float ties: either answer
    assert np.array_equal(labels[~near].astype(bool), inside[~near])


names = st.text(st.sampled_from("abcxyz019 _-.éü音"), min_size=1, max_size=12).filter(lambda s: s.strip() == s)
labels_ = st.text(st.sampled_from("abcdefgh_ -"), min_size=1, max_size=8).filter(lambda s: s.strip() == s)
times = st.floats(0, 1e5, allow_nan=False, allow_infinity=False)


@st.composite
def tables(draw):
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        name = draw(names) + ".wav"
        if draw(st.booleans()):
            a, b = sorted((draw(times), draw(times)))
            rows.append((name, Event(name, a, b, draw(labels_))))
        else:
            rows.append((name, None))
    return rows, draw(st.sampled_from(["none", "short", "dcase"])), draw(st.sampled_from(["\n", "\r\n"]))


@SETTINGS
@given(tables())
def test_event_table_round_trip(case):
    rows, header, newline = case
    lines = {
        "none": [],
        "short": ["filename\tonset\toffset\tevent_label"],
        "dcase": ["filename\tevent_onset\tevent_offset\tevent_label"],
    }[header]
    for name, event in rows:
        lines.append(name if event is None else f"{name}\t{event.onset!r}\t{event.offset!r}\t{event.label}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.tsv"
        path.write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
        read = read_event_table(path)
    unique = list(dict.fromkeys(rows))
    assert [(a.filename, a.event) for a in read] == unique
    offset = 1 if header != "none" else 0
    assert [a.line for a in read] == [offset + 1 + rows.index(row) for row in unique]


@SETTINGS
@given(p=probability_arrays(), threshold=unit, below=unit)
def test_hysteresis_events_cover_the_plain_ones(p, threshold, below):
    plain = PostConfig(threshold=threshold)
    hysteresis = PostConfig(threshold=threshold, off_threshold=threshold * below)
    duration = max(len(p) - 1, 0) * FS + 0.005
    kw = dict(frame_seconds=FS, duration=duration, filename="f.wav", label="x")
    wide = to_events(p, post=hysteresis, **kw)
    for e in to_events(p, post=plain, **kw):
        assert any(w.onset <= e.onset and e.offset <= w.offset for w in wide)
    assert len(wide) <= len(to_events(p, post=plain, **kw))  # runs only join
