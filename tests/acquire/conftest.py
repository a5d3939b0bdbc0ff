"""Fixtures of the acquire tests: the real CHROME 2 workflow and mirrors of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from burnscape.config import SourceConfig, WorkflowConfig, load_workflow
from burnscape.utils import find_data_dir

ROOT = Path(__file__).resolve().parents[2]
CHROME2 = ROOT / "workflows" / "chrome2-2018.yml"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    found = find_data_dir()
    if found is None or not (found / "chrome2-fire-2018-landsat8").is_dir():
        pytest.skip("shared data folder with chrome2-fire-2018-landsat8 is absent")
    return found


@pytest.fixture(scope="session")
def chrome2(shared_data: Path) -> WorkflowConfig:
    return load_workflow(CHROME2)


@pytest.fixture()
def chrome2_source(chrome2: WorkflowConfig) -> SourceConfig:
    return chrome2.sources[0]


@pytest.fixture()
def linked_mirror(
    tmp_path: Path, shared_data: Path, chrome2_source: SourceConfig
) -> Path:
    """A mirror folder of symbolic links to the real CHROME 2 files (no copies)."""
    mirror = tmp_path / "mirror"
    folder = mirror / str(chrome2_source.mirror_folder)
    real = shared_data / str(chrome2_source.mirror_folder)
    for item in chrome2_source.items:
        for asset in item.assets.values():
            link = folder / asset.path
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                os.symlink(real / asset.path, link)
    return mirror


def with_asset(
    source: SourceConfig, item_id: str, key: str, **changes: object
) -> SourceConfig:
    """Return a copy of a source with one asset's fields changed."""
    raw = source.model_dump()
    for item in raw["items"]:
        if item["id"] == item_id:
            item["assets"][key].update(changes)
    return SourceConfig.model_validate(raw)
