"""The layer rules of pyproject.toml's [tool.importlinter] hold: the services never import
each other, memq.contracts and the SDK stay light, only the CLI imports memq.ops, no import
cycles inside memq."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_layer_contracts_are_kept() -> None:
    # This checkout's packages, not whichever memq an editable install points at.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
