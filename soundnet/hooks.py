"""Where ``soundnet listen`` sends its events: a rotating log, and hooks (a command, a
webhook, MQTT) that each run on a thread of their own.

A hook never stops detection nor holds it up: :meth:`Hook.deliver` only puts the event
in the hook's queue (the oldest event is dropped, and counted, if a hook is so far
behind that its queue is full); the hook's thread sends it, with a timeout per
attempt, and retries a failed attempt a few times, waiting longer each time. Every
failure is logged on stderr; :meth:`Hook.close` waits a little for what is queued
(the last event's end) and reports what could not be delivered.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import shlex
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from soundnet.errors import SoundnetError, UsageError, os_reason, printable
from soundnet.live import LiveEvent

log = logging.getLogger(__name__)

ENV_PREFIX = "SOUNDNET_"


def event_line(event: LiveEvent) -> str:
    """The event as one JSON line (no newline): what stdout, the log and the hooks carry."""
    return json.dumps(event.to_json(), ensure_ascii=True)


class EventLog:
    """The events as JSON lines in ``path``, rotated at ``max_bytes`` (``path.1`` ... ``path.N`` kept)."""

    def __init__(self, path: Path, *, max_bytes: int = 10 * 2**20, backups: int = 5):
        path = Path(path)
        if path.is_dir():
            raise SoundnetError(f"{path}: a folder, not a log file")
        try:
            self.handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        except OSError as error:
            raise SoundnetError(f"{path}: cannot open the event log ({os_reason(error)})") from None
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.path = path

    def deliver(self, event: LiveEvent) -> None:
        record = logging.LogRecord("soundnet.events", logging.INFO, str(self.path), 0, event_line(event), None, None)
        self.handler.handle(record)  # a write error is reported by logging on stderr, not raised

    def close(self, timeout: float = 0.0) -> None:
        self.handler.close()


class Hook:
    """A destination for events, fed by a queue and sent from its own thread.

    Subclasses implement :meth:`send` (one attempt, raising on failure) and
    :meth:`describe`.

    Parameters
    ----------
    timeout : float > 0
        Seconds one attempt may take.
    retries : int >= 0
        Attempts after a failed one (waits 0.5, 1, 2, ... s between them, at most 30).
    queue_size : int >= 1
        Events that may wait; beyond it the oldest is dropped.
    """

    def __init__(self, *, timeout: float = 10.0, retries: int = 3, queue_size: int = 1000):
        self.timeout, self.retries = timeout, retries
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.delivered = self.failed = self.dropped = 0
        self._stop = threading.Event()
        self._wake = threading.Event()  # ends a wait between attempts early (set on stop, or by a hook that knows better)
        self._thread = threading.Thread(target=self._work, name=f"soundnet-hook-{type(self).__name__}", daemon=True)
        self._started = False

    def describe(self) -> str:
        raise NotImplementedError

    def send(self, payload: str, event: LiveEvent) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def deliver(self, event: LiveEvent) -> None:
        """Queue the event; never blocks."""
        while True:
            try:
                self.queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                    log.warning("%s: behind by %d events; the oldest one dropped", self.describe(), self.queue.maxsize)
                except queue.Empty:
                    pass

    def _work(self) -> None:
        while True:
            event = self.queue.get()
            if event is None:
                return
            self._attempt(event)

    def _attempt(self, event: LiveEvent) -> None:
        payload = event_line(event)
        wait = 0.5
        for attempt in range(1, self.retries + 2):
            try:
                self.send(payload, event)
                self.delivered += 1
                return
            except Exception as error:
                reason = printable(" ".join(str(error).split()) or type(error).__name__)
                if attempt > self.retries:
                    break
                log.warning(
                    "%s: %s of %s failed (attempt %d of %d: %s); retrying in %g s",
                    self.describe(),
                    event.event,
                    event.label,
                    attempt,
                    self.retries + 1,
                    reason,
                    wait,
                )
                self._wake.wait(wait)
                self._wake.clear()
                if self._stop.is_set():
                    break
                wait = min(wait * 2, 30.0)
        self.failed += 1
        log.error("%s: gave up on the %s at %.2f s (%s)", self.describe(), event.event, event.stream_time, reason)

    def close(self, timeout: float = 5.0) -> None:
        """Let the queued events go out for up to ``timeout`` seconds, then stop."""
        if not self._started:
            return
        self.queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()  # no more retries
            self._wake.set()
            left = self.queue.qsize()
            log.warning("%s: still sending after %g s; %d queued event(s) not delivered", self.describe(), timeout, left)
            self._thread.join(self.timeout)
        self.shutdown()

    def shutdown(self) -> None:
        """Release the hook's resources (after its thread stopped)."""


def _environment(event: LiveEvent, payload: str) -> dict[str, str]:
    fields = {key.upper(): "" if value is None else str(value) for key, value in event.to_json().items()}
    return {**{ENV_PREFIX + key: value for key, value in fields.items()}, ENV_PREFIX + "JSON": payload}


