"""The ``soundnet`` command line: a thin layer over the library.

Each command parses its options, calls the library and prints. Results go to stdout
or ``--output``; progress, warnings and errors to stderr. Heavy imports (TensorFlow,
librosa) happen inside the commands so that ``soundnet --help`` is instant.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import sys
from pathlib import Path

import click

from soundnet import __version__
from soundnet.errors import SoundnetError, UsageError, check_label, os_reason, printable

log = logging.getLogger("soundnet")

EXISTING = click.Path(exists=True, path_type=Path)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
EXISTING_FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)


class OutputPath(click.Path):
    """A path to write: never empty (``--output ""`` would name the current folder)."""

    def convert(self, value, param, ctx):
        if not str(value).strip():
            self.fail("an empty path: give a file or folder name", param, ctx)
        return super().convert(value, param, ctx)


OUTPUT_FILE = OutputPath(dir_okay=False, path_type=Path)
OUTPUT_FOLDER = OutputPath(file_okay=False, path_type=Path)
fail_fast_option = click.option("--fail-fast", is_flag=True, help="Stop at the first file that fails (else report it and go on).")
jobs_option = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    help="Worker processes (detect also cuts files over 10 min into pieces); the results are the same whatever the number. [default: the cores]",
)
scheduler_option = click.option(
    "--scheduler",
    metavar="ADDRESS",
    help='Run the per-file work on the Dask cluster of this scheduler (tcp://host:8786; pip install "soundnet[cluster]"; '
    "see docs/cluster.md). The workers must read the audio at the same paths.",
)
AUDIO_INPUTS = click.Path(exists=True, allow_dash=True, path_type=Path)  # "-": a WAV on stdin
OUTPUT_FORMATS = ("text", "tsv", "csv", "json", "audacity", "raven")  # soundnet.outputs.OUTPUT_FORMATS (a test holds them equal)


class FiniteFloat(click.FloatRange):
    """A float range that also refuses NaN and infinities (click's FloatRange lets NaN
    through, and ``inf`` past any open upper end): every float option uses it."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


MAX_SECONDS = 86400.0  # soundnet.config.MAX_SECONDS (a test holds them equal; config imports NumPy)
SECONDS = FiniteFloat(0, MAX_SECONDS)
PROBABILITY = FiniteFloat(0, 1)


def _label(ctx, param, value):
    """A label option: a short printable string (soundnet.errors.check_label), else a usage error."""
    if value is not None:
        try:
            check_label(value, "the label given")
        except SoundnetError as error:
            raise click.BadParameter(printable(str(error)), ctx=ctx, param=param) from None
    return value


class _PrintableFormatter(logging.Formatter):
    """Log lines as one printable line each (see soundnet.errors.printable)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def library_errors(command):
    """Turn library errors into one-line messages with exit status 1; an OSError the
    library did not word (a folder it could not make...) names its path and reason."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UsageError as error:
            raise click.UsageError(printable(str(error))) from None
        except SoundnetError as error:
            raise click.ClickException(printable(str(error))) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            raise click.ClickException(printable(f"{where}{os_reason(error)}")) from None

    return wrapper


