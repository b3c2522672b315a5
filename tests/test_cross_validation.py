"""K-fold cross-validation over the groups (``training.folds``, ``train --folds K``):
folds that never cut a group and validate every file once, out-of-fold figures on the
card, a final network trained on every file, and a resume that skips finished folds
(one interrupted and resumed training covers all of it: each fold is a training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clirun import cli, ok
from hypothesis import given, settings
from hypothesis import strategies as st
from planted import planted_set

from soundnet.errors import SoundnetError
from soundnet.events import Event
from soundnet.groups import fold_splits
from soundnet.run import read_card, read_out_of_fold
from soundnet.tuning import BEST_F1, BEST_FOLD_F1, search_postprocessing, tune


@given(
    st.lists(st.integers(0, 9), min_size=4, max_size=40),
    st.integers(2, 4),
    st.integers(0, 1000),
    st.lists(st.booleans(), min_size=40, max_size=40),
)
@settings(max_examples=150, deadline=None)
def test_every_item_is_validated_in_exactly_one_fold_and_no_fold_cuts_a_group(groups, folds, seed, negative):
    names = [f"g{g}" for g in groups]
    strata = negative[: len(names)]
    if len({n for n, s in zip(names, strata, strict=True) if not s}) < folds:
        with pytest.raises(SoundnetError, match=f"{folds}-fold cross-validation needs at least {folds} groups"):
            fold_splits(names, folds=folds, seed=seed, strata=strata)
        return
    splits = fold_splits(names, folds=folds, seed=seed, strata=strata)
    assert len(splits) == folds
    held = sorted(i for split in splits for i in split.validation)
    assert held == list(range(len(names)))  # each item validated once
    for split in splits:
        assert sorted(split.train + split.validation) == list(range(len(names)))
        kept = {(names[i], strata[i]) for i in split.train}
        assert not kept & {(names[i], strata[i]) for i in split.validation}  # whole groups
        assert any(not strata[i] for i in split.validation)  # annotated files in every fold
    assert splits == fold_splits(names, folds=folds, seed=seed, strata=strata)  # seeded


def test_folds_are_balanced_by_files():
    names = [f"site{i // 2}" for i in range(20)] + ["big"] * 10  # 10 groups of 2 files and one of 10
    sizes = sorted(len(s.validation) for s in fold_splits(names, folds=3, seed=0))
    assert sizes == [10, 10, 10]


def grouped_dataset(tmp_path, *, files=6, groups=3):
    """Planted files, two per group (the group column), extracted."""
    audio = tmp_path / "audio"
    table, truth = planted_set(audio, files=files, seconds=3.0, seed=11, empty_every=0)
    names = sorted(truth)
    rows = ["filename\tonset\toffset\tevent_label\tgroup"]
    for name in names:
        rows += [f"{name}\t{on}\t{off}\tbeep\tsite{names.index(name) % groups}" for on, off in truth[name]]
    (tmp_path / "grouped.tsv").write_text("\n".join(rows) + "\n")
    ok(cli("extract", audio, "--annotations", tmp_path / "grouped.tsv", "--out", tmp_path / "data"))
    config = tmp_path / "fast.yaml"
    config.write_text("training:\n  epochs: 3\n  patience: 2\n  batch_size: 8\n  stride: 25\n")
    return tmp_path / "data", config, names


def _fold_case():
    """Fold 1: 8 files whose event peaks at 0.95, each with a 0.8 look-alike 3 s later;
    fold 2: 2 files of a quieter source whose event peaks at 0.75; fold 3: 2 files with no
    event at all. Threshold 0.9 finds fold 1's events only (pooled F1 16/18 = 0.889, but
    nothing in fold 2); 0.7 finds every event and fold 1's look-alikes (pooled 20/28 = 0.714;
    fold 1 0.667, fold 2 1.0)."""
    probabilities, reference, folds = {}, {}, {}
    for i in range(12):
        name, p = f"f{i:02d}.wav", np.full(1000, 0.05, np.float32)  # 10 s at 10 ms frames
        fold, peak = (1, 0.95) if i < 8 else (2, 0.75) if i < 10 else (3, None)
        if peak is not None:
            p[200:300] = peak
            reference[name] = [Event(name, 2.0, 3.0, "moo")]
        else:
            reference[name] = []
        if fold == 1:
            p[500:560] = 0.8
        probabilities[name], folds[name] = p, fold
    return probabilities, reference, folds


def test_cross_validated_tuning_chooses_what_holds_on_every_fold():
    probabilities, reference, folds = _fold_case()
    grid = {"threshold": (0.7, 0.9), "median_seconds": (0.0,), "min_duration": (0.0,), "merge_gap": (0.0,)}
    durations = dict.fromkeys(probabilities, 10.0)
    kwargs = dict(label="moo", frame_seconds=0.01, durations=durations, grid=grid)
    pooled = search_postprocessing(probabilities, reference, **kwargs)
    assert (pooled.post.threshold, pooled.criterion, pooled.fold_f1) == (0.9, BEST_F1, None)
    assert pooled.scores.event_onset.f_measure == pytest.approx(16 / 18)
    by_fold = search_postprocessing(probabilities, reference, folds=folds, **kwargs)
    assert (by_fold.post.threshold, by_fold.criterion) == (0.7, BEST_FOLD_F1)
    assert by_fold.fold_f1 == pytest.approx((16 / 24, 1.0))  # fold 3 holds no event: not averaged
    assert by_fold.scores.event_onset.f_measure == pytest.approx(20 / 28)  # the card's figures stay pooled
    assert by_fold.criterion_json()["fold_event_f1"] == pytest.approx([16 / 24, 1.0])
    one_fold = search_postprocessing(probabilities, reference, folds=dict.fromkeys(folds, 1), **kwargs)
    assert (one_fold.post, one_fold.criterion) == (pooled.post, BEST_F1)  # nothing to average
    limited = search_postprocessing(probabilities, reference, folds=folds, max_false_alarms_per_hour=0.0, **kwargs)
    assert limited.post.threshold == 0.9 and limited.fold_f1 is None  # a false alarm limit ranks misses, pooled


def test_too_few_groups_for_the_folds_is_a_clear_error(tmp_path):
    data, config, _ = grouped_dataset(tmp_path, files=4, groups=2)
    result = cli("train", data, "--out", tmp_path / "run", "--config", config, "--folds", 3)
    assert result.exit_code != 0
    assert "3-fold cross-validation needs at least 3 groups of annotated files; there are 2" in result.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_folds_of_one_is_refused_by_the_config():
    from soundnet.config import TrainConfig

    with pytest.raises((SoundnetError, ValueError), match="folds must be 0"):
        TrainConfig(folds=1)


def test_an_interrupted_cross_validation_resumes_after_its_finished_folds(tmp_path, monkeypatch):
    import soundnet.training as training
    from soundnet.config import load_config

    data, config_file, names = grouped_dataset(tmp_path)
    config = load_config(config_file, folds=3)
    calls = []
    fit = training._fit

    def interrupted_in_the_second_fold(plan, partial, **kwargs):
        calls.append(partial.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return fit(plan, partial, **kwargs)

    monkeypatch.setattr(training, "_fit", interrupted_in_the_second_fold)
    with pytest.raises(KeyboardInterrupt):
        training.train(data, out=tmp_path / "run", config=config)
    assert (tmp_path / "run.partial" / "folds" / "fold-1" / training.HELD_OUT).is_file()
    first = np.load(tmp_path / "run.partial" / "folds" / "fold-1" / training.HELD_OUT)
    first = {k: first[k] for k in first.files}

    calls.clear()
    monkeypatch.setattr(training, "_fit", lambda plan, partial, **kw: calls.append(partial.name) or fit(plan, partial, **kw))
    result = training.train(data, out=tmp_path / "run", config=config, resume=True)
    assert calls == ["fold-2", "fold-3", "run.partial"]  # fold 1 was not trained again
    assert len(first) == 2  # its two held-out files

    run = tmp_path / "run"
    card = json.loads((run / "card.json").read_text())
    split = card["validation"]["split"]
    assert (split["by"], split["folds"], split["fold_groups"], split["validation_files"]) == ("group", 3, [1, 1, 1], 6)
    assert sorted(p.rsplit("/", 1)[-1] for p in card["validation"]["files"]) == names  # every file, out of fold
    folds = card["training"]["folds"]
    assert [f["fold"] for f in folds] == [1, 2, 3] and all(1 <= f["kept_epoch"] <= f["epochs_run"] <= 3 for f in folds)
    kept = sorted(f["kept_epoch"] for f in folds)
    assert card["training"]["epochs_run"] == result.epochs == kept[1]  # the median kept epoch
    assert len(card["training"]["files"]) == 6  # the shipped network trained on every file
    assert not (run / "folds").exists() and not (tmp_path / "run.partial").exists()
    ok(cli("detect", tmp_path / "audio" / names[0], "--model", run))

    # the out-of-fold predictions stay in the run: tune re-tunes on them without audio
    oof = read_out_of_fold(run)
    assert sorted(oof.probabilities) == sorted(card["validation"]["files"]) and oof.target == card["target"]
    assert sorted(set(oof.folds.values())) == [1, 2, 3]
    assert all(
        oof.folds[n] == 1 for n in oof.probabilities if any(np.array_equal(oof.probabilities[n], q) for q in first.values())
    )
    assert card["validation"]["criterion"] == BEST_FOLD_F1 and len(card["validation"]["fold_event_f1"]) in (2, 3)
    assert all(len(p) == round(oof.durations[n] / 0.01) for n, p in oof.probabilities.items())
    assert all(any(np.array_equal(p, q) for p in oof.probabilities.values()) for q in first.values())  # fold 1's, as saved
    assert sum(len(e) for e in oof.events.values()) == card["validation"]["alarms"]["reference"]
    tuned = tune(run)  # the same grid and criterion on the same predictions: what training chose
    assert tuned.post == read_card(run).postprocessing and tuned.files == []
    assert tuned.scores.event_onset.f_measure == card["validation"]["event_onset"]["f_measure"]
    assert read_card(run).validation["tuned_on"][0].startswith("out-of-fold predictions")
    retuned = read_card(run).validation  # the same files: training's split and frame figures stay, counts refreshed
    assert retuned["split"] == split and retuned["frame"] == card["validation"]["frame"] and "training_validation" not in retuned
    assert retuned["files"] == card["validation"]["files"]
    out = ok(cli("tune", run, "--max-false-alarms-per-hour", "1000")).stdout
    assert "fewest misses with at most 1000 false alarms per hour" in out
    limited = read_card(run).validation  # a limit ranks misses, pooled: no fold figures of another point linger
    assert "fold_event_f1" not in limited and limited["split"] == split
    tune(run, tmp_path / "audio", annotations=tmp_path / "grouped.tsv")  # on audio: training's figures set aside
    assert read_card(run).validation["training_validation"]["split"] == split
    tune(run)  # back on the out-of-fold predictions: training's split and frame figures again
    again = read_card(run).validation
    assert again["split"] == split and again["frame"] == card["validation"]["frame"] and "training_validation" not in again
