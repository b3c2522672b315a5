"""Pictures of a detection: spectrogram, per-frame probability and events on one time axis.

The picture is drawn with matplotlib's Agg canvas on a private ``Figure`` (no pyplot,
no global state, no display needed). Long recordings are summarised so that drawing
stays cheap: the spectrogram is computed block by block and pooled to at most
``MAX_COLUMNS`` columns, and a long probability curve is drawn as its per-bucket
minimum and maximum so that short peaks stay visible.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from soundnet.audio import audio_duration, iter_audio
from soundnet.config import FeatureConfig
from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.features import frame_power, frame_segments
from soundnet.storage import atomic_path

FIGURE_HEIGHT = 7.0
"""Height of the figure in inches (the width is a parameter of plot_detection)."""

MAX_COLUMNS = 4000
"""Most columns of the spectrogram image, whatever the length of the window (and at
most one per pixel of the figure's width: longer windows are pooled, not subsampled)."""

MAX_POINTS = 20000
"""Longer probability curves are drawn as per-bucket minimum and maximum."""

BLOCK_SECONDS = 5.0
"""Audio is read in blocks of this length (memory stays small whatever the file's length)."""

DETECTED_COLOR = "tab:orange"
REFERENCE_COLOR = "tab:blue"
CURVE_COLOR = "tab:green"
LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.005, 1.0), "borderaxespad": 0.0, "fontsize": "small", "frameon": False}


