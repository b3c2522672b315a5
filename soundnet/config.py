"""Typed, validated configuration: features, network, training, post-processing, augmentation.

``configs/default.yaml`` documents every value; the defaults below are the same
(a test holds them equal). A YAML file only needs the keys it changes; unknown keys,
wrong types and out-of-range values are errors.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soundnet.errors import SoundnetError
from soundnet.inputs import n_features

#: Version of the feature code (soundnet.features): raised whenever the same
#: FeatureConfig would give other numbers, so a model card can refuse features it was
#: not trained on.
FEATURE_CODE_VERSION = 1

#: Longest time a post-processing value may span (a day, in seconds).
MAX_SECONDS = 86400.0


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes per-frame features (must match between training and use)."""

    sample_rate: int = 16000  # Hz; audio is resampled to it
    hop_length: int = 160  # samples between frames (10 ms)
    n_fft: int = 512  # FFT size (32 ms); even
    win_length: int = 400  # analysis window (25 ms); <= n_fft
    n_mels: int = 64  # mel bands
    n_mfcc: int = 64  # MFCC per frame; <= n_mels
    fmin: float = 0.0  # Hz; 0 <= fmin < fmax
    fmax: float | None = None  # Hz, <= sample_rate / 2; None: sample_rate / 2
    delta_width: int = 9  # frames of the delta filter; odd, >= 3

    def __post_init__(self) -> None:
        _positive(self, "sample_rate", "hop_length", "n_fft", "win_length", "n_mels", "n_mfcc")
        if self.n_fft % 2:
            _fail(f"n_fft must be even. Received: n_fft={self.n_fft}")
        if self.win_length > self.n_fft:
            _fail(f"win_length must be <= n_fft. Received: win_length={self.win_length}")
        if self.n_mfcc > self.n_mels:
            _fail(f"n_mfcc must be <= n_mels. Received: n_mfcc={self.n_mfcc}")
        nyquist = self.sample_rate / 2
        fmax = nyquist if self.fmax is None else self.fmax
        if not 0 <= self.fmin < fmax <= nyquist:
            _fail(f"need 0 <= fmin < fmax <= sample_rate/2. Received: fmin={self.fmin}, fmax={self.fmax}")
        if self.delta_width < 3 or self.delta_width % 2 == 0:
            _fail(f"delta_width must be an odd integer >= 3. Received: delta_width={self.delta_width}")

    @property
    def n_features(self) -> int:
        """Columns of a feature matrix: MFCC, their deltas, and the zero-crossing rate."""
        return n_features(self.n_mfcc)

    @property
    def frame_seconds(self) -> float:
        return self.hop_length / self.sample_rate


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the CNN-LSTM-Dense network (defaults: the seed's network)."""

    window: int = 100  # frames the network sees at once (1 s); >= 1, at most the longest file
    filters: int = 64  # per-frame Conv1D filters; >= 1
    taps: int = 16  # Conv1D kernel length over the MFCC axis; 1 <= taps <= n_mfcc
    lstm_units: int = 64  # >= 1
    aux_units: int = 65  # units of the Dense layer on deltas + ZCR; >= 1
    dropout: float = 0.4  # before the LSTM; in [0, 1]
    bn_momentum: float = 0.99  # of the conv BatchNorm's moving statistics; in [0, 1]
    bn_epsilon: float = 0.001  # > 0

    def __post_init__(self) -> None:
        _positive(self, "window", "filters", "taps", "lstm_units", "aux_units", "bn_epsilon")
        _unit_interval(self, "dropout", "bn_momentum")


@dataclass(frozen=True)
class TrainConfig:
    """How the network is trained."""

    epochs: int = 40  # at most; >= 1
    batch_size: int = 32  # windows per step; >= 1
    learning_rate: float = 0.001  # RMSprop; > 0
    stride: int = 50  # frames between training windows; >= 1
    validation_fraction: float = 0.2  # of the files held out; in [0, 1]
    patience: int = 8  # epochs without a better validation figure (monitor) before stopping; >= 1
    min_epochs: int = 0  # epochs always trained, and the first whose weights may be kept (capped at epochs); >= 0
    monitor: str = "val_loss"  # what early stopping and the kept epoch follow: val_loss (lower) or val_ap (higher)
    max_positive_weight: float = 20.0  # cap of the positive frames' class weight; >= 1, finite
    seed: int = 0  # data split, order and initial weights
    shift_frames: int = 0  # each epoch moves every training window by up to this many frames; >= 0
    negative_ratio: float = 0.5  # windows of --negatives recordings per epoch, per annotated window (at most); >= 0
    hard_negative_weight: float = 1.0  # weight of negative windows the network fired on at the last epoch; >= 1 (1: off)
    hard_negative_windows: int = 2048  # negative windows scored for that after each epoch; >= 1
    time_mask_frames: int = 0  # half the training windows get a run of up to this many frames masked; >= 0 (0: off)
    feature_mask_columns: int = 0  # half get a band of up to this many MFCC (and their deltas) masked; >= 0 (0: off)
    reviewed_weight: float = 4.0  # weight of each frame a reviewer decided (train --reviewed); > 0, finite
    ema_momentum: float = 0.0  # validate and keep an exponential moving average of the weights; in [0, 1) (0: off)
    folds: int = 0  # >= 2: K-fold cross-validation over the groups chooses epochs and post-processing; 0: one split

    def __post_init__(self) -> None:
        _positive(self, "epochs", "batch_size", "learning_rate", "stride", "patience")
        _unit_interval(self, "validation_fraction")
        if not 0 <= self.seed < 2**32:
            _fail(f"seed must be in [0, 2**32). Received: seed={self.seed}")
        if not 1 <= self.max_positive_weight < math.inf:
            _fail(f"max_positive_weight must be >= 1 and finite. Received: {self.max_positive_weight}")
        if not 1 <= self.hard_negative_weight < math.inf:
            _fail(f"hard_negative_weight must be >= 1 and finite. Received: {self.hard_negative_weight}")
        if not 0 < self.reviewed_weight < math.inf:
            _fail(f"reviewed_weight must be > 0 and finite. Received: {self.reviewed_weight}")
        if not 0 <= self.ema_momentum < 1:
            _fail(f"ema_momentum must be in [0, 1). Received: {self.ema_momentum}")
        if not 0 <= self.negative_ratio < math.inf:
            _fail(f"negative_ratio must be >= 0 and finite. Received: {self.negative_ratio}")
        for name in ("min_epochs", "shift_frames", "time_mask_frames", "feature_mask_columns"):
            if getattr(self, name) < 0:
                _fail(f"{name} must be >= 0. Received: {name}={getattr(self, name)}")
        _positive(self, "hard_negative_windows")
        if self.folds < 0 or self.folds == 1:
            _fail(f"folds must be 0 (one validation split) or at least 2. Received: folds={self.folds}")
        if self.monitor not in ("val_loss", "val_ap"):
            _fail(f"monitor must be val_loss or val_ap. Received: monitor={self.monitor!r}")


@dataclass(frozen=True)
class PostConfig:
    """How per-frame probabilities become events."""

    threshold: float = 0.5  # a frame is active when its probability reaches it; in [0, 1]
    median_seconds: float = 0.0  # median filter over the probabilities; 0: none; at most MAX_SECONDS
    min_duration: float = 0.0  # shorter events are dropped (seconds); at most MAX_SECONDS
    merge_gap: float = 0.0  # events closer than this are merged (seconds); at most MAX_SECONDS
    # hysteresis: an event is a run of frames at or above it that reaches the threshold; None: the threshold
    off_threshold: float | None = None

    def __str__(self) -> str:
        off = "" if self.off_threshold is None else f" (off {self.off_threshold:g})"
        return (
            f"threshold {self.threshold:g}{off}, median filter {self.median_seconds:g} s, "
            f"minimum duration {self.min_duration:g} s, merge gap {self.merge_gap:g} s"
        )

    @property
    def off(self) -> float:
        """The level an event lasts down to: ``off_threshold``, or the threshold without hysteresis."""
        return self.threshold if self.off_threshold is None else self.off_threshold

    def __post_init__(self) -> None:
        _unit_interval(self, "threshold")
        if self.off_threshold is not None and not 0 <= self.off_threshold <= self.threshold:
            _fail(
                f"off_threshold must be in [0, threshold]. Received: off_threshold={self.off_threshold}, "
                f"threshold={self.threshold}"
            )
        for name in ("median_seconds", "min_duration", "merge_gap"):
            if not 0 <= getattr(self, name) <= MAX_SECONDS:  # also refuses NaN
                _fail(f"{name} must be >= 0 and at most {MAX_SECONDS:g} seconds. Received: {name}={getattr(self, name)}")


@dataclass(frozen=True)
class AugmentConfig:
    """How extract makes augmented copies of each annotated recording (soundnet.augment)."""

    copies: int = 0  # augmented copies per recording, besides the original; 0: no augmentation (the default: see BENCHMARKS.md)
    seed: int = 0  # with the file id and the copy number, the seed of each copy; in [0, 2**32)
    gain_probability: float = 0.5
    gain_db: float = 6.0  # gain drawn in [-gain_db, +gain_db] dB; in [0, 40]
    noise_probability: float = 0.5  # mix in an excerpt of a noise file (none without files)
    snr_db_min: float = 0.0  # SNR of the events to the noise, dB; snr_db_min <= snr_db_max, in [-30, 60]
    snr_db_max: float = 20.0
    pitch_probability: float = 0.3
    pitch_semitones: float = 2.0  # shift drawn in [-x, +x] semitones; in [0, 12]
    stretch_probability: float = 0.3
    stretch: float = 0.1  # rate drawn in [1 - x, 1 + x], events scaled by it; in [0, 0.5]
    eq_probability: float = 0.3
    eq_db: float = 6.0  # seven-band EQ, each band's gain in [-x, +x] dB; in [0, 24]
    reverb_probability: float = 0.3
    rt60_min: float = 0.2  # seconds; 0.05 <= rt60_min <= rt60_max <= 3
    rt60_max: float = 0.8
    small_speaker_probability: float = 0.1  # band-pass ~250-500 Hz to 3-5 kHz and a little distortion
    clipping_probability: float = 0.05
    clipping_percent: int = 6  # at most this % of the samples clipped, half at each extreme (steps of 2 %); in [0, 50]
    distance_probability: float = 0.2  # a far source: attenuated, more reverberant, low-passed
    distance_db: float = 12.0  # attenuation drawn in [0, x] dB; in [0, 40]

    def __post_init__(self) -> None:
        _unit_interval(self, *(f.name for f in dataclasses.fields(self) if f.name.endswith("_probability")))
        if self.copies < 0:
            _fail(f"copies must be >= 0. Received: copies={self.copies}")
        if not 0 <= self.seed < 2**32:
            _fail(f"seed must be in [0, 2**32). Received: seed={self.seed}")
        ranges = {
            "gain_db": (0, 40),
            "snr_db_min": (-30, 60),
            "snr_db_max": (-30, 60),
            "pitch_semitones": (0, 12),
            "stretch": (0, 0.5),
            "eq_db": (0, 24),
            "rt60_min": (0.05, 3),
            "rt60_max": (0.05, 3),
            "clipping_percent": (0, 50),
            "distance_db": (0, 40),
        }
        for name, (low, high) in ranges.items():
            if not low <= getattr(self, name) <= high:  # also refuses NaN
                _fail(f"{name} must be in [{low}, {high}]. Received: {name}={getattr(self, name)}")
        if self.snr_db_min > self.snr_db_max:
            _fail(f"snr_db_min must be <= snr_db_max. Received: {self.snr_db_min} > {self.snr_db_max}")
        if self.rt60_min > self.rt60_max:
            _fail(f"rt60_min must be <= rt60_max. Received: {self.rt60_min} > {self.rt60_max}")


@dataclass(frozen=True)
class Config:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    postprocessing: PostConfig = field(default_factory=PostConfig)
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        check_taps(self.model, self.features)


def check_taps(model: ModelConfig, features: FeatureConfig) -> None:
    """The per-frame convolution must fit in a frame's MFCC vector."""
    if model.taps > features.n_mfcc:
        _fail(
            f"model.taps ({model.taps}) must be <= features.n_mfcc ({features.n_mfcc}): "
            "the per-frame convolution runs over a frame's MFCC; lower model.taps"
        )


def _fail(message: str) -> typing.NoReturn:
    raise SoundnetError(message)


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        if not 0 < getattr(obj, name) < math.inf:  # also refuses NaN
            _fail(f"{name} must be > 0 and finite. Received: {name}={getattr(obj, name)}")


def _unit_interval(obj: Any, *names: str) -> None:
    for name in names:
        if not 0 <= getattr(obj, name) <= 1:
            _fail(f"{name} must be in [0, 1]. Received: {name}={getattr(obj, name)}")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check one YAML value against a dataclass field type (int, float, str, X | None)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (annotation,) = [a for a in args if a is not type(None)]
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is str and isinstance(value, str):
        return value
    _fail(f"{where}: expected {annotation.__name__}, got {value!r}")


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        _fail(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - set(fields)))
    if unknown:
        _fail(f"{where}: unknown key(s) {', '.join(map(str, unknown))} (known: {', '.join(fields)})")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(hint, value, f"{where}.{name}")
        else:
            values[name] = _coerce(value, hint, f"{where}.{name}")
    try:
        return cls(**values)
    except SoundnetError as error:
        _fail(f"{where}: {error}")


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