class ExecHook(Hook):
    """Run a command per event, its fields in ``SOUNDNET_EVENT``, ``SOUNDNET_LABEL``,
    ``SOUNDNET_STREAM_TIME``, ``SOUNDNET_WALL_TIME``, ``SOUNDNET_CONFIDENCE`` and the
    whole line in ``SOUNDNET_JSON``.

    ``command`` is split once into arguments, as a POSIX shell would (``shlex.split``),
    and run without a shell: no event data ever becomes part of a command line. Its
    standard input is empty; its output is logged (stdout stays soundnet's JSON lines).
    A non-zero exit status or a run longer than ``timeout`` (the command is killed) is
    a failure, retried.
    """

    def __init__(self, command: str, **options):
        super().__init__(**options)
        try:
            self.argv = shlex.split(command)
        except ValueError as error:
            raise UsageError(f"--exec {command!r}: {error}") from None
        if not self.argv:
            raise UsageError("--exec: an empty command")
        if shutil.which(self.argv[0]) is None:
            raise UsageError(f"--exec: {self.argv[0]!r}: no such command (or not executable)")

    def describe(self) -> str:
        return f"--exec {shlex.join(self.argv)!r}"

    def send(self, payload: str, event: LiveEvent) -> None:
        done = subprocess.run(
            self.argv,
            env={**os.environ, **_environment(event, payload)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=self.timeout,
            check=False,
        )
        output = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
        if output:
            log.debug("%s: %s", self.describe(), printable(output[-500:]))
        if done.returncode != 0:
            last = output.splitlines()[-1] if output else "no output"
            raise RuntimeError(f"exit status {done.returncode}: {last[:200]}")


class WebhookHook(Hook):
    """POST each event's JSON to ``url`` (``Content-Type: application/json``); a
    status outside 2xx, a connection error or no answer within ``timeout`` is a failure."""

    def __init__(self, url: str, **options):
        super().__init__(**options)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--webhook {url!r}: not an http:// or https:// URL")
        self.url = url

    def describe(self) -> str:
        return f"--webhook {self.url}"

    def send(self, payload: str, event: LiveEvent) -> None:
        request = urllib.request.Request(
            self.url, data=payload.encode("utf-8"), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"HTTP {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            raise RuntimeError(str(error.reason)) from None


def mqtt_address(value: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6addr]:PORT`` for IPv6) -> (host, port); port 1883 by default."""
    host, port = value, 1883
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            port = rest.lstrip(":")
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        port = int(port)
    except ValueError:
        raise UsageError(f"--mqtt {value!r}: the port is not a number") from None
    if not host or not 0 < port < 65536:
        raise UsageError(f"--mqtt {value!r}: expected HOST or HOST:PORT")
    return host, port


def import_paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise SoundnetError("--mqtt needs the paho-mqtt package: pip install 'soundnet[live]'") from None
    return mqtt


class MqttHook(Hook):
    """Publish each event's JSON to ``topic`` on an MQTT broker (QoS 1: at least once).

    The client connects in the background and reconnects by itself (paho-mqtt); a
    message not acknowledged within ``timeout`` is a failure, and a retry waits for the
    same message (paho keeps it and sends it when the broker is back) rather than
    publishing a copy.
    """

    def __init__(self, address: str, topic: str, *, client_id: str | None = None, **options):
        super().__init__(**options)
        self.mqtt = mqtt = import_paho()
        self.host, self.port = mqtt_address(address)
        if not topic or any(c in topic for c in "#+\0"):
            raise UsageError(f"--mqtt-topic {topic!r}: a topic to publish to holds no wildcard (# +)")
        self.topic = topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"soundnet-{os.getpid()}")
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)  # an alarm should not wait long for a broker back up
        self._acknowledged: set[int] = set()  # message ids the broker acknowledged (paho's thread adds them)

        def acknowledged(client, userdata, mid, reason, properties) -> None:
            self._acknowledged.add(mid)
            self._wake.set()  # a retry waiting for this message need wait no longer

        self.client.on_publish = acknowledged
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self._pending: tuple[str, int] | None = None

    def describe(self) -> str:
        return f"--mqtt {self.host}:{self.port} topic {self.topic}"

    def send(self, payload: str, event: LiveEvent) -> None:
        if self._pending is not None and self._pending[0] is payload:
            mid = self._pending[1]  # paho still holds it, and sends it once connected
        else:
            info = self.client.publish(self.topic, payload, qos=1)  # queued by paho even when not connected
            if info.rc == self.mqtt.MQTT_ERR_QUEUE_SIZE:
                raise RuntimeError("paho-mqtt's outgoing queue is full")
            mid = info.mid
            self._pending = (payload, mid)
        deadline = time.monotonic() + self.timeout
        while mid not in self._acknowledged and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.01)
        if mid not in self._acknowledged:
            state = "connected" if self.client.is_connected() else "not connected"
            raise RuntimeError(f"no acknowledgement from the broker within {self.timeout:g} s ({state})")
        self._acknowledged.discard(mid)
        self._pending = None

    def shutdown(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