def plot_detection(
    out: Path,
    *,
    audio: Path,
    sample_rate: int | None = None,
    probabilities: np.ndarray,
    frame_seconds: float,
    threshold: float,
    events: Sequence[Event],
    reference: Sequence[Event] | None = None,
    start: float | None = None,
    end: float | None = None,
    title: str | None = None,
    width: float = 12.0,
    dpi: int = 100,
    features: FeatureConfig | None = None,
) -> Path:
    """Draw one audio file's detection to an image file and return ``out``.

    Three panels share the time axis (seconds): the log-mel spectrogram of the audio,
    the per-frame probability with the threshold as a dashed line, and the events
    (detected, and reference when given) as spans in lanes.

    Parameters
    ----------
    out : Path
        The image to write (PNG unless the suffix names another format matplotlib
        writes, e.g. ``.svg`` or ``.pdf``); written atomically, folders created.
    audio : Path
        The audio file; only the drawn window is read, block by block.
    sample_rate : int > 0 or None
        Rate the audio is read at (as for detection); default ``features.sample_rate``.
    probabilities : np.ndarray [shape=(n_frames,)]
        Per-frame probability of the target sound; frame ``i`` covers
        ``[i * frame_seconds, (i + 1) * frame_seconds)``.
    frame_seconds : float > 0
        Duration of one frame.
    threshold : float in [0, 1]
        The decision threshold, drawn as a dashed line.
    events, reference : sequences of Event
        Detected events, and reference (annotated) events or None.
    start, end : float or None
        The window to draw in seconds, ``0 <= start < end``; default the whole file.
        An ``end`` past the end of the file is cut to the file's duration.
    title : str or None
        Title of the picture; default the audio file's name.
    width : float > 0
        Width in inches; the height is ``FIGURE_HEIGHT`` inches.
    dpi : int > 0
        Pixels per inch: the image is ``round(width * dpi)`` by
        ``round(FIGURE_HEIGHT * dpi)`` pixels.
    features : FeatureConfig or None
        The detector's features (default ``FeatureConfig()``): the spectrogram has
        their frames (hop, FFT and window length, in seconds) and mel bands.

    Raises
    ------
    SoundnetError
        A bad window or argument, or unreadable audio.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out, audio = Path(out), Path(audio)
    features = FeatureConfig() if features is None else features
    sample_rate = features.sample_rate if sample_rate is None else sample_rate
    if not sample_rate > 0:
        raise SoundnetError(f"sample_rate must be > 0. Received: {sample_rate}")
    if not (math.isfinite(frame_seconds) and frame_seconds > 0):
        raise SoundnetError(f"frame_seconds must be > 0. Received: {frame_seconds}")
    if not 0 <= threshold <= 1:
        raise SoundnetError(f"threshold must be in [0, 1]. Received: {threshold}")
    if not (width > 0 and dpi > 0):
        raise SoundnetError(f"width and dpi must be > 0. Received: width={width}, dpi={dpi}")
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim != 1:
        raise SoundnetError(f"probabilities must be one value per frame, got shape {probabilities.shape}")

    duration = audio_duration(audio)
    lo = 0.0 if start is None else float(start)
    hi = duration if end is None else float(end)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
        raise SoundnetError(f"{audio}: bad window: need 0 <= start < end. Received: start={start}, end={end}")
    if lo >= duration:
        raise SoundnetError(f"{audio}: bad window: start={lo:g} s is past the end of the file ({duration:g} s)")
    hi = min(hi, duration)

    fmt = out.suffix[1:].lower() or "png"
    fig = Figure(figsize=(width, FIGURE_HEIGHT), dpi=dpi, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    if fmt not in canvas.get_supported_filetypes():
        raise SoundnetError(f"{out}: cannot draw a .{fmt} picture (use .png, .svg or .pdf)")
    ax_spec, ax_prob, ax_events = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 1.2]})

    columns = min(MAX_COLUMNS, max(1, round(width * dpi)))
    _draw_spectrogram(ax_spec, audio, sample_rate, lo, hi, max_columns=columns, features=features)
    _draw_probabilities(ax_prob, probabilities, frame_seconds, threshold, lo, hi)
    _draw_events(ax_events, events, reference, lo, hi)

    ax_spec.set_title(audio.name if title is None else title, loc="left")
    ax_events.set_xlim(lo, hi)
    ax_events.set_xlabel("time (s)")

    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return out


# -- spectrogram ---------------------------------------------------------------------


def _stft_sizes(features: FeatureConfig, sample_rate: int) -> tuple[int, int, int]:
    """hop, n_fft, win_length of the spectrogram: the features' own at their sample rate;
    at another rate the same durations, n_fft rounded up to a power of two."""
    if sample_rate == features.sample_rate:
        return features.hop_length, features.n_fft, features.win_length

    def seconds(samples: int) -> float:
        return samples / features.sample_rate * sample_rate

    hop = max(1, round(seconds(features.hop_length)))
    n_fft = max(16, 2 ** math.ceil(math.log2(seconds(features.n_fft))))
    return hop, n_fft, min(n_fft, max(1, round(seconds(features.win_length))))


def _window_samples(audio: Path, sample_rate: int, first: int, stop: int) -> Iterator[np.ndarray]:
    """Samples ``[first, stop)`` of the audio at ``sample_rate``, in blocks; blocks before are skipped."""
    position = 0
    for block in iter_audio(audio, sample_rate=sample_rate, block_seconds=BLOCK_SECONDS):
        a, b = max(first - position, 0), min(stop - position, len(block))
        position += len(block)
        if a < b:
            yield block[a:b]
        if position >= stop:
            return


def _pooled_power(
    samples: Iterator[np.ndarray], *, hop: int, n_fft: int, win: int, pool: int, chunk_frames: int = 500
) -> tuple[np.ndarray, int]:
    """Power spectrogram of centred frames every ``hop`` samples, averaged over ``pool`` frames.

    The same frames as ``librosa.stft(y, center=True, pad_mode="constant")`` of the
    whole window (those centred inside it), framed as the blocks come by
    :func:`soundnet.features.frame_segments`, ``chunk_frames`` at a time; only one
    block, one chunk and the pooled columns are held. The last column averages the
    frames left over. Returns (power [freq, columns], n_frames).
    """
    n_freq = n_fft // 2 + 1
    columns: list[np.ndarray] = []
    partial = np.zeros(n_freq)  # sum of the frames of the column being filled
    count = n_frames = 0
    for segment in frame_segments(samples, n_fft=n_fft, hop_length=hop, max_frames=chunk_frames, inside_only=True):
        power = frame_power(segment, n_fft=n_fft, hop_length=hop, win_length=win)
        n_frames += power.shape[1]
        i = 0
        if count:
            take = min(pool - count, power.shape[1])
            partial += power[:, :take].sum(axis=1)
            count, i = count + take, take
            if count == pool:
                columns.append((partial / pool)[:, None])
                partial, count = np.zeros(n_freq), 0
        full = (power.shape[1] - i) // pool * pool
        if full:
            columns.append(power[:, i : i + full].reshape(n_freq, -1, pool).mean(axis=2))
            i += full
        if i < power.shape[1]:
            partial, count = power[:, i:].sum(axis=1), power.shape[1] - i
    if count:
        columns.append((partial / count)[:, None])
    power = np.concatenate(columns, axis=1) if columns else np.zeros((n_freq, 0))
    return power.astype(np.float32), n_frames


def _draw_spectrogram(
    ax, audio: Path, sample_rate: int, lo: float, hi: float, *, max_columns: int, features: FeatureConfig
) -> None:
    import librosa

    hop, n_fft, win = _stft_sizes(features, sample_rate)
    first, stop = round(lo * sample_rate), max(round(hi * sample_rate), round(lo * sample_rate) + 1)
    pool = max(1, math.ceil(-(-(stop - first) // hop) / max_columns))
    power, _ = _pooled_power(_window_samples(audio, sample_rate, first, stop), hop=hop, n_fft=n_fft, win=win, pool=pool)
    n_mels = features.n_mels
    if power.shape[1]:
        mel = librosa.feature.melspectrogram(S=power, sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
        top = float(mel.max())
        db = librosa.power_to_db(mel, ref=top, top_db=80.0) if top > 1e-10 else np.full_like(mel, -80.0)  # silence: dark
        # column j pools frames centred on samples (j*pool .. j*pool+pool-1) * hop after `first`
        left = (first - hop / 2) / sample_rate
        right = left + db.shape[1] * pool * hop / sample_rate
        image = ax.imshow(
            db,
            origin="lower",
            aspect="auto",
            cmap="magma",
            interpolation="nearest",
            extent=(left, right, 0, n_mels),
            vmin=-80,
            vmax=0,
        )
        # the colour bar sits in the right margin, beside the legends of the other panels
        colorbar = ax.figure.colorbar(image, cax=ax.inset_axes((1.01, 0.0, 0.012, 1.0)))
        colorbar.set_label("power (dB)")
    # label the mel bins with frequencies in Hz
    centres = librosa.mel_frequencies(n_mels=n_mels + 2, fmin=0.0, fmax=sample_rate / 2)[1:-1]
    ticks = [f for f in (0, 500, 1000, 2000, 4000, 8000, 16000, 32000) if f <= sample_rate / 2]
    ax.set_yticks(np.interp(ticks, centres, np.arange(n_mels) + 0.5), [f"{f / 1000:g}k" if f >= 1000 else f"{f}" for f in ticks])
    ax.set_ylim(0, n_mels)
    ax.set_ylabel("frequency (Hz)")


# -- probability ---------------------------------------------------------------------


def _draw_probabilities(ax, probabilities: np.ndarray, frame_seconds: float, threshold: float, lo: float, hi: float) -> None:
    i0 = max(0, math.floor(lo / frame_seconds))
    i1 = min(len(probabilities), math.ceil(hi / frame_seconds))
    curve = probabilities[i0:i1]
    if len(curve) > MAX_POINTS:
        buckets = MAX_POINTS // 2
        size = -(-len(curve) // buckets)
        n = len(curve) // size * size
        rows = curve[:n].reshape(-1, size)
        lows, highs = rows.min(axis=1), rows.max(axis=1)
        if n < len(curve):
            lows, highs = np.append(lows, curve[n:].min()), np.append(highs, curve[n:].max())
        centres = (i0 + np.arange(len(lows)) * size + size / 2) * frame_seconds
        times = np.repeat(centres, 2)
        values = np.column_stack([lows, highs]).ravel()
        ax.plot(times, values, color=CURVE_COLOR, linewidth=0.8, label="probability\n(min-max)")
    elif len(curve):
        times = (i0 + np.arange(len(curve)) + 0.5) * frame_seconds
        ax.plot(times, curve, color=CURVE_COLOR, linewidth=1.0, label="probability")
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1.0, label=f"threshold {threshold:g}")
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.grid(True, alpha=0.3)
    ax.legend(**LEGEND)


# -- events --------------------------------------------------------------------------


def _draw_events(ax, events: Sequence[Event], reference: Sequence[Event] | None, lo: float, hi: float) -> None:
    from matplotlib.patches import Patch

    lanes = [("detected", events, DETECTED_COLOR)]
    if reference is not None:
        lanes.append(("reference", reference, REFERENCE_COLOR))
    handles = []
    for row, (name, spans, color) in enumerate(reversed(lanes)):
        inside = [(e.onset, e.duration) for e in spans if e.offset >= lo and e.onset <= hi]
        # an edge of the same colour keeps events narrower than a pixel visible
        ax.broken_barh(inside, (row + 0.15, 0.7), facecolors=color, edgecolors=color, linewidth=0.6)
        handles.append(Patch(facecolor=color, label=f"{name} ({len(inside)})"))
    ax.set_yticks([row + 0.5 for row in range(len(lanes))], [name for name, _, _ in reversed(lanes)])
    ax.set_ylim(0, len(lanes))
    ax.tick_params(axis="y", length=0)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(handles=list(reversed(handles)), **LEGEND)


# -- operating curve -----------------------------------------------------------------


def plot_operating_curve(
    out: Path,
    curve: Sequence[tuple[float, float | None, float | None]],
    *,
    point: tuple[float | None, float | None] | None = None,
    point_label: str = "operating point",
    title: str | None = None,
    width: float = 7.0,
    height: float = 5.0,
    dpi: int = 100,
) -> Path:
    """Draw an operating curve, miss rate against false alarms per hour, and return ``out``.

    Parameters
    ----------
    out : Path
        The image to write (PNG unless the suffix names another format matplotlib
        writes); written atomically, folders created.
    curve : sequence of (threshold, false_alarms_per_hour, miss_rate)
        The points (:func:`soundnet.tuning.operating_curve`), by threshold; points
        with an undefined figure (None) are left out.
    point : (false_alarms_per_hour, miss_rate) or None
        An operating point to mark (the detector's), drawn when both are known.
    point_label : str
        Its name in the legend.
    title : str or None
        Title of the picture.
    width, height : float > 0
        Size in inches.
    dpi : int > 0
        Pixels per inch.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    if not (width > 0 and height > 0 and dpi > 0):
        raise SoundnetError(f"width, height and dpi must be > 0. Received: width={width}, height={height}, dpi={dpi}")
    fmt = out.suffix[1:].lower() or "png"
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    if fmt not in canvas.get_supported_filetypes():
        raise SoundnetError(f"{out}: cannot draw a .{fmt} picture (use .png, .svg or .pdf)")
    ax = fig.subplots()
    known = [(t, fa, miss) for t, fa, miss in curve if fa is not None and miss is not None]
    marked = point is not None and None not in point
    right = 1.0
    if known:
        thresholds, rates, misses = (np.array(column, dtype=float) for column in zip(*known, strict=True))
        ax.plot(rates, misses, color=CURVE_COLOR, linewidth=1.2, marker=".", markersize=3, label="thresholds")
        named = set()  # thresholds landing on one point are named once, by the lowest
        for i in sorted({0, len(known) - 1, *np.flatnonzero(np.isin(np.round(thresholds, 6), (0.25, 0.5, 0.75)))}):
            if (rates[i], misses[i]) not in named:
                named.add((rates[i], misses[i]))
                ax.annotate(
                    f"{thresholds[i]:g}", (rates[i], misses[i]), textcoords="offset points", xytext=(4, 4), fontsize="x-small"
                )
        right = max(right, float(rates.max()))
    if marked:
        ax.plot(*point, linestyle="none", marker="o", markersize=8, color=DETECTED_COLOR, label=point_label, zorder=3)
        right = max(right, float(point[0]))
    ax.set_xlim(0, right * 1.08)  # room for the last point's marker and name
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false alarms per hour (event-based, onset collar 0.5 s)")
    ax.set_ylabel("miss rate (1 - event recall)")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title, loc="left")
    if known or marked:
        ax.legend(loc="upper right", fontsize="small")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return out


