"""Running soundnet's command line in tests: in-process (click's CliRunner) or as a
real process, and checking what a user would see."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from click.testing import CliRunner

from soundnet.cli import main


def cli(*args, input=None):
    """``soundnet ARGS...`` in this process (``input``: bytes on its stdin); the result holds exit code, stdout and stderr."""
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def explain(result) -> str:
    text = f"exit {result.exit_code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        text += "\n--- exception\n" + "".join(traceback.format_exception(*result.exc_info))
    return text


def no_traceback(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), explain(result)
    assert "Traceback" not in result.stdout + result.stderr, explain(result)


def ok(result):
    no_traceback(result)
    assert result.exit_code == 0, explain(result)
    return result


def fails(result, *fragments: str, code: int = 1):
    """Exit ``code``, no traceback, and one stderr line holding every fragment."""
    no_traceback(result)
    assert result.exit_code == code, explain(result)
    lines = [line for line in result.stderr.splitlines() if all(f in line for f in fragments)]
    assert lines, f"no stderr line holds all of {fragments}\n" + explain(result)
    return result


def child_env() -> dict:
    """The environment of a real ``python -m soundnet.cli``: this checkout's soundnet after any given path."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*paths, str(Path(__file__).resolve().parents[1])]),
        "PYTHONUNBUFFERED": "1",
    }


def soundnet(*args) -> list[str]:
    """The command line of a real ``soundnet ARGS...`` process (run it with ``env=child_env()``)."""
    return [sys.executable, "-m", "soundnet.cli", *map(str, args)]
