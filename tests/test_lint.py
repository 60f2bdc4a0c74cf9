"""The type checker and linter run with the tests, so CI checks them on every change."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tool, args", [("mypy", []), ("ruff", ["check", "src", "tests",
                                                                  "benchmarks"])])
def test_tool_is_clean(tool: str, args: list[str]) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; install the test extras: pip install -e '.[test]'")
    done = subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