#: Largest YAML config soundnet reads.
MAX_CONFIG_BYTES = 2**20


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path``, read with limits: at most :data:`MAX_CONFIG_BYTES`,
    UTF-8, safe tags only, and no aliases (``*name``: a few lines of them can expand to
    gigabytes, the "billion laughs"; a config never needs one)."""
    import yaml

    from soundnet.storage import read_bounded

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                _fail(f"{path} line {mark.line + 1}: YAML aliases (*name) are not accepted in a config")
            return super().compose_node(parent, index)

    data = read_bounded(path, limit=MAX_CONFIG_BYTES, what="config")
    try:
        return yaml.load(data.decode("utf-8"), Loader=NoAliasLoader)  # noqa: S506  a SafeLoader
    except UnicodeDecodeError:
        _fail(f"{path}: not a UTF-8 text file (save the config as UTF-8)")
    except RecursionError:
        _fail(f"{path}: not valid YAML (nested too deeply)")
    except yaml.YAMLError as error:
        _fail(f"{path}: not valid YAML ({str(error).splitlines()[0]})")


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """Read a YAML config (:func:`read_yaml`) over the defaults; ``overrides`` replace training keys.

    Parameters
    ----------
    path : Path or None
        A YAML file with any of the sections ``features``, ``model``, ``training``,
        ``postprocessing``, ``augmentation``; None gives the defaults.
    """
    data: dict = {}
    if path is not None:
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            _fail(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    where = str(path) if path is not None else "config"
    config = from_dict(Config, data, where)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        training = from_dict(TrainConfig, {**to_dict(config.training), **overrides}, f"{where}.training")
        config = dataclasses.replace(config, training=training)
    return config
