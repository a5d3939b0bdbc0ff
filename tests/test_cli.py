from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from burnscape.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("run", "validate", "serve", "download", "status"):
        assert name in result.output


def test_validate_good_workflow() -> None:
    result = CliRunner().invoke(
        main, ["validate", str(ROOT / "workflows" / "chrome2-2018.yml")]
    )
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_unknown_key_is_one_line_and_nonzero(tmp_path: Path) -> None:
    text = (ROOT / "workflows" / "chrome2-2018.yml").read_text()
    bad = tmp_path / "bad.yml"
    bad.write_text(text.replace("max_gap_days:", "max_gap_dayz:"))
    proc = subprocess.run(
        [sys.executable, "-m", "burnscape.cli", "validate", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "unknown key 'events.max_gap_dayz'" in lines[0]
    assert "max_gap_days" in lines[0]
    assert "Traceback" not in proc.stderr
