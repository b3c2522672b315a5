"""The review page: a local web server over a :class:`soundnet.review.ReviewSession`.

Python's ``http.server`` on 127.0.0.1 only (a reviewer's own machine), one thread per
request. The page (``review_page/index.html``, static HTML and JavaScript in the
package) asks for the detections' list once and draws cards as the reviewer scrolls;
each card's spectrogram (PNG) and audio (WAV) are rendered on request from the
recording, so thousands of detections cost nothing until they are looked at.

Routes
------
``GET /``                       the page
``GET /api/state``              detections (id, file, times, label, confidence, decision), files, progress
``POST /api/decide``            ``{"id": i, "decision": "accepted"|"rejected"|"skipped"|null}``; the table is written
                                before the answer (the new progress)
``GET /spectrogram/<id>.png``   the event and ``context`` seconds either side, the span marked
``GET /audio/<id>.wav``         the event's span
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import threading
import webbrowser
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import numpy as np

from soundnet.audio import audio_info, load_audio
from soundnet.errors import SoundnetError, printable
from soundnet.events import Event
from soundnet.review import DECISIONS, ReviewSession

log = logging.getLogger(__name__)

#: Seconds of audio drawn either side of an event.
CONTEXT_SECONDS = 1.0
#: Longest span a card plays or draws (seconds); a longer event is cut, its start kept.
MAX_SPAN_SECONDS = 60.0
SPECTROGRAM_RATE = 16000
N_MELS = 64
HOP = 160  # 10 ms at 16 kHz: one image column per detector frame
N_FFT = 512
ROW_PIXELS = 2  # image rows per mel band


def span_spectrogram(
    y: np.ndarray, *, sr: int, onset: float, offset: float, n_mels: int = N_MELS, hop: int = HOP, n_fft: int = N_FFT
) -> np.ndarray:
    """A picture of ``y`` (mono, at ``sr``): its mel spectrogram in dB (magma colours,
    low frequencies at the bottom) with the span ``onset``-``offset`` (seconds from the
    start of ``y``) marked by a white bar along the top and white lines at its ends.

    Returns
    -------
    np.ndarray [shape=(ROW_PIXELS * n_mels + 6, columns, 3), dtype=uint8]
        One column per ``hop`` samples.
    """
    import librosa
    from matplotlib import colormaps

    y = np.asarray(y, np.float32)
    if len(y) < n_fft:
        y = np.pad(y, (0, n_fft - len(y)))
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    top = float(mel.max())
    db = librosa.power_to_db(mel, ref=top, top_db=80.0) if top > 1e-10 else np.full_like(mel, -80.0)
    colours = colormaps["magma"]((db[::-1] + 80.0) / 80.0)[..., :3]  # high frequencies first: image rows go down
    image = (np.repeat(colours, ROW_PIXELS, axis=0) * 255).astype(np.uint8)
    columns = image.shape[1]
    first = int(np.clip(round(onset * sr / hop), 0, columns - 1))
    last = int(np.clip(round(offset * sr / hop), first, columns - 1))
    bar = np.zeros((6, columns, 3), np.uint8)
    bar[:, first : last + 1] = 255
    image[:, [first, last]] = 255
    return np.concatenate([bar, image], axis=0)


def png_bytes(image: np.ndarray) -> bytes:
    """``image`` (rows, columns, 3 uint8) as PNG."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def wav_bytes(y: np.ndarray, sr: int) -> bytes:
    """Mono float samples as a 16-bit WAV file."""
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, np.clip(y, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _excerpt(path: Path, start: float, stop: float, *, sample_rate: int | None) -> tuple[np.ndarray, int, float]:
    """Samples of ``path`` from ``start`` to ``stop`` seconds (clamped to the file), mono, at
    ``sample_rate`` (None: the file's own); returns them, the rate and the start read."""
    info = audio_info(path)
    rate = sample_rate or info.samplerate
    first = int(max(0.0, start) * info.samplerate)
    last = min(int(math.ceil(stop * info.samplerate)), info.frames)
    y = load_audio(path, sample_rate=rate, start=first, stop=max(last, first + 1))
    return y, rate, first / info.samplerate


def spectrogram_png(path: Path, event: Event, *, context: float = CONTEXT_SECONDS) -> bytes:
    """The card's picture: ``event`` and ``context`` seconds either side, its span marked."""
    offset = min(event.offset, event.onset + MAX_SPAN_SECONDS)
    y, sr, start = _excerpt(path, event.onset - context, offset + context, sample_rate=SPECTROGRAM_RATE)
    return png_bytes(span_spectrogram(y, sr=sr, onset=event.onset - start, offset=offset - start))


def span_wav(path: Path, event: Event) -> bytes:
    """The card's sound: the event's span, at the file's own rate."""
    offset = min(event.offset, event.onset + MAX_SPAN_SECONDS)
    y, sr, _ = _excerpt(path, event.onset, max(offset, event.onset + 0.01), sample_rate=None)
    return wav_bytes(y, sr)


@dataclass
class ReviewApp:
    """What the server serves: the session, each detection's audio file, and the page's settings."""

    session: ReviewSession
    audio: dict[str, Path]  # detection file name -> audio file
    title: str = "soundnet review"
    context: float = CONTEXT_SECONDS

    def state(self) -> dict:
        detections = [
            {
                "id": i,
                "file": e.filename,
                "onset": round(e.onset, 3),
                "offset": round(e.offset, 3),
                "label": e.label,
                "confidence": None if e.confidence is None else round(float(e.confidence), 4),
                "decision": self.session.decisions.get(i),
            }
            for i, e in enumerate(self.session.detections)
        ]
        files = list(dict.fromkeys(e.filename for e in self.session.detections))
        return {
            "title": self.title,
            "out": str(self.session.out),
            "context": self.context,
            "decisions": list(DECISIONS),
            "detections": detections,
            "files": files,
            "progress": self.session.progress(),
        }

    def detection(self, index: int) -> tuple[Path, Event]:
        if not 0 <= index < len(self.session.detections):
            raise KeyError(index)
        event = self.session.detections[index]
        return self.audio[event.filename], event


_MEDIA = re.compile(r"^/(spectrogram|audio)/(\d{1,9})\.(png|wav)$")
_MAX_BODY = 4096


class _Handler(BaseHTTPRequestHandler):
    app: ReviewApp  # set by make_server on a subclass
    server_version = "soundnet-review"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        log.debug("review page: " + format, *args)

    def _send(self, status: int, body: bytes, content_type: str, *, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: object, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": printable(message)}, status)

    def _foreign(self, *, writing: bool = False) -> bool:
        """Refuse (403) a request that does not come from the page itself: a Host other than
        the server's (DNS rebinding), and for a decision an Origin other than the page's or
        a body that is not JSON (another web site posting to 127.0.0.1)."""
        address, port = self.server.server_address[:2]
        hosts = ("127.0.0.1", "localhost", address)
        names = {f"{host}:{port}" for host in hosts} | (set(hosts) if port == 80 else set())  # no port in Host for 80
        if self.headers.get("Host") not in names:
            self._error(HTTPStatus.FORBIDDEN, f"unexpected Host {self.headers.get('Host')!r}: open http://127.0.0.1:{port}/")
            return True
        origin = self.headers.get("Origin")
        if writing and origin is not None and origin.removeprefix("http://") not in names:
            self._error(HTTPStatus.FORBIDDEN, f"decisions are taken from the review page only, not from {origin!r}")
            return True
        if writing and self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "a decision is a JSON body (Content-Type: application/json)")
            return True
        return False

    def do_GET(self):  # noqa: N802 - http.server's name
        if self._foreign():
            return None
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            page = resources.files("soundnet").joinpath("review_page/index.html").read_bytes()
            return self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        if path == "/api/state":
            return self._json(self.app.state())
        match = _MEDIA.match(path)
        if match is None or (match[1] == "audio") != (match[3] == "wav"):
            return self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        try:
            audio, event = self.app.detection(int(match[2]))
        except KeyError:
            return self._error(HTTPStatus.NOT_FOUND, f"no detection {match[2]}")
        try:
            if match[1] == "spectrogram":
                return self._send(HTTPStatus.OK, spectrogram_png(audio, event, context=self.app.context), "image/png", cache=True)
            return self._send(HTTPStatus.OK, span_wav(audio, event), "audio/wav", cache=True)
        except SoundnetError as error:
            log.error("%s", error)
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(error))

    def do_POST(self):  # noqa: N802 - http.server's name
        if self._foreign(writing=True):
            return None
        if self.path != "/api/decide":
            return self._error(HTTPStatus.NOT_FOUND, f"no such page: {self.path}")
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= _MAX_BODY:
                raise ValueError("body too long or empty")
            body = json.loads(self.rfile.read(length))
            index, decision = body["id"], body.get("decision")
            if not isinstance(index, int) or isinstance(index, bool):
                raise ValueError("id must be an integer")
            if not 0 <= index < len(self.app.session.detections):
                raise ValueError(f"no detection {index}")
            if decision is not None and decision not in DECISIONS:
                raise ValueError(f"unknown decision {decision!r} (expected one of {', '.join(DECISIONS)})")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            return self._error(HTTPStatus.BAD_REQUEST, f"expected {{'id': int, 'decision': str or null}}: {error}")
        try:
            self.app.session.decide(index, decision)
        except SoundnetError as error:  # the table could not be written: the page says "not saved"
            log.error("%s", error)
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(error))
        return self._json({"id": index, "decision": decision, "progress": self.app.session.progress()})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # the browser went away mid-answer (a reload, a closed tab)
            log.debug("review page: %s from %s", error, client_address)
            return
        super().handle_error(request, client_address)