def _fail_batch(failures, *, attempted: int) -> None:
    """Exit 1 if any file failed (``failures``: soundnet.batch.Failure), listing every
    failure again at the end of a batch (each was already reported as it happened; one
    file needs no summary)."""
    if failures:
        if attempted > 1:
            click.echo(f"soundnet: {len(failures)} of {attempted} file(s) failed:", err=True)
            for failure in failures:
                click.echo(f"  {printable(failure.message)}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="soundnet")
@click.option("-v", "--verbose", count=True, help="Debugging detail on stderr (runtimes, timings, files).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def main(verbose: int, quiet: bool) -> None:
    """Train and run a detector of one target sound in audio (CNN-LSTM-Dense, per 10 ms frame)."""
    if verbose and quiet:
        raise click.UsageError("give -v or -q, not both")
    level = logging.ERROR if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


label_column_option = click.option(
    "--label-column",
    help="Column of Raven selection tables holding the label (default: Annotation, then Species, then Label).",
)


@main.command()
@click.argument("audio", nargs=-1, required=True, type=EXISTING)
@click.option(
    "--annotations",
    "-a",
    type=EXISTING_FILE,
    help="DCASE table (filename onset offset label, TSV or CSV) or Raven selection table (with Begin File or Begin Path). "
    "Without it, the label files beside the audio (x.wav + x.txt, or x.Table.1.selections.txt).",
)
@label_column_option
@click.option("--out", "-o", required=True, type=OUTPUT_FOLDER, help="Dataset folder to write.")
@click.option("--target", "-t", callback=_label, help="Label of the target sound (implied when the annotations hold one label).")
@jobs_option
@scheduler_option
@click.option(
    "--config",
    "config_path",
    type=EXISTING_FILE,
    help="YAML config (its features section is used).",
)
@click.option(
    "--negatives",
    multiple=True,
    type=EXISTING,
    help="Audio files or folders known to hold no target sound (local noise, the site's own sounds): every frame negative; repeatable.",
)
@click.option(
    "--group-pattern",
    help="Regular expression whose first group (or match) in a file's path names its group (site, device, source); "
    "validation holds out whole groups. Default: the table's group column, else each file.",
)
@click.option(
    "--augment",
    "copies",
    type=click.IntRange(min=0),
    help="Augmented copies per annotated recording (overrides the config's augmentation.copies; 0: none).",
)
@fail_fast_option
@library_errors
def extract(
    audio, annotations, label_column, out, target, jobs, scheduler, config_path, negatives, group_pattern, copies, fail_fast
):
    """Turn AUDIO files and folders and their annotations into a dataset of features and frame labels."""
    from soundnet.config import load_config
    from soundnet.dataset import extract as run_extract

    config = load_config(config_path)
    augmentation = config.augmentation if copies is None else dataclasses.replace(config.augmentation, copies=copies)
    report = run_extract(
        audio,
        out=out,
        annotations=annotations,
        target=target,
        config=config.features,
        jobs=jobs,
        scheduler=scheduler,
        fail_fast=fail_fast,
        progress=log.isEnabledFor(logging.INFO),  # -q hides the bar
        negatives=negatives,
        group_pattern=group_pattern,
        augmentation=augmentation,
        label_column=label_column,
    )
    log.info(
        "%s: %d file(s) extracted, %d unchanged, %d without annotation, %d failed (target %r)%s",
        out,
        len(report.extracted),
        len(report.reused),
        len(report.skipped),
        len(report.failures),
        report.target,
        f"; {report.augmented} augmented cop(ies)" if report.augmented else "",
    )
    _fail_batch(report.failures, attempted=len(report.extracted) + len(report.reused) + len(report.failures))


@main.command()
@click.argument("dataset", type=EXISTING_FOLDER)
@click.option("--out", "-o", required=True, type=OUTPUT_FOLDER, help="Run folder to write.")
@click.option(
    "--config",
    "config_path",
    type=EXISTING_FILE,
    help="YAML config (see configs/default.yaml).",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs (overrides the config).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Random seed (overrides the config).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Windows per batch (overrides the config).")
@click.option(
    "--folds",
    type=click.IntRange(min=0),
    help="K >= 2: cross-validate over K folds of whole groups to choose the epochs and post-processing, then train on "
    "every file (K + 1 trainings; overrides the config's training.folds).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted training of the same RUN from its last completed epoch.")
@click.option("--tensorboard", type=OUTPUT_FOLDER, help="Write TensorBoard logs to this folder.")
@click.option(
    "--reviewed",
    type=EXISTING_FILE,
    help="Reviewed table (soundnet review): accepted detections train as target events, rejected ones as hard negatives.",
)
@click.option("--audio", type=EXISTING_FOLDER, help="Folder of the reviewed table's recordings (with --reviewed).")
@click.option(
    "--from",
    "from_run",
    type=EXISTING_FOLDER,
    help="Fine-tune this run (its weights, normalisation and network sizes) instead of training anew.",
)
@library_errors
def train(dataset, out, config_path, epochs, seed, batch_size, folds, resume, tensorboard, reviewed, audio, from_run):
    """Train the CNN-LSTM-Dense detector on DATASET (written by soundnet extract)."""
    from soundnet.backend import quiet_import_keras
    from soundnet.config import load_config

    quiet_import_keras()
    from soundnet.training import train as run_train

    if (reviewed is None) != (audio is None):
        raise click.UsageError("--reviewed and --audio go together (the table and the folder of its recordings)")
    config = load_config(config_path, epochs=epochs, seed=seed, batch_size=batch_size, folds=folds)
    result = run_train(
        dataset,
        out=out,
        config=config,
        resume=resume,
        tensorboard=tensorboard,
        reviewed=reviewed,
        audio=audio,
        from_run=from_run,
    )
    scores = result.card.validation.get("event_onset", {})
    click.echo(
        f"{result.run}: trained {result.epochs} epoch(s); validation event F1 "
        f"{_fmt(scores.get('f_measure'))}, error rate {_fmt(scores.get('error_rate'))}; "
        f"post-processing {result.card.postprocessing}"
    )


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


model_option = click.option("--model", "-m", type=EXISTING_FOLDER, help="Run folder (default: the bundled detector).")


def reference_option(command):
    """``--annotations`` and ``--label-column``: the reference events."""
    command = label_column_option(command)
    return click.option(
        "--annotations",
        "-a",
        type=EXISTING_FILE,
        help="Reference events: a DCASE or Raven table; rows of files not given are left out "
        "(default: the label files beside the audio).",
    )(command)


def post_options(command):
    """Options that override the model card's post-processing."""
    options = [
        click.option("--threshold", type=PROBABILITY, help="Probability threshold (default: the model card's tuned value)."),
        click.option(
            "--off-threshold",
            type=PROBABILITY,
            help="Hysteresis: an event lasts while the probability stays at or above this, once it has reached "
            "--threshold (default: the card's; with --threshold alone, none).",
        ),
        click.option("--median", "median_seconds", type=SECONDS, help="Median filter length in seconds."),
        click.option("--min-duration", type=SECONDS, help="Drop events shorter than this (seconds)."),
        click.option("--merge-gap", type=SECONDS, help="Merge events closer than this (seconds)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


raw_confidence_option = click.option(
    "--raw-confidence",
    is_flag=True,
    help="Report the network's confidence (an event's highest frame probability), not the model card's calibrated one.",
)
no_verify_option = click.option(
    "--no-verify",
    is_flag=True,
    help="Ignore the model card's verifier (soundnet tune --verify): report every event of the post-processing.",
)


def _overrides(threshold, off_threshold, median_seconds, min_duration, merge_gap) -> dict:
    """The post-processing options given (None: keep the model card's value)."""
    return {
        "threshold": threshold,
        "off_threshold": off_threshold,
        "median_seconds": median_seconds,
        "min_duration": min_duration,
        "merge_gap": merge_gap,
    }


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=AUDIO_INPUTS)
@model_option
@click.option("--output", "-o", type=OUTPUT_FILE, help="Write the events to this file instead of stdout.")
@click.option(
    "--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="text", show_default=True, help="Event output format."
)
@click.option(
    "--output-dir",
    type=OUTPUT_FOLDER,
    help="Write one event file per audio file here (audacity: x.txt, raven: x.selections.txt).",
)
@click.option(
    "--frames",
    type=OutputPath(path_type=Path),
    help="Write per-frame probabilities: F.csv (time,probability) or F.npy; a folder when several files.",
)
@click.option("--json-frames", is_flag=True, help="With --format json, include each file's per-frame probabilities.")
@click.option(
    "--summary",
    type=OUTPUT_FILE,
    help="Write per-file detection counts (first and last detection, minutes with detections) to this CSV, "
    "and per-site (folder), per-hour counts beside it (F.hourly.csv).",
)
@click.option(
    "--start-time-pattern",
    help="Regular expression with named groups year, month, day, hour [, minute, second] finding a recording's "
    "start time in its path (default: AudioMoth YYYYMMDD_HHMMSS and Song Meter PREFIX_YYYYMMDD_HHMMSS names).",
)
@click.option(
    "--plot",
    type=OUTPUT_FILE,
    help="Draw the file's spectrogram, probability, threshold and events to this PNG.",
)
@click.option(
    "--runtime",
    type=click.Choice(("auto", "litert", "keras", "onnx")),
    default="auto",
    show_default=True,
    help="Network runtime: LiteRT (fast start) when the model has it, or Keras; onnx: the run's model.onnx (soundnet export) with ONNX Runtime.",
)
@click.option(
    "--raw-format",
    type=click.Choice(("s16le", "s32le", "f32le", "f64le")),
    help="Standard input (-) is headerless PCM of this sample format (give --rate; --channels if not mono).",
)
@click.option("--rate", type=click.IntRange(min=1), help="Sample rate of raw PCM on standard input (Hz).")
@click.option("--channels", type=click.IntRange(1, 64), default=1, show_default=True, help="Channels of raw PCM on stdin.")
@raw_confidence_option
@no_verify_option
@jobs_option
@scheduler_option
@click.option(
    "--resume",
    is_flag=True,
    help="Skip the files whose results an earlier run with the same model and options left in --output-dir.",
)
@fail_fast_option
@post_options
@library_errors
def detect(
    inputs,
    model,
    output,
    fmt,
    output_dir,
    frames,
    json_frames,
    summary,
    start_time_pattern,
    plot,
    runtime,
    raw_format,
    rate,
    channels,
    raw_confidence,
    no_verify,
    jobs,
    scheduler,
    resume,
    fail_fast,
    threshold,
    off_threshold,
    median_seconds,
    min_duration,
    merge_gap,
):
    """Find the target sound in audio FILES and folders (``-``: audio on stdin): events, and per-frame probabilities on request."""
    from soundnet.audio import RawPCM
    from soundnet.detection import detect as run_detect
    from soundnet.outputs import OutputPlan

    if (raw_format is None) != (rate is None):
        raise click.UsageError("raw PCM on standard input needs both --raw-format and --rate")
    raw = RawPCM(raw_format, rate, channels) if raw_format is not None else None
    plan = OutputPlan(
        fmt=fmt,
        output=output,
        output_dir=output_dir,
        frames=frames,
        json_frames=json_frames,
        plot=plot,
        summary=summary,
        start_time_pattern=start_time_pattern,
    )
    report = run_detect(
        inputs,
        model=model,
        runtime=runtime,
        post=_overrides(threshold, off_threshold, median_seconds, min_duration, merge_gap),
        outputs=plan,
        fail_fast=fail_fast,
        raw=raw,
        raw_confidence=raw_confidence,
        verify=not no_verify,
        jobs=jobs,
        scheduler=scheduler,
        resume=resume,
    )
    if report.text is not None:
        click.echo(report.text, nl=False)
    _fail_batch(report.failures, attempted=report.attempted)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=EXISTING)
@reference_option
@model_option
@click.option(
    "--estimated",
    type=EXISTING_FILE,
    help="Score this ready event table (DCASE TSV or Raven table, any detector's) instead of running a model.",
)
@click.option("--target", "-t", callback=_label, help="Label to score (default: the model's target).")
@click.option("--output", "-o", type=OUTPUT_FILE, help="Write every figure and per-file counts as JSON.")
@click.option(
    "--plot-dir",
    type=OUTPUT_FOLDER,
    help="Draw one picture per file here (spectrogram, probability, detected and reference events), "
    "and operating_curve.png, psd_roc.png (PSDS) and reliability.png (event confidence).",
)
@click.option(
    "--bootstrap",
    "resamples",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Resample the files this many times (with replacement) for 95% intervals of every figure.",
)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Seed of the bootstrap.")
@no_verify_option
@fail_fast_option
@post_options
@library_errors
def evaluate(
    inputs,
    annotations,
    label_column,
    model,
    estimated,
    target,
    output,
    plot_dir,
    resamples,
    seed,
    no_verify,
    fail_fast,
    threshold,
    off_threshold,
    median_seconds,
    min_duration,
    merge_gap,
):
    """Score detection on annotated audio: the DCASE metrics of sed_eval, PSDS (sed_scores_eval), calibration of confidence."""
    from soundnet.report import render_report

    if estimated is not None:
        if model is not None:
            raise click.UsageError("give either --model or --estimated, not both")
        from soundnet.evaluation import evaluate_table

        evaluation = evaluate_table(
            inputs,
            estimated,
            annotations=annotations,
            target=target,
            output=output,
            label_column=label_column,
            bootstrap=resamples,
            seed=seed,
        )
    else:
        from soundnet.evaluation import evaluate as run_evaluate

        evaluation = run_evaluate(
            inputs,
            annotations=annotations,
            model=model,
            target=target,
            post=_overrides(threshold, off_threshold, median_seconds, min_duration, merge_gap),
            output=output,
            plot_dir=plot_dir,
            fail_fast=fail_fast,
            label_column=label_column,
            bootstrap=resamples,
            seed=seed,
            verify=not no_verify,
        )
    click.echo(render_report(evaluation), nl=False)
    _fail_batch(evaluation.failures, attempted=len(evaluation.scores.files) + len(evaluation.failures))


def _fmt_rate(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@main.command()
@click.argument("run", type=EXISTING_FOLDER)
@click.argument("inputs", nargs=-1, type=EXISTING)
@reference_option
@click.option(
    "--max-false-alarms-per-hour",
    type=FiniteFloat(min=0),
    help="Choose the fewest misses among the settings with at most this many false alarms per hour (default: best F1).",
)
@click.option(
    "--reviewed",
    type=EXISTING_FILE,
    help="Reviewed table (soundnet review): also tune on the clips around its accepted and rejected detections.",
)
@click.option("--audio", type=EXISTING_FOLDER, help="Folder of the reviewed table's recordings (with --reviewed).")
@click.option(
    "--verify",
    is_flag=True,
    help="Also fit a verifier: a second stage that keeps the events whose first seconds sound like the target "
    "(needs annotated INPUTS; see docs/api.md).",
)
@library_errors
def tune(run, inputs, annotations, label_column, max_false_alarms_per_hour, reviewed, audio, verify):
    """Search RUN's post-processing (threshold, median, minimum duration, gap) on labelled audio; update its card.

    With no INPUTS and no --reviewed, a cross-validated run (train --folds) re-tunes on its own out-of-fold predictions.
    """
    from soundnet.run import OUT_OF_FOLD_FILE
    from soundnet.tuning import tune as run_tune

    if (reviewed is None) != (audio is None):
        raise click.UsageError("--reviewed and --audio go together (the table and the folder of its recordings)")
    if not inputs and reviewed is None and not (Path(run) / OUT_OF_FOLD_FILE).is_file():
        raise click.UsageError(
            "give annotated audio (INPUTS) or a reviewed table (--reviewed, --audio), or both "
            f"(only a cross-validated run, trained with --folds, tunes on its own predictions; {run} is not one)"
        )
    tuning = run_tune(
        run,
        inputs,
        annotations=annotations,
        max_false_alarms_per_hour=max_false_alarms_per_hour,
        reviewed=reviewed,
        audio=audio,
        label_column=label_column,
        verify=verify,
    )
    before, after = tuning.baseline.event_onset.f_measure, tuning.scores.event_onset.f_measure
    alarms, limit = tuning.scores.alarms, tuning.max_false_alarms_per_hour
    chosen = tuning.criterion if limit is None else f"fewest misses with at most {limit:g} false alarms per hour"
    click.echo(
        f"{run}: {tuning.post}; chosen for {chosen}: event F1 {_fmt(after)}, "
        f"{_fmt_rate(alarms.false_alarms_per_hour)} false alarms per hour, miss rate {_fmt(alarms.miss_rate)} "
        f"(threshold 0.5 without filtering: event F1 {_fmt(before)})"
    )
    verifier = tuning.card.verifier
    if verifier is not None:
        oof = verifier.fitted["out_of_fold"]
        click.echo(
            f"  with a verifier (score at least {verifier.threshold:.3f} on each event's first {verifier.span_seconds:g} s), "
            f"fitted on {verifier.fitted['events']} events ({verifier.fitted['true_events']} true); out of fold it kept "
            f"{oof['found']} of {oof['references']} reference events with {oof['false_alarms_per_hour']:.2f} false alarms per hour"
        )


@main.command()
@click.option(
    "--events",
    "events_dir",
    required=True,
    type=EXISTING_FOLDER,
    help="Folder of isolated clips of the target sound (its name is the label).",
)
@click.option(
    "--backgrounds",
    required=True,
    type=EXISTING_FOLDER,
    help="Folder of background recordings.",
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=OUTPUT_FOLDER,
    help="Folder for the mixtures and annotations.tsv.",
)
@click.option("-n", "count", type=click.IntRange(min=1), default=100, show_default=True, help="Number of mixtures.")
@click.option(
    "--duration",
    type=FiniteFloat(0, 3600, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds per mixture (at most 3600).",
)
@click.option(
    "--ebr", default="-6,0,6", show_default=True, help="Event-to-background ratios in dB to draw from, comma separated."
)
@click.option(
    "--presence",
    type=PROBABILITY,
    default=0.5,
    show_default=True,
    help="Probability that a mixture holds a target event.",
)
@click.option(
    "--distractors",
    multiple=True,
    type=EXISTING_FOLDER,
    help="Folder of other sounds to add (annotated with the folder's name); repeatable.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: same seed, same files.")
@click.option("--sample-rate", type=click.IntRange(min=1), default=16000, show_default=True, help="Sample rate of the mixtures.")
@click.option(
    "--groups",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Folds of clips and backgrounds; each mixture uses one fold's (the table's group column), so validation can hold out sources.",
)
@library_errors
def synth(events_dir, backgrounds, out, count, duration, ebr, presence, distractors, seed, sample_rate, groups):
    """Mix isolated target clips into backgrounds: an annotated training set (DCASE 2017 task 2 style)."""
    from soundnet.synth import synthesize

    try:
        ebrs = [float(v) for v in ebr.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, got {ebr!r}", param_hint="--ebr") from None
    if not all(-60 <= v <= 60 for v in ebrs):  # also refuses NaN
        raise click.BadParameter(f"expected dB values in [-60, 60], got {ebr!r}", param_hint="--ebr")
    events = synthesize(
        events_dir,
        backgrounds,
        out,
        n=count,
        duration=duration,
        ebrs=ebrs,
        presence=presence,
        distractor_dirs=distractors,
        sr=sample_rate,
        seed=seed,
        groups=groups,
    )
    click.echo(f"{out}: {count} mixture(s), {len(events)} event(s), annotations in {out / 'annotations.tsv'}")


EXPORT_FORMATS = ("onnx", "tflite", "tflite-int8", "tflite-int16x8")  # soundnet.export.FORMATS (a test holds them equal)


@main.command("export")
@click.argument("run", type=EXISTING_FOLDER)
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(EXPORT_FORMATS),
    help="onnx (float32, ONNX Runtime), tflite (LiteRT float32), tflite-int8 (full-integer int8, calibrated on training windows) "
    "or tflite-int16x8 (integer-only, int16 activations: closer to float).",
)
@click.option(
    "--out", "-o", required=True, type=OUTPUT_FILE, help="File to write (RUN/model.onnx: what detect --runtime onnx runs)."
)
@click.option(
    "--dataset",
    type=EXISTING_FOLDER,
    help="The run's dataset, if it moved (default: the one its card names): int8 calibration and the accuracy check read it.",
)
@click.option(
    "--calibration-windows",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Training windows the int8 quantisation is calibrated on.",
)
@click.option("--report", type=OUTPUT_FILE, help="Also write the report (size, validation figures) as JSON.")
@library_errors
def export_command(run, fmt, out, dataset, calibration_windows, report):
    """Write RUN's network for a small device (ONNX, LiteRT, int8 LiteRT) and score it against the Keras model."""
    from soundnet.export import export_model
    from soundnet.storage import write_json

    result = export_model(run, format=fmt, out=out, dataset=dataset, calibration_windows=calibration_windows)
    if report is not None:
        write_json(report, result.to_json())
    calibrated = f"; calibrated on {result.calibration_windows} training windows" if result.calibration_windows else ""
    click.echo(f"{out}: {fmt}, {result.bytes:,} bytes (model.keras {result.keras_bytes:,} bytes){calibrated}")
    accuracy = result.accuracy
    if accuracy is None:
        click.echo(result.note)
        return
    ref, got = accuracy.reference, accuracy.exported
    change = accuracy.f1_change
    click.echo(
        f"validation ({accuracy.files} files, {accuracy.frames:,} frames): event F1 {_fmt(got.event_f1)} "
        f"(Keras float {_fmt(ref.event_f1)}, change {'n/a' if change is None else f'{change:+.3f}'}), "
        f"frame AP {_fmt(got.frame_ap)} (Keras {_fmt(ref.frame_ap)}), "
        f"largest probability difference {accuracy.max_abs_difference:.2g}"
    )


@main.command()
@model_option
@click.option(
    "--runtime",
    type=click.Choice(("auto", "litert", "keras")),
    default="auto",
    show_default=True,
    help="Network runtime: LiteRT (fast, light) when the model has it, or Keras.",
)
@click.option("--device", "-d", help="Sound device to listen to: its index or (part of) its name (default: the default input).")
@click.option("--list-devices", is_flag=True, help="List the input devices and exit.")
@click.option(
    "--input",
    "-i",
    "input_",
    type=click.Choice(["-"]),
    help="Read the stream from standard input (-): a WAV, or raw PCM with --format and --rate.",
)
@click.option(
    "--format",
    "--raw-format",
    "raw_format",
    type=click.Choice(("s16le", "s32le", "f32le", "f64le")),
    help="Standard input is headerless PCM of this sample format (give --rate; --channels if not mono).",
)
@click.option("--rate", type=click.IntRange(min=1), help="Sample rate of raw PCM on standard input (Hz).")
@click.option("--channels", type=click.IntRange(1, 64), default=1, show_default=True, help="Channels of raw PCM on stdin.")
@click.option(
    "--hop", type=FiniteFloat(0, 10, min_open=True), default=0.1, show_default=True, help="Seconds between scored windows."
)
@click.option(
    "--on", "--threshold", "on", type=PROBABILITY, help="An event starts at this probability (default: the card's threshold)."
)
@click.option(
    "--off",
    type=PROBABILITY,
    help="An event lasts while the probability stays at or above this (hysteresis; default: the card's off_threshold, "
    "else --on; with --on alone: --on).",
)
@click.option("--min-duration", type=SECONDS, help="Announce an event once it has lasted this long (default: the card's).")
@click.option("--hold", type=SECONDS, help="An event ends after this long below --off (default: the card's merge gap).")
@click.option("--refractory", type=SECONDS, default=0.0, show_default=True, help="No new event this long after one ends.")
@click.option("--log", "log_file", type=OUTPUT_FILE, help="Also append the events to this file (JSON lines, rotated).")
@click.option(
    "--log-max-bytes", type=click.IntRange(min=1024), default=10 * 2**20, show_default=True, help="Rotate the log at this size."
)
@click.option("--log-backups", type=click.IntRange(min=0), default=5, show_default=True, help="Rotated logs kept (FILE.1 ...).")
@click.option(
    "--exec", "exec_", multiple=True, help="Run this command per event (fields in SOUNDNET_* variables; no shell); repeatable."
)
@click.option("--webhook", multiple=True, help="POST each event's JSON to this URL; repeatable.")
@click.option("--mqtt", help="Publish each event's JSON to this MQTT broker, HOST[:PORT] (port 1883 by default).")
@click.option("--mqtt-topic", help="MQTT topic (default: soundnet/LABEL).")
@click.option(
    "--hook-timeout",
    type=FiniteFloat(0, 600, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds a hook attempt may take.",
)
@click.option(
    "--hook-retries", type=click.IntRange(0, 100), default=3, show_default=True, help="Retries of a failed hook attempt."
)
@raw_confidence_option
@no_verify_option
@library_errors
def listen(
    model,
    runtime,
    device,
    list_devices,
    input_,
    raw_format,
    rate,
    channels,
    hop,
    on,
    off,
    min_duration,
    hold,
    refractory,
    log_file,
    log_max_bytes,
    log_backups,
    exec_,
    webhook,
    mqtt,
    mqtt_topic,
    hook_timeout,
    hook_retries,
    raw_confidence,
    no_verify,
):
    """Detect the target sound on a live stream (a sound device, or stdin) until stopped: a JSON line per event start and end."""
    if list_devices:
        from soundnet.streams import list_devices as find_devices

        for found in find_devices():
            mark = " (default)" if found.default else ""
            click.echo(f"{found.index}\t{found.name}\t{found.channels} channel(s)\t{found.default_rate:g} Hz{mark}")
        return
    from soundnet.audio import RawPCM
    from soundnet.hooks import EventLog, ExecHook, MqttHook, WebhookHook
    from soundnet.listening import listen as run_listen
    from soundnet.listening import print_event, summary
    from soundnet.run import read_card

    if (raw_format is None) != (rate is None):
        raise click.UsageError("raw PCM on standard input needs both --format and --rate")
    if mqtt_topic is not None and mqtt is None:
        raise click.UsageError("--mqtt-topic needs --mqtt")
    raw = RawPCM(raw_format, rate, channels) if raw_format is not None else None
    if raw is not None and input_ is None:
        raise click.UsageError("--format, --rate and --channels describe a stream on standard input: give --input -")
    if device is not None and input_ is not None:
        raise click.UsageError("give --device or --input -, not both")
    options = {"timeout": hook_timeout, "retries": hook_retries}
    sinks = [ExecHook(command, **options) for command in exec_] + [WebhookHook(url, **options) for url in webhook]
    if mqtt is not None:
        from soundnet.detection import BUNDLED_MODEL

        target = read_card(model or BUNDLED_MODEL).target
        sinks.append(MqttHook(mqtt, mqtt_topic or f"soundnet/{target}", **options))
    if log_file is not None:
        sinks.insert(0, EventLog(log_file, max_bytes=log_max_bytes, backups=log_backups))
    post = {"on": on, "off": off, "min_duration": min_duration, "hold": hold, "refractory": refractory}
    if off is not None and on is None:
        from soundnet.detection import BUNDLED_MODEL

        if off > read_card(model or BUNDLED_MODEL).postprocessing.threshold:
            raise click.UsageError("--off must be at most --on (the card's threshold)")
    report = run_listen(
        model=model,
        runtime=runtime,
        device=device,
        stdin=sys.stdin.buffer if input_ else None,
        raw=raw,
        post=post,
        hop_seconds=hop,
        sinks=sinks,
        on_event=print_event,
        verify=not no_verify,
        raw_confidence=raw_confidence,
    )
    log.info("%s", summary(report))


@main.command()
@click.argument("detections", type=EXISTING_FILE)
@click.option(
    "--audio", required=True, type=EXISTING_FOLDER, help="Folder of the recordings (the table's file names are relative to it)."
)
@click.option(
    "--out",
    "-o",
    type=OUTPUT_FILE,
    default="reviewed.tsv",
    show_default=True,
    help="Reviewed table: read back if it exists (a restart resumes), rewritten after each decision.",
)
@click.option("--sample", type=click.IntRange(min=1), help="Review only this many detections, chosen by --strategy.")
@click.option(
    "--strategy",
    type=click.Choice(("top", "stratified", "uncertain")),  # soundnet.review.STRATEGIES
    default="top",
    show_default=True,
    help="With --sample: the highest confidences, evenly over confidence bins, or the closest to --threshold.",
)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Seeds --sample's draw.")
@click.option(
    "--threshold", type=PROBABILITY, default=0.5, show_default=True, help="The detector's threshold (--strategy uncertain)."
)
@click.option(
    "--context", type=FiniteFloat(0, 30), default=1.0, show_default=True, help="Seconds of audio drawn either side of an event."
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port on 127.0.0.1 (0: a free one).")
@click.option("--no-browser", is_flag=True, help="Do not open the page in a browser (print its address only).")
@library_errors
def review(detections, audio, out, sample, strategy, seed, threshold, context, port, no_browser):
    """Accept, reject or skip DETECTIONS (any table detect writes) one by one on a local page; decisions go to --out."""
    from soundnet.review_server import ReviewServer, open_browser, review_app

    given = click.get_current_context().get_parameter_source
    if sample is None and given("strategy") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--strategy chooses what --sample takes: give --sample N too")
    app = review_app(
        detections, audio, out=out, sample=sample, strategy=strategy, seed=seed, threshold=threshold, context=context
    )
    server = ReviewServer(app, port=port)
    progress = app.session.progress()
    click.echo(
        f"reviewing {progress['total']} detection(s) ({progress['reviewed']} already decided) at {server.url} "
        f"-> {out}; Ctrl+C to stop",
        err=True,
    )
    if not no_browser and not open_browser(server.url):
        click.echo("soundnet: no browser found: open the address above", err=True)
    from soundnet.listening import Stopped, StopSignals

    try:
        with StopSignals():  # SIGINT and SIGTERM, even where the shell started it with SIGINT ignored
            server.serve_forever()
    except Stopped:  # raised by StopSignals' handlers in place of KeyboardInterrupt
        progress = app.session.progress()
        click.echo(f"{out}: {progress['reviewed']} of {progress['total']} detection(s) reviewed", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
