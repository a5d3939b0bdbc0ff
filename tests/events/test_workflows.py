from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyogrio
import pytest

from burnscape.config import load_workflow
from burnscape.errors import ChecksumError, ConfigError
from burnscape.events.workflows import is_events_workflow, run_events_workflow

ROOT = Path(__file__).resolve().parents[2]
CREEK = ROOT / "workflows" / "creek-fire-2020.yml"
BANET = ROOT / "workflows" / "banet-events-europe.yml"
CREEK_FIRE_HA = 379_895 * 0.40468564  # CAL FIRE final size, 379,895 acres


def test_events_workflows_validate_and_are_recognised(data_dir):
    assert is_events_workflow(load_workflow(CREEK))
    assert is_events_workflow(load_workflow(BANET))
    assert not is_events_workflow(
        load_workflow(ROOT / "workflows" / "chrome2-2018.yml")
    )


def test_imagery_workflow_is_refused(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="not an events input"):
        run_events_workflow(
            load_workflow(ROOT / "workflows" / "chrome2-2018.yml"), tmp_path
        )


def test_banet_asset_with_wrong_checksum_is_not_used(data_dir, tmp_path):
    fake = tmp_path / "data" / "firehr-banet-events"
    fake.mkdir(parents=True)
    source = data_dir / "firehr-banet-events"
    for item in load_workflow(BANET).sources[0].items:
        name = item.assets["events"].path
        shutil.copy(source / name, fake / name)
    # swap one file for another real one: the checksum no longer matches
    shutil.copy(source / "ba100m_FRiv2017_2.tif", fake / "ba100m_FRiv2017_1.tif")
    with pytest.raises(ChecksumError, match="FRiv2017_1.*was not used"):
        run_events_workflow(
            load_workflow(BANET), tmp_path / "out", data_dir=tmp_path / "data"
        )


@pytest.mark.slow
def test_banet_workflow_gives_one_event_per_raster(data_dir, tmp_path):
    summaries = run_events_workflow(load_workflow(BANET), tmp_path)
    assert [s.n_events for s in summaries] == [1] * 6
    events = pyogrio.read_dataframe(tmp_path / "burnscape.gpkg", layer="fire_events")
    assert events.run_id.str.startswith("banet-events-europe-").all()
    pedrogao = events[events.run_id == "banet-events-europe-PT2017_1"].iloc[0]
    assert pedrogao.pixel_count == 53276
    assert pedrogao.area_ha == pytest.approx(50_500, rel=0.01)  # PROVENANCE: ~500 km2
    assert all((tmp_path / path).is_file() for path in events.geotiff)


@pytest.mark.slow
def test_creek_fire_detections_become_one_growing_event(data_dir, tmp_path):
    (summary,) = run_events_workflow(load_workflow(CREEK), tmp_path)
    main = summary.main_event
    assert main is not None
    assert main["first_burn_date"] == "2020-09-05"
    assert main["area_ha"] == pytest.approx(CREEK_FIRE_HA, rel=0.15)
    days = pyogrio.read_dataframe(
        tmp_path / "burnscape.gpkg",
        layer="daily_progression",
        where=f"event_id = '{main['event_id']}'",
    )
    assert days.date.is_monotonic_increasing and len(days) > 30
    assert np.all(np.diff(days.cumulative_area_ha) > 0)
    assert days.cumulative_area_ha.iloc[-1] == pytest.approx(main["area_ha"])
    # the fire's run: most of it burned in its first week (2020-09-05 .. 09-11)
    first_week = days[days.date <= "2020-09-11"].area_ha.sum()
    assert first_week > 0.4 * main["area_ha"]
    fires = pyogrio.read_dataframe(tmp_path / "burnscape.gpkg", layer="active_fires")
    assert len(fires) == 39_839
    assert (fires.event_id == main["event_id"]).mean() > 0.95
