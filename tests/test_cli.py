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


def test_validate_names_the_assets_a_mirror_lacks(tmp_path: Path, data_dir) -> None:
    """A copy of the CHROME 2 folder without one band: validate says which."""
    import shutil

    mirror = tmp_path / "mirror"
    shutil.copytree(
        data_dir / "chrome2-fire-2018-landsat8", mirror / "chrome2-fire-2018-landsat8"
    )
    (mirror / "chrome2-fire-2018-landsat8" / "Postdata" / "band5clip.tif").unlink()
    workflow = str(ROOT / "workflows" / "chrome2-2018.yml")

    result = CliRunner().invoke(main, ["validate", workflow, "--mirror", str(mirror)])

    assert result.exit_code == 1
    assert "lacks 1 of 12 assets of source 'landsat8-l1'" in result.output
    assert "chrome2-2018-landsat8-post/B5 (Postdata/band5clip.tif)" in result.output
    complete = CliRunner().invoke(
        main, ["validate", workflow, "--mirror", str(data_dir)]
    )
    assert complete.exit_code == 0, complete.output
    assert "holds every listed asset" in complete.output
    unchecked = CliRunner().invoke(
        main, ["validate", workflow, "--mirror", str(mirror), "--no-mirror"]
    )
    assert unchecked.exit_code == 0 and "Mirror" not in unchecked.output
