"""soundnet listen's hooks against real services on 127.0.0.1: a command, an HTTP server
made here, and a Mosquitto broker started here. A hook that fails or hangs is logged
and retried, and never stops detection."""

from __future__ import annotations

import http.server
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from clirun import child_env, cli, fails, ok, soundnet
from test_live import alarm_scene, json_lines, wav_bytes

from soundnet.hooks import mqtt_address

ARGS = ("listen", "--input", "-", "--min-duration", "0.2", "--on", "0.9", "--off", "0.5")


@pytest.fixture(scope="module")
def stream() -> bytes:
    """A 10 s WAV with one planted smoke alarm: a start and an end line."""
    y, _ = alarm_scene(10.0, [2.0], seed=2)
    return wav_bytes(y)


def recorder(tmp_path: Path, *, fail_first: int = 0, sleep: float = 0.0) -> tuple[str, Path]:
    """A command line (to give --exec) whose program appends its argv and SOUNDNET_* variables
    to a file as a JSON line; it fails its first ``fail_first`` runs and sleeps ``sleep`` s first."""
    script, out, count = tmp_path / "hook.py", tmp_path / "hook.jsonl", tmp_path / "count"
    script.write_text(
        "import json, os, sys, time\n"
        f"time.sleep({sleep})\n"
        f"count = {str(count)!r}\n"
        "n = int(open(count).read()) + 1 if os.path.exists(count) else 1\n"
        "open(count, 'w').write(str(n))\n"
        f"if n <= {fail_first}:\n"
        "    print('not yet', file=sys.stderr); sys.exit(3)\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('SOUNDNET_')}\n"
        f"with open({str(out)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'env': env}) + '\\n')\n"
    )
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} 'two words' '$(touch {tmp_path}/pwned)' ';'"
    return command, out


def test_exec_runs_a_command_per_event_with_the_fields_in_its_environment_and_no_shell(tmp_path, stream):
    command, out = recorder(tmp_path)
    result = ok(cli(*ARGS, "--exec", command, input=stream))
    lines = json_lines(result.stdout)
    runs = json_lines(out.read_text())
    assert [run["env"]["SOUNDNET_EVENT"] for run in runs] == ["start", "end"]
    for run, line in zip(runs, lines, strict=True):
        assert run["argv"] == ["two words", f"$(touch {tmp_path}/pwned)", ";"]
        assert json.loads(run["env"]["SOUNDNET_JSON"]) == line
        assert run["env"]["SOUNDNET_LABEL"] == "smoke_alarm"
        assert float(run["env"]["SOUNDNET_STREAM_TIME"]) == line["stream_time"]
        assert run["env"]["SOUNDNET_WALL_TIME"] == line["wall_time"]
    assert not (tmp_path / "pwned").exists()


def test_a_failing_command_is_logged_and_retried_and_detection_goes_on(tmp_path, stream):
    command, out = recorder(tmp_path, fail_first=2)
    result = ok(cli(*ARGS, "--exec", command, input=stream))
    assert [line["event"] for line in json_lines(result.stdout)] == ["start", "end"]
    assert "failed (attempt 1 of 4: exit status 3: not yet); retrying" in result.stderr
    assert [run["env"]["SOUNDNET_EVENT"] for run in json_lines(out.read_text())] == ["start", "end"]


def test_a_hanging_command_is_killed_at_its_timeout_and_never_holds_detection_up(tmp_path, stream):
    command, out = recorder(tmp_path, sleep=60)
    started = time.monotonic()
    result = ok(cli(*ARGS, "--exec", command, "--hook-timeout", "0.3", "--hook-retries", "1", input=stream))
    assert time.monotonic() - started < 30
    assert [line["event"] for line in json_lines(result.stdout)] == ["start", "end"]
    assert "timed out after 0.3 seconds" in result.stderr and "gave up on the start" in result.stderr
    assert not out.exists()


