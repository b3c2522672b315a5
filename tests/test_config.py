"""Tests of soundnet.config: defaults equal configs/default.yaml, and every bad value is refused by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from soundnet.config import (
    AugmentConfig,
    Config,
    FeatureConfig,
    ModelConfig,
    PostConfig,
    TrainConfig,
    from_dict,
    load_config,
    to_dict,
)
from soundnet.errors import SoundnetError

DEFAULT_YAML = Path(__file__).parent.parent / "configs" / "default.yaml"
SECTIONS = {
    "features": FeatureConfig,
    "model": ModelConfig,
    "training": TrainConfig,
    "postprocessing": PostConfig,
    "augmentation": AugmentConfig,
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_yaml_equals_dataclass_defaults():
    data = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))
    assert set(data) == set(SECTIONS)
    for section, cls in SECTIONS.items():
        assert data[section] == to_dict(cls()), section
        assert list(data[section]) == [f.name for f in dataclasses.fields(cls)], f"{section}: same keys in the same order"


def test_load_default_yaml_gives_defaults():
    assert load_config(DEFAULT_YAML) == Config()
    assert load_config(None) == Config()


def test_known_default_values():
    c = Config()
    assert c.features.frame_seconds == 0.01
    assert c.features.n_features == 129
    assert c.model.window == 100


def test_partial_file_changes_only_its_keys(tmp_path):
    config = load_config(write(tmp_path, "features:\n  fmax: 7000\ntraining:\n  learning_rate: 1\n  epochs: 3\n"))
    assert config.features.fmax == 7000.0 and isinstance(config.features.fmax, float)
    assert config.training.learning_rate == 1.0 and isinstance(config.training.learning_rate, float)
    assert config.training.epochs == 3
    assert config.model == ModelConfig() and config.postprocessing == PostConfig()
    assert dataclasses.replace(config.features, fmax=None) == FeatureConfig()


def test_empty_file_and_empty_sections(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "# only a comment\n")) == Config()
    assert load_config(write(tmp_path, "features:\nmodel: {}\n")) == Config()


def test_fmax_null(tmp_path):
    assert load_config(write(tmp_path, "features: {fmax: null}\n")).features.fmax is None


def test_overrides():
    config = load_config(None, epochs=2, seed=7, batch_size=None)
    assert config.training.epochs == 2 and config.training.seed == 7 and config.training.batch_size == 32


def test_bad_override():
    with pytest.raises(SoundnetError, match="epochs"):
        load_config(None, epochs=0)
    with pytest.raises(SoundnetError, match="nonsense"):
        load_config(None, nonsense=1)


def _refused(tmp_path: Path, text: str, *words: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SoundnetError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, message
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("features:\n  hop_lenght: 160\n", "hop_lenght"),
        ("training:\n  epoch: 3\n", "epoch"),
        ("postprocessing:\n  threshhold: 0.3\n", "threshhold"),
        ("network:\n  window: 100\n", "network"),
    ],
)
def test_unknown_keys(tmp_path, text, key):
    _refused(tmp_path, text, key)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("features:\n  hop_length: '160'\n", "hop_length"),
        ("features:\n  hop_length: 160.0\n", "hop_length"),
        ("training:\n  epochs: true\n", "epochs"),
        ("model:\n  dropout: true\n", "dropout"),
        ("model:\n  dropout: '0.4'\n", "dropout"),
        ("postprocessing:\n  threshold: [0.5]\n", "threshold"),
        ("features:\n  fmax: high\n", "fmax"),
        ("training:\n  seed: null\n", "seed"),
    ],
)
def test_wrong_types(tmp_path, text, key):
    _refused(tmp_path, text, key)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("features:\n  hop_length: -160\n", "hop_length"),
        ("features:\n  sample_rate: 0\n", "sample_rate"),
        ("features:\n  n_fft: 511\n", "n_fft"),
        ("features:\n  n_mfcc: 80\n", "n_mfcc"),
        ("features:\n  win_length: 1024\n", "win_length"),
        ("features:\n  fmax: 9000\n", "fmax"),
        ("features:\n  fmin: -1\n", "fmin"),
        ("features:\n  delta_width: 4\n", "delta_width"),
        ("model:\n  dropout: 1.5\n", "dropout"),
        ("model:\n  window: 0\n", "window"),
        ("training:\n  learning_rate: -0.1\n", "learning_rate"),
        ("training:\n  validation_fraction: 1.2\n", "validation_fraction"),
        ("training:\n  max_positive_weight: 0.5\n", "max_positive_weight"),
        ("postprocessing:\n  threshold: 1.01\n", "threshold"),
        ("postprocessing:\n  min_duration: -0.1\n", "min_duration"),
        ("postprocessing:\n  merge_gap: -1\n", "merge_gap"),
        ("postprocessing:\n  median_seconds: -0.5\n", "median_seconds"),
    ],
)
def test_out_of_range(tmp_path, text, key):
    _refused(tmp_path, text, key)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("training:\n  learning_rate: .nan\n", "learning_rate"),
        ("training:\n  max_positive_weight: .nan\n", "max_positive_weight"),
        ("postprocessing:\n  median_seconds: .nan\n", "median_seconds"),
        ("postprocessing:\n  min_duration: .nan\n", "min_duration"),
    ],
)
def test_nan_refused(tmp_path, text, key):
    _refused(tmp_path, text, key)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("model:\n  dropout: .nan\n", "dropout"),
        ("postprocessing:\n  threshold: .nan\n", "threshold"),
        ("features:\n  fmin: .nan\n", "fmin"),
    ],
)
def test_nan_refused_by_interval_checks(tmp_path, text, key):
    _refused(tmp_path, text, key)


def test_unknown_keys_of_mixed_types(tmp_path):
    _refused(tmp_path, "features:\n  1: 2\n  foo: 3\n", "foo")


def test_non_string_unknown_key(tmp_path):
    _refused(tmp_path, "features:\n  1: 2\n", "1")


def test_section_not_a_mapping(tmp_path):
    _refused(tmp_path, "features: 3\n", "features")
    _refused(tmp_path, "features: [1, 2]\n", "features")


def test_top_level_not_a_mapping(tmp_path):
    _refused(tmp_path, "- features\n- model\n")


def test_invalid_yaml(tmp_path):
    _refused(tmp_path, "features: {hop_length: 160\n")


def test_python_object_tag_refused(tmp_path):
    marker = tmp_path / "pwned"
    text = f"features: !!python/object/apply:os.system ['touch {marker}']\n"
    _refused(tmp_path, text)
    assert not marker.exists()
    _refused(tmp_path, "features: !!python/object:soundnet.config.FeatureConfig {hop_length: 1}\n")


def test_missing_file(tmp_path):
    with pytest.raises(SoundnetError, match="nowhere.yaml"):
        load_config(tmp_path / "nowhere.yaml")


def test_from_dict_round_trip():
    config = Config(features=FeatureConfig(n_mels=40, n_mfcc=20, fmax=7600.0), postprocessing=PostConfig(threshold=0.3))
    assert from_dict(Config, to_dict(config)) == config


def test_dataclasses_validate_directly():
    with pytest.raises(SoundnetError, match="n_fft"):
        FeatureConfig(n_fft=511)
    with pytest.raises(SoundnetError, match="dropout"):
        ModelConfig(dropout=1.5)
    with pytest.raises(SoundnetError, match="patience"):
        TrainConfig(patience=0)
    with pytest.raises(SoundnetError, match="threshold"):
        PostConfig(threshold=-0.1)


def test_taps_longer_than_the_mfcc_are_refused_when_the_config_loads(tmp_path):
    """``features: {n_mfcc: 13}`` with the default 16 taps is refused at load time (it
    used to pass extract and crash train with a traceback)."""
    from soundnet.config import load_config
    from soundnet.errors import SoundnetError

    path = tmp_path / "c.yaml"
    path.write_text("features:\n  n_mfcc: 13\n")
    with pytest.raises(SoundnetError, match=r"c.yaml: model.taps \(16\) must be <= features.n_mfcc \(13\)"):
        load_config(path)
    path.write_text("features:\n  n_mfcc: 13\nmodel:\n  taps: 8\n")
    assert load_config(path).model.taps == 8


def test_seed_out_of_range_is_refused():
    from clirun import cli, fails

    from soundnet.config import load_config
    from soundnet.errors import SoundnetError

    with pytest.raises(SoundnetError, match=r"seed must be in \[0, 2\*\*32\)"):
        load_config(seed=-1)
    fails(cli("train", ".", "--out", "x", "--seed", "-1"), "--seed", code=2)
