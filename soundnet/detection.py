"""Detection: per-frame probabilities and events for audio files, in bounded memory.

Audio streams through blocks -> features -> normalised overlapping windows -> the
network -> one probability per frame, so a 10-hour recording never holds more than
a chunk of features.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from queue import Full, Queue
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from soundnet.audio import STDIN, STDIN_NAME, RawPCM, as_paths, audio_info, find_audio, iter_audio, load_audio, spooled_stdin
from soundnet.batch import BatchResult, Failure, run_batch
from soundnet.config import PostConfig, to_dict
from soundnet.errors import SoundnetError, UsageError, printable
from soundnet.events import Event
from soundnet.features import iter_features, one_blas_thread, silent_frames
from soundnet.parallel import usable_cores
from soundnet.pieces import EXACT_LENGTH_FORMATS, Join, Piece, PieceSums, audio_span, piece_sums, plan
from soundnet.postprocess import to_events
from soundnet.run import (
    CARD_FILE,
    MODEL_FILE,
    TFLITE_FILE,
    ModelCard,
    RunFiles,
    file_digest,
    load_keras_model,
    read_card,
    verify_network_files,
)
from soundnet.verification import SPAN_SECONDS, span_descriptors, verified
from soundnet.windows import stream_probabilities

if TYPE_CHECKING:
    from soundnet.outputs import OutputPlan

log = logging.getLogger(__name__)
T = TypeVar("T")

BUNDLED_MODEL = Path(__file__).parent / "models" / "default"


@dataclass(frozen=True)
class Detection:
    """What detect found in one file.

    Attributes
    ----------
    path : Path
        The audio file.
    duration : float
        Its length in seconds.
    frame_seconds : float
        The frame hop: frame ``i`` is centred at ``i * frame_seconds``.
    probabilities : np.ndarray [shape=(frames,), dtype=float32]
        The probability of the target sound in each frame, in [0, 1].
    events : list of Event
        The events after post-processing, named ``name``.
    name : str
        The file's name in outputs (relative to the folder it was found in).
    """

    path: Path
    duration: float
    frame_seconds: float
    probabilities: np.ndarray  # (frames,) float32 in [0, 1]
    events: list[Event]
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", Path(self.path).name)

    @property
    def times(self) -> np.ndarray:
        return np.arange(len(self.probabilities)) * self.frame_seconds


def prefetched(items: Iterable[T], *, depth: int = 2) -> Iterator[T]:
    """``items``, produced by a background thread up to ``depth`` ahead.

    Detect reads audio and computes features for the next chunk while the network
    scores this one (NumPy, librosa's FFTs and LiteRT release the GIL), so on two
    cores the two stages overlap. An error in the producer is raised here; closing
    this generator stops the producer.
    """
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as error:  # handed to the consumer, raised there
            put((done, error))

    thread = threading.Thread(target=produce, name="soundnet-features", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        if thread is not threading.current_thread():  # a garbage collection may close us from there
            thread.join()


def frame_probabilities(chunks: Iterable[np.ndarray], card: ModelCard, predict) -> np.ndarray:
    """Per-frame probabilities of a file's unnormalised feature chunks, as detect and
    validation see them: normalised, overlapping windows through ``predict``, and 0 on
    frames of digital silence (no sound there, whatever the network makes of it)."""
    silent: list[np.ndarray] = []

    def normalised() -> Iterator[np.ndarray]:
        for chunk in chunks:
            silent.append(silent_frames(chunk, config=card.features))
            yield card.normalise(chunk)

    probs = stream_probabilities(normalised(), predict, window=card.model.window, hop=card.detection_hop)
    if silent:
        probs[np.concatenate(silent)] = 0.0
    return probs


class Detector:
    """A trained run, ready to score audio.

    Parameters
    ----------
    run : Path or None
        A run folder written by ``soundnet train``; None for the bundled default detector.
    runtime : {"auto", "litert", "keras", "onnx"}
        "auto" runs the LiteRT conversion (``model.tflite``) when the run has one and
        ai-edge-litert is installed, else the Keras model; "onnx" runs ``model.onnx``
        (written into the run by ``soundnet export RUN --format onnx --out RUN/model.onnx``)
        with ONNX Runtime.
    threads : int or None
        LiteRT's threads (None: every usable core). ``listen`` scores one window at a
        time, where one thread takes a third of the CPU time of two.
    raw_confidence : bool
        Events carry the network's confidence (their highest frame probability) instead
        of the card's calibrated one (:mod:`soundnet.calibration`). A card without a
        calibration always gives raw confidences (a note says so).
    verify : bool
        Keep only the events the card's verifier keeps (:mod:`soundnet.verification`),
        if it has one; False reports the first stage's events, all of them.
    """

    RUNTIMES = ("auto", "litert", "keras", "onnx")

    def __init__(
        self,
        run: Path | None = None,
        *,
        runtime: str = "auto",
        threads: int | None = None,
        raw_confidence: bool = False,
        verify: bool = True,
    ):
        if runtime not in self.RUNTIMES:
            raise SoundnetError(f"runtime must be one of {', '.join(self.RUNTIMES)}. Received: runtime={runtime!r}")
        self.runtime = runtime
        self.threads = threads  # LiteRT's threads; None: the usable cores
        self.run = Path(run) if run is not None else BUNDLED_MODEL
        if run is None and not (self.run / CARD_FILE).is_file():
            raise SoundnetError("no bundled default model in this installation: pass --model RUN")
        self.card: ModelCard = read_card(self.run)
        self.raw_confidence = raw_confidence
        self.verify = verify
        self._predict = None

    @property
    def calibrated(self) -> bool:
        """Whether events carry calibrated confidences."""
        return self.card.event_calibration(raw_confidence=self.raw_confidence, verify=self.verify) is not None

    def confidences(self, events: list[Event]) -> list[Event]:
        """Events (raw confidence) as this detector reports them: calibrated unless raw."""
        return self.card.calibration.events(events) if self.calibrated else events

    def check(self) -> str:
        """Check the network files against the card and choose the runtime without loading
        the network: ``"onnx"``, ``"litert"`` or ``"keras"`` (SoundnetError when the
        runtime asked for cannot run)."""
        from soundnet import litert

        verify_network_files(self.run, self.card)
        if self.runtime == "onnx":
            return "onnx"
        tflite = self.run / TFLITE_FILE
        if self.runtime == "litert" or (self.runtime == "auto" and tflite.is_file() and litert.available()):
            if not tflite.is_file():
                raise SoundnetError(f"{self.run}: no {TFLITE_FILE} for the LiteRT runtime (use --runtime keras)")
            if not litert.available():
                raise SoundnetError("the LiteRT runtime needs the ai-edge-litert package (pip install ai-edge-litert)")
            return "litert"
        return "keras"

    def load(self) -> None:
        """Load the network now (otherwise it loads on first use)."""
        if self._predict is not None:
            return
        from soundnet import litert

        chosen = self.check()
        if chosen == "onnx":
            self._predict = self._onnx_predictor()
            return
        if chosen == "litert":
            tflite = self.run / TFLITE_FILE
            try:
                self._predict = litert.LiteRTPredictor(
                    tflite, n_mfcc=self.card.features.n_mfcc, window=self.card.model.window, threads=self.threads
                )
            except (ValueError, RuntimeError) as error:
                raise SoundnetError(f"{tflite}: cannot load the LiteRT model ({error})") from None
            log.debug("%s: network runs on LiteRT (%s)", self.run, tflite.name)
            return
        from soundnet.backend import quiet_import_keras

        quiet_import_keras()
        from soundnet.model import predict_fn

        model = load_keras_model(self.run, self.card)
        self._predict = predict_fn(model, n_mfcc=self.card.features.n_mfcc)
        log.debug("%s: network runs on Keras (%s)", self.run, MODEL_FILE)

    def _onnx_predictor(self):
        from soundnet import onnxrt

        path = self.run / onnxrt.ONNX_FILE
        if not path.is_file():
            raise SoundnetError(
                f"{self.run}: no {onnxrt.ONNX_FILE} for the ONNX runtime (soundnet export {self.run} --format onnx --out {path})"
            )
        keras_file = self.run / MODEL_FILE
        source = self.card.checksums.get(MODEL_FILE) or (file_digest(keras_file) if keras_file.is_file() else None)
        predictor = onnxrt.ONNXPredictor(
            path, n_mfcc=self.card.features.n_mfcc, window=self.card.model.window, source_sha256=source
        )
        log.debug("%s: network runs on ONNX Runtime (%s)", self.run, path.name)
        return predictor

    @property
    def predict(self):
        """Windows ``(b, window, features)`` (normalised) -> probabilities ``(b, window)``."""
        self.load()
        return self._predict

    def probabilities_of_features(self, chunks: Iterable[np.ndarray]) -> np.ndarray:
        """Per-frame probabilities of a file's (unnormalised) feature chunks."""
        return frame_probabilities(chunks, self.card, self.predict)

    def probabilities(self, path: Path) -> tuple[np.ndarray, float]:
        """Per-frame probabilities of an audio file, and its duration in seconds."""
        features = self.card.features
        n_samples = 0

        def counted(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            nonlocal n_samples
            for block in blocks:
                n_samples += len(block)
                yield block

        blocks = counted(iter_audio(path, sample_rate=features.sample_rate))
        with one_blas_thread():
            probs = self.probabilities_of_features(prefetched(iter_features(blocks, config=features)))
        return probs, n_samples / features.sample_rate

    def piece_sums(self, path: Path, piece: Piece) -> PieceSums:
        """The weighted window sums of one piece of a long file (:mod:`soundnet.pieces`)."""
        features, hop, window = self.card.features, self.card.detection_hop, self.card.model.window
        start, stop, offset = audio_span(piece, config=features, window=window, hop=hop)
        blocks = iter_audio(path, sample_rate=features.sample_rate, start=start, stop=stop)
        with one_blas_thread():
            try:
                return piece_sums(
                    prefetched(iter_features(blocks, config=features)),
                    piece,
                    offset=offset,
                    predict=self.predict,
                    normalise=self.card.normalise,
                    silent_of=functools.partial(silent_frames, config=features),
                    window=window,
                    hop=hop,
                )
            except ValueError as error:  # the file is shorter than its header said
                raise SoundnetError(f"{path}: {error}") from None

    def detect_file(self, path: Path, *, post: PostConfig | None = None, name: str | None = None) -> Detection:
        """Probabilities and events of one file (``post`` defaults to the card's tuned values)."""
        started = time.perf_counter()
        probs, duration = self.probabilities(path)
        detection = self.detection(path, probs, duration, post=post, name=name)
        log.debug("%s: %.1f s of audio scored in %.2f s", path, duration, time.perf_counter() - started)
        return detection

    def detection(
        self, path: Path, probs: np.ndarray, duration: float, *, post: PostConfig | None = None, name: str | None = None
    ) -> Detection:
        """The Detection of a file's probabilities: its events after post-processing."""
        post = post or self.card.postprocessing
        events = to_events(
            probs,
            post=post,
            frame_seconds=self.card.features.frame_seconds,
            duration=duration,
            filename=name or Path(path).name,
            label=self.card.target,
        )
        events = self.confidences(self.verified(path, probs, events))
        log.debug("%s: %d event(s) with %s", path, len(events), post)
        return Detection(Path(path), duration, self.card.features.frame_seconds, probs, events, name=name or Path(path).name)

    def verified(self, path: Path, probs: np.ndarray, events: list[Event]) -> list[Event]:
        """The events the card's verifier keeps (all of them without one; see
        :mod:`soundnet.verification`): each event's first seconds read from ``path``."""
        verifier = self.card.verifier if self.verify else None
        if verifier is None or not events:
            return events
        return verified(events, self.descriptors(path, probs, events, span_seconds=verifier.span_seconds), verifier)

    def descriptors(
        self, path: Path, probs: np.ndarray, events: list[Event], *, span_seconds: float = SPAN_SECONDS
    ) -> np.ndarray:
        """The verifier's descriptors of ``events`` of the file ``path`` (probabilities
        ``probs``), over each event's first ``span_seconds``."""
        rate = self.card.features.sample_rate
        native = audio_info(path).samplerate

        def audio_of(start: int, stop: int) -> np.ndarray:
            at = native / rate
            return load_audio(path, sample_rate=rate, start=round(start * at), stop=max(round(stop * at), round(start * at) + 1))

        return span_descriptors(
            events, audio_of, probs, sample_rate=rate, frame_seconds=self.card.features.frame_seconds, span_seconds=span_seconds
        )

    def postprocessing(self, post: PostConfig | Mapping[str, float | None] | None = None) -> PostConfig:
        """The post-processing to use: ``post`` if a PostConfig, else the card's with the
        values of ``post`` (a mapping) replaced (None values keep the card's). A new
        ``threshold`` without an ``off_threshold`` drops the card's hysteresis, as
        listen's ``--off`` follows a new ``--on``."""
        if isinstance(post, PostConfig):
            return post
        values = {k: v for k, v in (post or {}).items() if v is not None}
        if "threshold" in values and "off_threshold" not in values:
            values["off_threshold"] = None
        return replace(self.card.postprocessing, **values)


@dataclass(frozen=True)
class DetectReport:
    """What :func:`detect` did: a detection per file that worked, and the failures."""

    detections: list[Detection]
    failures: list[Failure]
    text: str | None = None  # the combined output, when the plan sends it to the caller
    skipped: list[Path] = field(default_factory=list)  # done by an earlier run (resume)

    @property
    def attempted(self) -> int:
        return len(self.detections) + len(self.failures)


@dataclass(frozen=True)
class DetectorSpec:
    """How a worker process builds the detector: the run (a folder on a disk it sees, or
    its files as bytes), the runtime and LiteRT's threads. Built once per worker thread."""

    model: Path | RunFiles
    runtime: str = "auto"
    threads: int | None = None
    raw_confidence: bool = False
    verify: bool = True

    def open(self) -> Detector:
        model = self.model.digest if isinstance(self.model, RunFiles) else str(self.model)
        key = (model, self.runtime, self.threads, self.raw_confidence, self.verify)
        detectors = _WORKER_DETECTORS.__dict__.setdefault("by_spec", {})  # per thread: a LiteRT interpreter is not shared
        if key not in detectors:
            run = self.model.folder() if isinstance(self.model, RunFiles) else self.model
            detector = Detector(
                run, runtime=self.runtime, threads=self.threads, raw_confidence=self.raw_confidence, verify=self.verify
            )
            detector.load()
            detectors[key] = detector
        return detectors[key]


_WORKER_DETECTORS = threading.local()


@dataclass(frozen=True)
class FileWork:
    """A unit of detect's work: a whole file, or one piece of a long one."""

    path: Path  # as the worker reads it
    name: str  # in the outputs
    piece: Piece | None = None  # None: the whole file


def detect_task(item: FileWork, *, detector: Detector | DetectorSpec, post: PostConfig) -> Detection | PieceSums:
    """One file's detection, or one piece's window sums: the unit of work of :func:`detect`
    (here, in a worker process or on a Dask worker)."""
    path, name = item.path, item.name
    if isinstance(detector, DetectorSpec):
        detector = detector.open()
    try:
        if item.piece is not None:
            return detector.piece_sums(path, item.piece)
        return detector.detect_file(path, post=post, name=name)
    except SoundnetError as error:
        if Path(path).name != STDIN_NAME:
            raise
        raise SoundnetError(str(error).replace(str(path), STDIN_NAME)) from None  # not the copy's temporary path


def detect(
    inputs: Path | str | Iterable[Path | str],
    *,
    model: Path | None = None,
    runtime: str = "auto",
    post: PostConfig | Mapping[str, float | None] | None = None,
    outputs: OutputPlan | None = None,
    fail_fast: bool = False,
    raw: RawPCM | None = None,
    raw_confidence: bool = False,
    jobs: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    verify: bool = True,
) -> DetectReport:
    """Detect the target sound in audio files and folders.

    Parameters
    ----------
    inputs : path or iterable of paths
        Audio files and folders (searched recursively); ``"-"`` reads standard input
        (a WAV, or any file soundfile reads), named ``<stdin>`` in the outputs.
    model : Path or None
        A run folder; None for the bundled default detector.
    runtime : {"auto", "litert", "keras", "onnx"}
        See :class:`Detector`.
    post : PostConfig, mapping or None
        The post-processing: a whole PostConfig, or some of its values
        (``{"threshold": 0.6}``; None values ignored) replacing the model card's tuned
        ones; None keeps the card's.
    outputs : OutputPlan or None
        Files to write (event tables, frames, a plot); checked against the files before
        the network loads.
    fail_fast : bool
        Stop at the first file that fails (else it is logged, recorded, and the batch goes on).
    raw : RawPCM or None
        Standard input (``"-"``) is headerless PCM of this format, not a file with a header.
    raw_confidence : bool
        Report the network's confidence, not the card's calibrated one (see :class:`Detector`).
    verify : bool
        Apply the card's verifier, if it has one (see :class:`Detector`).
    jobs : int >= 1 or None
        Worker processes (None: the usable cores), detecting whole files and the pieces
        of long ones (:mod:`soundnet.pieces`). The results are the same, byte for byte,
        whatever the number.
    scheduler : str or None
        A Dask distributed scheduler's address (``tcp://host:8786``): the files are
        detected on its workers (docs/cluster.md). The model goes to them as bytes; the
        audio files must be readable by the workers at the same paths.
    resume : bool
        Skip the files whose outputs in ``outputs.output_dir`` (and ``frames``) an
        earlier run with the same model and settings wrote (:func:`soundnet.outputs.resume_state`).

    Returns
    -------
    DetectReport
        ``detections`` (each with its probabilities and events), ``failures``, and
        ``text``, the combined output in the plan's format when it was not written to a file.
    """
    from soundnet.outputs import OutputPlan, OutputWriter
    from soundnet.parallel import Workers, check_jobs

    jobs = check_jobs(jobs)
    roots = as_paths(inputs)
    if raw is not None and STDIN not in roots:
        raise UsageError("raw PCM options describe standard input: give - among the inputs")
    if STDIN in roots:
        if scheduler is not None:
            raise UsageError("standard input cannot go to a Dask cluster: save it to a file the workers can read")
        with spooled_stdin(raw) as copy:
            return detect(
                [copy if root == STDIN else root for root in roots],
                model=model,
                runtime=runtime,
                post=post,
                outputs=outputs,
                fail_fast=fail_fast,
                raw_confidence=raw_confidence,
                jobs=jobs,
                resume=resume,
                verify=verify,
            )
    paths = find_audio(roots)
    names = {path: display_name(path, roots) for path in paths}
    detector = Detector(model, runtime=runtime, raw_confidence=raw_confidence, verify=verify)
    post = detector.postprocessing(post)
    if verify and detector.card.verifier is not None and post != detector.card.postprocessing:
        log.info(
            "the card's verifier was fitted on the events of its post-processing (%s), not the one given",
            detector.card.postprocessing,
        )
    if detector.calibrated and post != detector.card.postprocessing:
        log.info(
            "confidences are calibrated for the card's post-processing (%s), not the one given", detector.card.postprocessing
        )
    plan = outputs or OutputPlan()
    writer = OutputWriter(plan, list(names.values()), sample_rate=detector.card.features.sample_rate, post=post, inputs=paths)
    skipped: list[Path] = []
    if resume:
        settings = {
            "model": RunFiles.read(detector.run).digest,
            "runtime": runtime,
            "post": to_dict(post),
            "raw_confidence": raw_confidence,
            "verify": verify,
        }
        done = writer.resume(settings)
        skipped = [path for path in paths if names[path] in done]
        if skipped:
            log.info("%d file(s) already done in %s, skipped (--resume)", len(skipped), plan.output_dir)
    left = [path for path in paths if path not in set(skipped)]
    # A cluster's workers have their own working folder: they get absolute paths.
    given = {(path.resolve() if scheduler is not None else path): path for path in left}
    todo = [
        FileWork(path, names[original], piece) for path, original in given.items() for piece in _pieces(original, detector.card)
    ]
    joins: dict[Path, Join] = {}
    detections: list[Detection] = []

    def arrived(item: FileWork, result: Detection | PieceSums) -> None:
        if item.piece is None:
            detection = result
        else:
            join = joins.setdefault(item.path, Join(item.piece.frames))
            join.add(item.piece, result)
            if not item.piece.last:
                return
            del joins[item.path]
            duration = item.piece.samples / detector.card.features.sample_rate
            detection = detector.detection(given[item.path], join.probabilities(), duration, post=post, name=item.name)
        detection = replace(detection, path=given[item.path])
        writer.write_file(detection)
        detections.append(detection)

    chosen = detector.check()
    with Workers(
        jobs,
        scheduler=scheduler,
        tasks=len(todo),
        warm=functools.partial(_warm_features, detector.card),
        fork=chosen == "litert",
    ) as workers:
        if not workers.remote:
            detector.load()
            shared = workers.share(detector)
        elif scheduler is not None:
            shared = workers.share(DetectorSpec(RunFiles.read(detector.run), runtime, 1, raw_confidence, verify))
        else:
            threads = max(1, usable_cores() // workers.processes)
            shared = workers.share(DetectorSpec(detector.run.resolve(), runtime, threads, raw_confidence, verify))
        batch: BatchResult[FileWork, Detection | PieceSums] = run_batch(
            detect_task,
            todo,
            fail_fast=fail_fast,
            on_result=arrived,
            mapper=workers.mapper(detector=shared, post=workers.share(post)),
            key=lambda item: item.path,
            on_failure=lambda item: joins.pop(item.path, None),
        )
    failures = [Failure(given[failure.item.path], failure.message) for failure in batch.failures]
    if not raw_confidence and detector.card.calibration is None and any(d.events for d in detections):  # once per call
        log.info("%s: the model card has no calibration: event confidences are the network's raw values", detector.run)
    return DetectReport(detections, failures, writer.finish(detections), skipped)


def _pieces(path: Path, card: ModelCard) -> list[Piece | None]:
    """How a file is cut (:func:`soundnet.pieces.plan`): ``[None]`` (whole) unless it is
    long, at the model's rate and in a format whose header gives its exact length. A
    header this process cannot read leaves the file whole: its worker reports why."""
    try:
        info = audio_info(path)
    except SoundnetError:
        return [None]
    if info.samplerate != card.features.sample_rate or info.format not in EXACT_LENGTH_FORMATS:
        return [None]
    pieces = plan(info.frames, config=card.features, window=card.model.window, hop=card.detection_hop)
    return [None] if len(pieces) == 1 else pieces


def _warm_features(card: ModelCard) -> None:
    """Compute features once here, so forked workers start with librosa's first-call imports done."""
    from soundnet.features import compute_features

    compute_features(np.zeros(card.features.n_fft, np.float32), config=card.features)


def display_name(path: Path, roots: Iterable[Path]) -> str:
    """A file's name relative to the folder it was found in (its base name if given
    directly), printable: bytes that are not UTF-8 become ``\\xNN`` and tabs and line
    breaks ``\\t``, ``\\n``, ``\\r``, so no name can break a line of any output."""
    return printable(_relative_name(path, roots))


def _relative_name(path: Path, roots: Iterable[Path]) -> str:
    for root in roots:
        root = Path(root)
        if root.is_dir():
            try:
                return Path(path).relative_to(root).as_posix()
            except ValueError:
                continue
    return Path(path).name