def test_exec_and_webhook_options_are_checked(tmp_path):
    fails(cli("listen", "--input", "-", "--exec", "no-such-program-here --x"), "no such command", code=2)
    fails(cli("listen", "--input", "-", "--exec", "'unclosed"), "--exec", code=2)
    fails(cli("listen", "--input", "-", "--webhook", "ftp://example.org/x"), "not an http", code=2)
    fails(cli("listen", "--input", "-", "--mqtt", "host:port"), "port is not a number", code=2)
    fails(cli("listen", "--input", "-", "--mqtt-topic", "a/b"), "--mqtt-topic needs --mqtt", code=2)
    assert mqtt_address("broker") == ("broker", 1883)
    assert mqtt_address("10.0.0.2:8883") == ("10.0.0.2", 8883)
    assert mqtt_address("[::1]:1884") == ("::1", 1884)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def http_server(*, fail_first: int = 0, delay: float = 0.0):
    """A real HTTP server on 127.0.0.1: (server, received bodies); answers 500 to its first
    ``fail_first`` requests, and waits ``delay`` s before each answer."""
    received, seen = [], [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(delay)
            seen[0] += 1
            if seen[0] <= fail_first:
                self.send_response(500)
                self.end_headers()
                return
            received.append((self.headers["Content-Type"], json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


def test_webhook_posts_each_event_and_retries_after_a_server_error(stream):
    server, received = http_server(fail_first=1)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/alarm"
        result = ok(cli(*ARGS, "--webhook", url, input=stream))
    finally:
        server.shutdown()
    assert "failed (attempt 1 of 4: HTTP 500" in result.stderr
    assert received == [("application/json", line) for line in json_lines(result.stdout)]


def test_a_webhook_that_does_not_answer_times_out_and_detection_goes_on(stream):
    server, received = http_server(delay=5.0)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/slow"
        args = ("--webhook", url, "--hook-timeout", "0.3", "--hook-retries", "0")
        result = ok(cli(*ARGS, *args, input=stream))
    finally:
        server.shutdown()
    assert [line["event"] for line in json_lines(result.stdout)] == ["start", "end"]
    assert "gave up on the start" in result.stderr and "timed out" in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    assert found, "the mosquitto broker is missing: apt-get install mosquitto (.ci/run does)"
    return found


def start_mosquitto(folder: Path, port: int) -> subprocess.Popen:
    """A Mosquitto broker on ``port`` of 127.0.0.1, listening when this returns."""
    config = folder / f"mosquitto-{port}.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    process = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"mosquitto did not start listening: {process.stderr.read().decode()}") from None
            time.sleep(0.05)


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto broker on a free port of 127.0.0.1, for this test only: its port."""
    port = free_port()
    process = start_mosquitto(tmp_path, port)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)


def subscriber(port: int, topic: str):
    """A paho-mqtt client subscribed to ``topic`` on the broker: (client, messages received)."""
    import paho.mqtt.client as mqtt

    messages, ready = [], threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{os.getpid()}")
    client.on_connect = lambda c, userdata, flags, code, props: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *args: ready.set()
    client.on_message = lambda c, userdata, message: messages.append((message.topic, json.loads(message.payload)))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(10), "the subscription was not acknowledged"
    return client, messages


def test_mqtt_publishes_each_event_to_a_real_broker(broker, stream):
    client, messages = subscriber(broker, "home/alarm")
    try:
        result = ok(cli(*ARGS, "--mqtt", f"127.0.0.1:{broker}", "--mqtt-topic", "home/alarm", input=stream))
        lines = json_lines(result.stdout)
        deadline = time.monotonic() + 10
        while len(messages) < len(lines) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    assert messages == [("home/alarm", line) for line in lines]
    assert [line["event"] for line in lines] == ["start", "end"]


def test_mqtt_default_topic_is_the_target_label(broker, stream):
    client, messages = subscriber(broker, "soundnet/#")
    try:
        ok(cli(*ARGS, "--mqtt", f"127.0.0.1:{broker}", input=stream))
        deadline = time.monotonic() + 10
        while len(messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    assert {topic for topic, _ in messages} == {"soundnet/smoke_alarm"}


def test_an_unreachable_broker_is_logged_and_detection_goes_on(stream):
    args = ("--mqtt", f"127.0.0.1:{free_port()}", "--hook-timeout", "0.3", "--hook-retries", "1")
    result = ok(cli(*ARGS, *args, input=stream))
    assert [line["event"] for line in json_lines(result.stdout)] == ["start", "end"]
    assert "no acknowledgement from the broker within 0.3 s (not connected)" in result.stderr
    assert "gave up on the start" in result.stderr


def test_a_burst_of_events_beyond_a_hooks_queue_drops_the_oldest():
    from soundnet.hooks import Hook
    from soundnet.live import LiveEvent

    class Slow(Hook):
        def describe(self):
            return "slow"

        def send(self, payload, event):
            time.sleep(0.05)

    hook = Slow(queue_size=2, retries=0)
    hook.start()
    started = time.monotonic()
    for i in range(20):
        hook.deliver(LiveEvent("start", "x", float(i), 1.0))
    assert time.monotonic() - started < 0.5  # deliver never waits for the hook
    hook.close(5.0)
    assert hook.dropped > 0 and hook.delivered + hook.dropped == 20


def distinct(messages: list) -> list[dict]:
    """The messages' payloads without repeats, in order (QoS 1 is at least once: a message
    in flight when a connection drops comes again)."""
    seen: list[dict] = []
    for _, message in messages:
        if message not in seen:
            seen.append(message)
    return seen


def test_events_reach_a_broker_that_comes_up_after_they_happened(tmp_path, stream):
    """The broker is down when the alarm starts: the failed attempts are logged, and once
    the broker is up paho sends the message it kept (one copy: retries wait for it)."""
    port = free_port()
    args = [*ARGS, "--mqtt", f"127.0.0.1:{port}", "--mqtt-topic", "late/alarm", "--hook-timeout", "1", "--hook-retries", "20"]
    listener = subprocess.Popen(
        soundnet(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()
    )
    broker = None
    try:
        listener.stdin.write(stream)  # the stream stays open: listen goes on listening
        listener.stdin.flush()
        first = listener.stdout.readline()
        assert json.loads(first)["event"] == "start"
        time.sleep(1.5)  # an attempt or two fail
        broker = start_mosquitto(tmp_path, port)
        client, messages = subscriber(port, "late/alarm")
        deadline = time.monotonic() + 40
        while len(distinct(messages)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        listener.stdin.close()
        out, err = listener.stdout.read(), listener.stderr.read()
        listener.wait(60)
        client.loop_stop()
        client.disconnect()
    finally:
        listener.kill()
        if broker is not None:
            broker.terminate()
            broker.wait(10)
    lines = [json.loads(first), *json_lines(out.decode())]
    assert distinct(messages) == lines, (messages, lines, err.decode())
    assert "no acknowledgement from the broker within 1 s (not connected)); retrying" in err.decode()
