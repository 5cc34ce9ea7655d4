"""Lint as a test: `ruff check` with the repository's ruff.toml (pyflakes F, pycodestyle E/W;
what is ignored and why is written there) on the package, the tests, launch/ and scripts/.

ruff comes from requirements/tools.txt (scripts/setup_env.sh installs it); where it is missing
the test is skipped with that reason.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["geoloc_ros", "test", "launch", "scripts", "setup.py"]


def _ruff() -> str | None:
    return shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


def test_ruff_config_is_the_repositorys():
    text = (ROOT / "ruff.toml").read_text()
    assert "line-length = 120" in text and 'select = ["F", "E", "W"]' in text


def test_ruff_finds_nothing():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (scripts/setup_env.sh installs it from requirements/tools.txt)")
    res = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", *PATHS], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"ruff findings (config: ruff.toml):\n{res.stdout}{res.stderr}"
