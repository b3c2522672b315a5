"""docs/api.md stays current: its Python blocks run, in order, as one script."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from clirun import child_env

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_doc_examples_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", API_DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 8, "docs/api.md lost its examples"
    script = tmp_path / "api_doc.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    env = {**child_env(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no/such/file.wav: no such file or folder" in done.stdout
    assert (tmp_path / "soundnet-demo" / "runs" / "beep" / "card.json").is_file()
    assert os.listdir(tmp_path / "soundnet-demo" / "tables")