# -- PSD-ROC and reliability diagram -------------------------------------------------------


def _summary_figure(out: Path, *, columns: int, width: float, height: float, dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    if not (width > 0 and height > 0 and dpi > 0):
        raise SoundnetError(f"width, height and dpi must be > 0. Received: width={width}, height={height}, dpi={dpi}")
    fmt = out.suffix[1:].lower() or "png"
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    if fmt not in FigureCanvasAgg(fig).get_supported_filetypes():
        raise SoundnetError(f"{out}: cannot draw a .{fmt} picture (use .png, .svg or .pdf)")
    return fig, fig.subplots(1, columns, squeeze=False)[0], fmt


def _save(fig, out: Path, fmt: str, dpi: int) -> Path:
    with atomic_path(Path(out)) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return Path(out)


def plot_psd_rocs(
    out: Path, psds: dict, *, title: str | None = None, width: float = 11.0, height: float = 4.5, dpi: int = 100
) -> Path:
    """Draw the PSD-ROC of each PSDS scenario (``psds``: name -> :class:`soundnet.psds.PSDS`),
    effective TPR against effective FPR per hour up to ``max_efpr``, the area that is
    the score shaded (as sed_scores_eval's ``plot_psd_roc`` draws it, without pyplot)."""
    fig, axes, fmt = _summary_figure(out, columns=max(1, len(psds)), width=width, height=height, dpi=dpi)
    for ax, (name, score) in zip(axes, psds.items(), strict=False):
        s = score.scenario
        ax.step(score.efpr, score.etpr, where="post", color=CURVE_COLOR, label="PSD-ROC")
        ax.fill_between(
            score.efpr, score.etpr, 0, step="post", color=CURVE_COLOR, alpha=0.25, label=f"area: PSDS {score.value:.3f}"
        )
        ax.set_xlim(0, s.max_efpr)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("effective false positives per hour")
        ax.set_ylabel("effective true positive rate")
        cttc = "n/a" if s.cttc_threshold is None else f"{s.cttc_threshold:g}"
        ax.set_title(
            f"{name.upper()}: dtc {s.dtc_threshold:g}, gtc {s.gtc_threshold:g}, cttc {cttc}, "
            f"alpha_ct {s.alpha_ct:g}, alpha_st {s.alpha_st:g}",
            fontsize="small",
            loc="left",
        )
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, out, fmt, dpi)


