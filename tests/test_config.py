from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from burnscape.config import expand_variables, load_workflow
from burnscape.errors import ConfigError

WORKFLOW = Path(__file__).resolve().parent.parent / "workflows" / "chrome2-2018.yml"


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "wf.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _minimal() -> dict:
    return {
        "name": "mini",
        "region": {"crs": "EPSG:4326", "bbox": [0, 0, 1, 1], "pixel_size": 0.01},
        "time": {"start": "2024-07-01", "end": "2024-07-10"},
        "sources": [{"kind": "stac", "name": "s", "url": "http://127.0.0.1:1/"}],
        "outputs": {"folder": "out"},
    }


def test_load_workflow_chrome2_is_valid() -> None:
    workflow = load_workflow(WORKFLOW)
    assert workflow.region.shape == (716, 691)
    assert [item.id for item in workflow.sources[0].items] == [
        "chrome2-2018-landsat8-pre",
        "chrome2-2018-landsat8-post",
    ]
    pre, post = (item.time_bounds for item in workflow.sources[0].items)
    assert pre[1] < post[0]


def test_load_workflow_unknown_key_names_key_and_valid_keys(tmp_path: Path) -> None:
    data = _minimal()
    data["events"] = {"max_gap_dayz": 3}
    with pytest.raises(
        ConfigError, match=r"unknown key 'events\.max_gap_dayz'.*max_gap_days"
    ):
        load_workflow(_write(tmp_path, data))


def test_load_workflow_unknown_top_level_key(tmp_path: Path) -> None:
    data = _minimal()
    data["detectr"] = {}
    with pytest.raises(ConfigError, match=r"unknown key 'detectr'.*detector"):
        load_workflow(_write(tmp_path, data))


def test_load_workflow_unknown_key_inside_list_item(tmp_path: Path) -> None:
    data = _minimal()
    data["sources"][0]["colection"] = "x"
    with pytest.raises(
        ConfigError, match=r"unknown key 'sources\.0\.colection'.*collection"
    ):
        load_workflow(_write(tmp_path, data))


def test_load_workflow_bad_bbox_is_explained(tmp_path: Path) -> None:
    data = _minimal()
    data["region"]["bbox"] = [1, 0, 0, 1]
    with pytest.raises(ConfigError, match=r"minx, miny, maxx, maxy"):
        load_workflow(_write(tmp_path, data))


def test_load_workflow_unknown_crs(tmp_path: Path) -> None:
    data = _minimal()
    data["region"]["crs"] = "EPSG:999999"
    with pytest.raises(ConfigError, match="unknown CRS"):
        load_workflow(_write(tmp_path, data))


def test_load_workflow_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read workflow"):
        load_workflow(tmp_path / "absent.yml")


def test_expand_variables_default_and_missing() -> None:
    assert expand_variables("a ${X:-b} c", {}) == "a b c"
    assert expand_variables("${X}", {"X": "y"}) == "y"
    with pytest.raises(ConfigError, match="NOPE is not set"):
        expand_variables("${NOPE}", {})


def test_impossible_date_is_one_config_error(tmp_path: Path) -> None:
    text = yaml.safe_dump(_minimal()).replace("'2024-07-01'", "2024-02-30")
    assert "2024-02-30" in text
    path = tmp_path / "wf.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="day is out of range") as caught:
        load_workflow(path)
    line = text.splitlines().index(
        next(row for row in text.splitlines() if "2024-02-30" in row)
    )
    assert f"wf.yml:{line + 1}: 2024-02-30 is not a date" in str(caught.value)


def test_workflow_not_in_utf8_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "wf.yml"
    path.write_bytes(yaml.safe_dump(_minimal()).encode("utf-16"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_workflow(path)


def test_memory_limit_must_be_a_size(tmp_path: Path) -> None:
    data = _minimal()
    data["cluster"] = {"memory_limit": "lots"}
    with pytest.raises(ConfigError, match="memory_limit 'lots' is not a size"):
        load_workflow(_write(tmp_path, data))
    data["cluster"] = {"memory_limit": "2GiB"}
    assert load_workflow(_write(tmp_path, data)).cluster.memory_limit == "2GiB"


def test_absurd_grid_is_refused_before_anything_runs(tmp_path: Path) -> None:
    data = _minimal()
    data["region"]["pixel_size"] = 0.000001
    with pytest.raises(ConfigError, match=r"1000000 x 1000000 pixels.*pixel_size"):
        load_workflow(_write(tmp_path, data))


def test_errors_inside_a_list_are_reported_once_and_plainly(tmp_path: Path) -> None:
    data = _minimal()
    data["sources"][0]["items"] = [
        {
            "id": "a",
            "datetime": "2024-07-02T00:00:00Z",
            "assets": {"B1": {"path": "b1.tif", "sha256": "not-hex"}},
        }
    ]
    data["time"] = {"start": "2024-07-10", "end": "2024-07-01"}
    with pytest.raises(ConfigError) as caught:
        load_workflow(_write(tmp_path, data))
    message = str(caught.value)
    assert "sources.0.items.0.assets.B1.sha256" in message
    assert "at least 1 item" not in message  # not the list emptied by it
    assert "Value error" not in message and "time" in message