class ReviewServer:
    """The review page served on ``host``:``port`` (0: a free port), in a background thread.

    ``with ReviewServer(app) as server: server.url`` serves until the block ends;
    :meth:`serve_forever` serves in the calling thread until interrupted.
    """

    def __init__(self, app: ReviewApp, *, host: str = "127.0.0.1", port: int = 0):
        handler = type("ReviewHandler", (_Handler,), {"app": app})
        try:
            self.httpd = _Server((host, port), handler)
        except OSError as error:
            raise SoundnetError(f"cannot serve the review page on {host}:{port} ({error.strerror or error})") from None
        self.app = app
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> ReviewServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="soundnet-review", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def open_browser(url: str) -> bool:
    """Open ``url`` in the user's browser, in the background; False if none could be found."""
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    threading.Thread(target=partial(browser.open, url), daemon=True).start()
    return True


def review_app(
    detections: Path,
    audio: Path,
    *,
    out: Path = Path("reviewed.tsv"),
    sample: int | None = None,
    strategy: str = "top",
    seed: int = 0,
    threshold: float = 0.5,
    context: float = CONTEXT_SECONDS,
) -> ReviewApp:
    """Everything the page needs, checked before a server starts.

    Parameters
    ----------
    detections : Path
        Any table ``soundnet detect`` writes (:func:`soundnet.review.read_detections`).
    audio : Path
        The folder the table's file names are relative to.
    out : Path
        The reviewed table: read back if it exists, rewritten after each decision.
    sample : int > 0 or None
        Review only this many detections, chosen by ``strategy``
        (:func:`soundnet.review.sample_detections`, seeded by ``seed``; ``threshold``
        for ``uncertain``); None: all, in table order.
    context : float >= 0
        Seconds drawn either side of each event.

    Raises
    ------
    SoundnetError
        A bad table, a file name that names no audio file, ``out`` the detections table.
    """
    from soundnet.guard import refuse_overwrites
    from soundnet.review import check_within_recordings, read_detections, resolve_audio, sample_detections

    detections, audio, out = Path(detections), Path(audio), Path(out)
    if not audio.is_dir():
        raise SoundnetError(f"{audio}: not a folder of audio")
    refuse_overwrites([("--out", out)], [detections])
    events = read_detections(detections)
    if sample is not None:
        events = sample_detections(events, sample, strategy=strategy, seed=seed, threshold=threshold)
    paths = resolve_audio([e.filename for e in events], audio, table=detections)
    check_within_recordings(detections, ((e.filename, e.onset, e.offset) for e in events), paths)
    session = ReviewSession(events, out)
    return ReviewApp(session, paths, title=f"soundnet review: {detections.name}", context=context)