def plot_reliability(
    out: Path,
    *,
    raw,
    reported=None,
    bins: int = 10,
    title: str | None = None,
    width: float = 6.5,
    height: float = 6.0,
    dpi: int = 100,
) -> Path:
    """Draw a reliability diagram: per bin of event confidence, the fraction of events
    that were true against their mean confidence, for the raw confidence (``raw``) and,
    when given, the calibrated one (``reported``); both :class:`soundnet.calibration.Outcomes`.
    A calibrated detector's points lie on the diagonal; the bars below count the events."""
    from soundnet.calibration import expected_calibration_error, reliability

    fig, (ax,), fmt = _summary_figure(out, columns=1, width=width, height=height, dpi=dpi)
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1, label="calibrated (diagonal)")
    counts = ax.inset_axes([0.55, 0.06, 0.42, 0.2])
    series = [("raw", raw, "tab:red")] + ([("calibrated", reported, REFERENCE_COLOR)] if reported is not None else [])
    for name, data, color in series:
        r = reliability(data.confidence, data.true, bins=bins)
        filled = r.count > 0
        ece = expected_calibration_error(data.confidence, data.true, bins=bins)
        ece_text = "n/a" if ece is None else f"{ece:.3f}"
        ax.plot(r.confidence[filled], r.fraction_true[filled], marker="o", color=color, label=f"{name} (ECE {ece_text})")
        centres = (r.edges[:-1] + r.edges[1:]) / 2
        offset = (-0.25 if name == "raw" else 0.25) / bins
        counts.bar(centres + offset, r.count, width=0.45 / bins, color=color)
    counts.set_xlim(0, 1)
    counts.set_title("events per bin", fontsize="x-small")
    counts.tick_params(labelsize="x-small")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("event confidence (bin mean)")
    ax.set_ylabel("fraction of events true (onset collar 0.5 s)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    if title:
        ax.set_title(title, loc="left", fontsize="small")
    return _save(fig, out, fmt, dpi)
