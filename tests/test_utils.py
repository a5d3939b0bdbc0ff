"""burnscape.utils: the code version recorded with results."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from burnscape import __version__
from burnscape.utils import code_version

ROOT = Path(__file__).resolve().parents[1]


def test_code_version_names_the_commit_in_a_checkout() -> None:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: the bare version is recorded")
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert code_version().startswith(f"{__version__}+g{head}")
