from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from burnscape.acquire import Ledger
from burnscape.acquire.laads import _granule, acquire_laads, split_window
from burnscape.config import RegionConfig, SourceConfig, TimeConfig
from burnscape.errors import AuthenticationError

from .faultserver import Fault, FaultServer

TOKEN = "edl-T0KEN-do-not-leak"
CMR = "cmr-laads-granule-response"
L1 = "banet-viirs-l1-2017300"
REGION = RegionConfig(crs="EPSG:4326", bbox=(-10, 36, 5, 44), pixel_size=0.01)
WINDOW = TimeConfig(start="2017-10-01", end="2017-11-30")


@pytest.fixture(scope="module")
def data() -> Path:
    from burnscape.utils import find_data_dir

    found = find_data_dir()
    if found is None or not (found / CMR).is_dir() or not (found / L1).is_dir():
        pytest.skip(f"shared data folders {CMR} and {L1} are absent")
    return found


def _cmr_route(granules: list[dict]):
    """Answer /search/granules.umm_json like CMR: filters, CMR-Search-After paging."""

    def answer(path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        first, last = (
            dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
            for v in query["temporal"].split(",")
        )
        west, south, east, north = map(float, query["bounding_box"].split(","))
        matched = []
        for item in granules:
            umm = item["umm"]
            start = dt.datetime.fromisoformat(
                umm["TemporalExtent"]["RangeDateTime"]["BeginningDateTime"].replace(
                    "Z", "+00:00"
                )
            )
            box = umm["SpatialExtent"]["HorizontalSpatialDomain"]["Geometry"][
                "BoundingRectangles"
            ][0]
            if (
                umm["CollectionReference"]["ShortName"] == query["short_name"]
                and first <= start <= last
                and box["WestBoundingCoordinate"] <= east
                and box["EastBoundingCoordinate"] >= west
                and box["SouthBoundingCoordinate"] <= north
                and box["NorthBoundingCoordinate"] >= south
            ):
                matched.append(item)
        offset = json.loads(headers.get("CMR-Search-After", "[0]"))[0]
        size = int(query["page_size"])
        page = matched[offset : offset + size]
        out = {
            "Content-Type": "application/vnd.nasa.cmr.umm_results+json",
            "CMR-Hits": str(len(matched)),
        }
        if page:
            out["CMR-Search-After"] = json.dumps([offset + len(page)])
        body = {"hits": len(matched), "took": 5, "items": page}
        return 200, json.dumps(body).encode(), out

    return answer


def _granules(data: Path, server: FaultServer) -> list[dict]:
    """The real CMR item as template, one granule per real LAADS HDF file."""
    template = json.loads((data / CMR / "G1593453400-LAADS_umm.json").read_text())[
        "items"
    ][0]
    items = []
    for index, path in enumerate(sorted((data / L1).glob("*.hdf"))):
        content = path.read_bytes()
        url = server.add(
            f"/archive/allData/5000/NPP_VMAES_L1/2017/300/{path.name}", content
        )
        item = copy.deepcopy(template)
        item["meta"]["concept-id"] = f"G{1000 + index}-LAADS"
        umm = item["umm"]
        umm["GranuleUR"] = path.name
        umm["CollectionReference"] = {"ShortName": "NPP_VMAES_L1", "Version": "5000"}
        umm["TemporalExtent"]["RangeDateTime"] = {
            "BeginningDateTime": "2017-10-27T14:06:00.000Z",
            "EndingDateTime": "2017-10-27T14:12:00.000Z",
        }
        umm["SpatialExtent"] = {
            "HorizontalSpatialDomain": {
                "Geometry": {
                    "BoundingRectangles": [
                        {
                            "WestBoundingCoordinate": -10,
                            "EastBoundingCoordinate": 5,
                            "SouthBoundingCoordinate": 36,
                            "NorthBoundingCoordinate": 44,
                        }
                    ]
                }
            }
        }
        umm["RelatedUrls"][0]["URL"] = url
        info = umm["DataGranule"]["ArchiveAndDistributionInformation"][0]
        info["SizeInBytes"] = len(content)
        if index % 2 == 0:  # some granules list an MD5, the others none
            info["Checksum"] = {
                "Value": hashlib.md5(content).hexdigest(),
                "Algorithm": "MD5",
            }
        items.append(item)
    return items


def _source(**options: object) -> SourceConfig:
    return SourceConfig(
        kind="laads",
        name="viirs-l1",
        options={"product": "NPP_VMAES_L1", "page_size": 3, **options},
    )


def test_real_umm_granule_resolves_url_size_and_times(data: Path) -> None:
    item = json.loads((data / CMR / "G1593453400-LAADS_umm.json").read_text())["items"][
        0
    ]
    granule = _granule(item)
    assert granule.id == "G1593453400-LAADS"
    assert granule.url == (
        "https://ladsweb.modaps.eosdis.nasa.gov/archive/allData/6/MYD021KM/"
        "2019/051/MYD021KM.A2019051.0430.006.2019051235515.hdf"
    )
    assert granule.size == 69_035_465 and granule.md5 is None
    assert granule.start == dt.datetime(2019, 2, 20, 4, 30, tzinfo=dt.UTC)
    assert granule.end == dt.datetime(2019, 2, 20, 4, 35, tzinfo=dt.UTC)


def test_split_window_covers_every_day_once() -> None:
    chunks = split_window(dt.date(2017, 10, 1), dt.date(2017, 11, 30), 31)
    assert chunks == [
        (dt.date(2017, 10, 1), dt.date(2017, 10, 31)),
        (dt.date(2017, 11, 1), dt.date(2017, 11, 30)),
    ]


def test_acquire_laads_splits_pages_verifies_and_reuses(
    data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("EARTHDATA_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    with FaultServer() as server, Ledger(tmp_path / "ledger.sqlite") as ledger:
        server.routes["/search/granules.umm_json"] = _cmr_route(_granules(data, server))
        events: list[tuple[str, object]] = []
        items = acquire_laads(
            _source(),
            REGION,
            WINDOW,
            tmp_path / "dl",
            ledger,
            api_url=server.url,
            on_event=lambda kind, request, value: events.append((kind, value)),
        )
        assert len(items) == 7
        # a progress bar hears of every byte and every file
        done = [value for kind, value in events if kind == "done"]
        assert len(done) == 7 and all(result.ok for result in done)
        received = sum(value for kind, value in events if kind == "bytes")
        assert received == sum(item.assets["data"].stat().st_size for item in items)
        for item in items:
            local = item.assets["data"]
            assert local.read_bytes() == (data / L1 / local.name).read_bytes()
            assert item.time_bounds[0] == dt.datetime(
                2017, 10, 27, 14, 6, tzinfo=dt.UTC
            )
        searches = [e for e in server.log if e.path.startswith("/search/")]
        # October: pages of 3, 3, 1; November: one empty page.
        assert len(searches) == 4
        temporal = [parse_qs(urlsplit(e.path).query)["temporal"][0] for e in searches]
        assert temporal[-1] == "2017-11-01T00:00:00Z,2017-11-30T23:59:59Z"
        assert all(
            e.headers.get("Authorization") == f"Bearer {TOKEN}" for e in server.log
        )

        served = len(server.log)
        again = acquire_laads(
            _source(), REGION, WINDOW, tmp_path / "dl", ledger, api_url=server.url
        )
        assert again == items and len(server.log) == served
    assert TOKEN not in caplog.text
    dump = "\n".join(sqlite3.connect(tmp_path / "ledger.sqlite").iterdump())
    assert TOKEN not in dump


def test_token_follows_redirects_to_provider_hosts_only(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EARTHDATA_TOKEN", TOKEN)
    with (
        FaultServer() as server,
        FaultServer(host="localhost") as mirror,
        FaultServer(host="127.0.0.2") as foreign,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        items = _granules(data, server)
        for index, target in ((0, mirror), (1, foreign)):
            url = items[index]["umm"]["RelatedUrls"][0]["URL"]
            path = urlsplit(url).path
            moved = target.add(path, server.entries[path].data)
            server.entries[path].then = Fault("redirect", location=moved)
        server.routes["/search/granules.umm_json"] = _cmr_route(items)
        source = _source(hosts=["localhost"])
        got = acquire_laads(
            source, REGION, WINDOW, tmp_path / "dl", ledger, api_url=server.url
        )
        assert len(got) == 7
        assert mirror.log[0].headers.get("Authorization") == f"Bearer {TOKEN}"
        assert "Authorization" not in foreign.log[0].headers


def test_missing_token_is_refused_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EARTHDATA_TOKEN", raising=False)
    with FaultServer() as server, Ledger(tmp_path / "ledger.sqlite") as ledger:
        with pytest.raises(
            AuthenticationError, match="set the environment variable EARTHDATA_TOKEN"
        ):
            acquire_laads(
                _source(), REGION, WINDOW, tmp_path / "dl", ledger, api_url=server.url
            )
        assert server.log == []


def test_a_run_downloads_laads_sources_through_cmr(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`burnscape run`'s acquire step sends a laads source to CMR, not to STAC."""
    from burnscape.config import WorkflowConfig
    from burnscape.errors import ConfigError
    from burnscape.pipeline import acquire_imagery

    monkeypatch.setenv("EARTHDATA_TOKEN", TOKEN)
    workflow = WorkflowConfig(
        name="laads-run",
        region=REGION,
        time=WINDOW,
        sources=(_source(),),
        outputs={"folder": str(tmp_path / "out")},
    )
    with FaultServer() as server, Ledger(tmp_path / "ledger.sqlite") as ledger:
        server.routes["/search/granules.umm_json"] = _cmr_route(_granules(data, server))
        items = acquire_imagery(
            workflow.sources[0], workflow, tmp_path / "dl", ledger, api_url=server.url
        )
        assert len(items) == 7
        assert any(e.path.startswith("/search/granules") for e in server.log)
        firms = _source().model_copy(update={"kind": "firms"})
        with pytest.raises(ConfigError, match="burnscape events --workflow"):
            acquire_imagery(firms, workflow, tmp_path / "dl", ledger, api_url=None)
