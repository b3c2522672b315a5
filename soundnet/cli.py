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


@main.command()
@click.argument("audio", nargs=-1, required=True, type=EXISTING)
@click.option(
    "--annotations",
    "-a",
    type=EXISTING_FILE,
    help="DCASE table (filename onset offset label, TSV or CSV). Without it, Audacity labels beside the audio (x.wav + x.txt).",
)
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
def extract(audio, annotations, out, target, jobs, scheduler, config_path, negatives, group_pattern, copies, fail_fast):
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
@click.option("--resume", is_flag=True, help="Continue an interrupted training of the same RUN from its last completed epoch.")
@click.option("--tensorboard", type=OUTPUT_FOLDER, help="Write TensorBoard logs to this folder.")
@library_errors
def train(dataset, out, config_path, epochs, seed, batch_size, resume, tensorboard):
    """Train the CNN-LSTM-Dense detector on DATASET (written by soundnet extract)."""
    from soundnet.backend import quiet_import_keras
    from soundnet.config import load_config

    quiet_import_keras()
    from soundnet.training import train as run_train

    config = load_config(config_path, epochs=epochs, seed=seed, batch_size=batch_size)
    result = run_train(dataset, out=out, config=config, resume=resume, tensorboard=tensorboard)
    scores = result.card.validation.get("event_onset", {})
    click.echo(
        f"{result.run}: trained {result.epochs} epoch(s); validation event F1 "
        f"{_fmt(scores.get('f_measure'))}, error rate {_fmt(scores.get('error_rate'))}; "
        f"post-processing {result.card.postprocessing}"
    )


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


model_option = click.option("--model", "-m", type=EXISTING_FOLDER, help="Run folder (default: the bundled detector).")
reference_option = click.option(
    "--annotations",
    "-a",
    type=EXISTING_FILE,
    help="Reference events: a DCASE table (default: Audacity labels beside the audio).",
)


def post_options(command):
    """Options that override the model card's post-processing."""
    options = [
        click.option("--threshold", type=PROBABILITY, help="Probability threshold (default: the model card's tuned value)."),
        click.option("--median", "median_seconds", type=SECONDS, help="Median filter length in seconds."),
        click.option("--min-duration", type=SECONDS, help="Drop events shorter than this (seconds)."),
        click.option("--merge-gap", type=SECONDS, help="Merge events closer than this (seconds)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _overrides(threshold, median_seconds, min_duration, merge_gap) -> dict:
    """The post-processing options given (None: keep the model card's value)."""
    return {"threshold": threshold, "median_seconds": median_seconds, "min_duration": min_duration, "merge_gap": merge_gap}


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
    "--plot",
    type=OUTPUT_FILE,
    help="Draw the file's spectrogram, probability, threshold and events to this PNG.",
)
@click.option(
    "--runtime",
    type=click.Choice(("auto", "litert", "keras")),
    default="auto",
    show_default=True,
    help="Network runtime: LiteRT (fast start) when the model has it, or Keras.",
)
@click.option(
    "--raw-format",
    type=click.Choice(("s16le", "s32le", "f32le", "f64le")),
    help="Standard input (-) is headerless PCM of this sample format (give --rate; --channels if not mono).",
)
@click.option("--rate", type=click.IntRange(min=1), help="Sample rate of raw PCM on standard input (Hz).")
@click.option("--channels", type=click.IntRange(1, 64), default=1, show_default=True, help="Channels of raw PCM on stdin.")
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
    plot,
    runtime,
    raw_format,
    rate,
    channels,
    jobs,
    scheduler,
    resume,
    fail_fast,
    threshold,
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
    plan = OutputPlan(fmt=fmt, output=output, output_dir=output_dir, frames=frames, json_frames=json_frames, plot=plot)
    report = run_detect(
        inputs,
        model=model,
        runtime=runtime,
        post=_overrides(threshold, median_seconds, min_duration, merge_gap),
        outputs=plan,
        fail_fast=fail_fast,
        raw=raw,
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
    help="Score this ready event table (DCASE TSV, any detector's) instead of running a model.",
)
@click.option("--target", "-t", callback=_label, help="Label to score (default: the model's target).")
@click.option("--output", "-o", type=OUTPUT_FILE, help="Write every figure and per-file counts as JSON.")
@click.option(
    "--plot-dir",
    type=OUTPUT_FOLDER,
    help="Draw one picture per file here (spectrogram, probability, detected and reference events).",
)
@fail_fast_option
@post_options
@library_errors
def evaluate(
    inputs, annotations, model, estimated, target, output, plot_dir, fail_fast, threshold, median_seconds, min_duration, merge_gap
):
    """Score detection on annotated audio with the DCASE metrics of sed_eval."""
    from soundnet.report import render_report

    if estimated is not None:
        if model is not None:
            raise click.UsageError("give either --model or --estimated, not both")
        from soundnet.evaluation import evaluate_table

        evaluation = evaluate_table(inputs, estimated, annotations=annotations, target=target, output=output)
    else:
        from soundnet.evaluation import evaluate as run_evaluate

        evaluation = run_evaluate(
            inputs,
            annotations=annotations,
            model=model,
            target=target,
            post=_overrides(threshold, median_seconds, min_duration, merge_gap),
            output=output,
            plot_dir=plot_dir,
            fail_fast=fail_fast,
        )
    click.echo(render_report(evaluation), nl=False)
    _fail_batch(evaluation.failures, attempted=len(evaluation.scores.files) + len(evaluation.failures))


def _fmt_rate(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@main.command()
@click.argument("run", type=EXISTING_FOLDER)
@click.argument("inputs", nargs=-1, required=True, type=EXISTING)
@reference_option
@click.option(
    "--max-false-alarms-per-hour",
    type=FiniteFloat(min=0),
    help="Choose the fewest misses among the settings with at most this many false alarms per hour (default: best F1).",
)
@library_errors
def tune(run, inputs, annotations, max_false_alarms_per_hour):
    """Search RUN's post-processing (threshold, median, minimum duration, gap) on labelled audio; update its card."""
    from soundnet.tuning import tune as run_tune

    tuning = run_tune(run, inputs, annotations=annotations, max_false_alarms_per_hour=max_false_alarms_per_hour)
    before, after = tuning.baseline.event_onset.f_measure, tuning.scores.event_onset.f_measure
    alarms, limit = tuning.scores.alarms, tuning.max_false_alarms_per_hour
    chosen = "best event F1" if limit is None else f"fewest misses with at most {limit:g} false alarms per hour"
    click.echo(
        f"{run}: {tuning.post}; chosen for {chosen}: event F1 {_fmt(after)}, "
        f"{_fmt_rate(alarms.false_alarms_per_hour)} false alarms per hour, miss rate {_fmt(alarms.miss_rate)} "
        f"(threshold 0.5 without filtering: event F1 {_fmt(before)})"
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


if __name__ == "__main__":  # pragma: no cover
    main()
