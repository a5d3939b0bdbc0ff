from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pandas as pd
import pytest

from burnscape.acquire import Ledger
from burnscape.acquire.firms import (
    FIRMS_COLUMNS,
    acquire_firms,
    area_requests,
    read_firms,
)
from burnscape.config import RegionConfig, SourceConfig, TimeConfig
from burnscape.errors import AuthenticationError, ConfigError, SkippedInputWarning

from .faultserver import FaultServer

GLOBAL = "firms-viirs-nrt-global-2023-11-09"
SNPP = "SUOMI_VIIRS_C2_Global_VNP14IMGTDL_NRT_2023313.txt"
API_HEADER = (
    "latitude,longitude,bright_ti4,scan,track,acq_date,acq_time,satellite,"
    "instrument,confidence,version,bright_ti5,frp,daynight\n"
)


@pytest.fixture(scope="module")
def firms_dir() -> Path:
    from burnscape.utils import find_data_dir

    found = find_data_dir()
    if found is None or not (found / GLOBAL).is_dir():
        pytest.skip(f"shared data folder with {GLOBAL} is absent")
    return found


def test_daily_nrt_file_parses_with_utc_times(firms_dir: Path) -> None:
    frame = read_firms(firms_dir / GLOBAL / SNPP)
    assert len(frame) == 43_981
    assert list(frame.columns[: len(FIRMS_COLUMNS)]) == list(FIRMS_COLUMNS)
    assert str(frame["acquired"].dt.tz) == "UTC"
    assert (frame["acquired"].dt.date == dt.date(2023, 11, 9)).all()
    assert frame["acquired"].iloc[0] == pd.Timestamp("2023-11-09T00:34Z")
    assert frame["confidence"].value_counts().to_dict() == {
        "nominal": 36_014,
        "low": 4_937,
        "high": 3_030,
    }
    assert set(frame["confidence_norm"]) == {0.15, 0.55, 0.9}
    assert set(frame["instrument"]) == {"VIIRS"} and set(frame["daynight"]) == {
        "D",
        "N",
    }
    assert frame.crs.to_epsg() == 4326
    assert (frame.geometry.x == frame["longitude"]).all()
    assert frame["bright_ti4"].dtype == float and frame["frp"].max() == pytest.approx(
        623, abs=1
    )


def test_api_integer_acq_time_keeps_its_lost_leading_zeros() -> None:
    rows = [
        "10.0,20.0,330,0.4,0.4,2023-11-09,145,N,VIIRS,n,2.0NRT,290,3.0,N",
        "10.0,20.0,330,0.4,0.4,2023-11-09,5,N,VIIRS,l,2.0NRT,290,3.0,N",
        "10.0,20.0,330,0.4,0.4,2023-11-09,1330,N,VIIRS,h,2.0NRT,290,3.0,D",
        "10.0,20.0,330,0.4,0.4,2023-11-09,0034,N,VIIRS,n,2.0NRT,290,3.0,N",
        "10.0,20.0,330,0.4,0.4,2023-11-09,00:40,N,VIIRS,n,2.0NRT,290,3.0,N",
    ]
    frame = read_firms(io.StringIO(API_HEADER + "\n".join(rows) + "\n"))
    times = sorted(frame["acquired"].dt.strftime("%H:%M"))
    assert times == ["00:05", "00:34", "00:40", "01:45", "13:30"]


def test_viirs_classes_and_modis_percent_share_one_scale() -> None:
    text = (
        "latitude,longitude,brightness,scan,track,acq_date,acq_time,satellite,"
        "instrument,confidence,version,bright_t31,frp,daynight\n"
        "10,20,320,1,1,2023-11-09,100,Aqua,MODIS,85,6.1NRT,290,12,D\n"
        "10,20,320,1,1,2023-11-09,101,Terra,MODIS,0,6.1NRT,290,12,D\n"
    )
    modis = read_firms(io.StringIO(text))
    assert modis["confidence"].tolist() == ["85", "0"]
    assert modis["confidence_norm"].tolist() == [0.85, 0.0]
    assert set(modis["instrument"]) == {"MODIS"}
    viirs = read_firms(
        io.StringIO(API_HEADER + "1,2,3,4,5,2023-11-09,1,N,VIIRS,h,2,3,4,D\n")
    )
    assert viirs["confidence"].tolist() == ["h"]
    assert viirs["confidence_norm"].tolist() == [0.9]


def test_rows_with_empty_coordinates_are_rejected_with_a_count() -> None:
    rows = [
        "10.0,20.0,330,0.4,0.4,2023-11-09,145,N,VIIRS,n,2.0NRT,290,3.0,N",
        ",,330,0.4,0.4,2023-11-09,145,N,VIIRS,n,2.0NRT,290,3.0,N",
        "12.0,,330,0.4,0.4,2023-11-09,145,N,VIIRS,n,2.0NRT,290,3.0,N",
        "12.0,21.0,330,0.4,0.4,2023-11-09,2575,N,VIIRS,n,2.0NRT,290,3.0,N",
    ]
    with pytest.warns(SkippedInputWarning, match="3 FIRMS rows rejected"):
        frame = read_firms(io.StringIO(API_HEADER + "\n".join(rows) + "\n"))
    assert len(frame) == 1 and frame.attrs["rejected_rows"] == 3
    assert not ((frame["latitude"] == 0) & (frame["longitude"] == 0)).any()


@pytest.mark.slow
def test_feds_creek_fire_folder_is_read_whole(firms_dir: Path) -> None:
    folder = firms_dir / "creek-fire-2020-viirs-snpp-detections" / "SNPP"
    if not folder.is_dir():
        pytest.skip("creek-fire-2020-viirs-snpp-detections is absent")
    frame = read_firms(folder)
    assert len(frame) == 39_839
    assert frame["acquired"].min() == pd.Timestamp("2020-09-05T10:00Z")
    assert frame["acquired"].max() == pd.Timestamp("2020-11-27T20:24Z")
    assert frame["latitude"].between(36.98, 37.65).all()
    assert frame["confidence_norm"].isna().all()
    assert frame["acquired"].is_monotonic_increasing


def test_unknown_layout_names_the_columns() -> None:
    with pytest.raises(ConfigError, match=r"not a FIRMS file: columns \['a', 'b'\]"):
        read_firms(io.StringIO("a,b\n1,2\n"))


def test_area_requests_split_at_the_day_limit() -> None:
    parts = area_requests(
        "VIIRS_SNPP_NRT", (-10, 0, 40, 20), dt.date(2023, 11, 1), dt.date(2023, 11, 23)
    )
    assert [(days, date) for _, _, days, date in parts] == [
        (10, "2023-11-01"),
        (10, "2023-11-11"),
        (3, "2023-11-21"),
    ]
    assert parts[0][1] == "-10.0000,0.0000,40.0000,20.0000"


def _area_api(detections: pd.DataFrame, key: str):
    """Answer /api/area/csv/KEY/SOURCE/AREA/DAYS/DATE like FIRMS does."""

    def answer(path: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        got_key, _source, area, days, date = path.split("/")[4:9]
        if got_key != key:
            return 200, b"Invalid MAP_KEY.", {"Content-Type": "text/plain"}
        if not 1 <= int(days) <= 10:
            return 400, b"Invalid day range. Expects [1..10].", {}
        west, south, east, north = map(float, area.split(","))
        first = dt.date.fromisoformat(date)
        dates = {str(first + dt.timedelta(days=i)) for i in range(int(days))}
        lon = detections["longitude"].astype(float)
        lat = detections["latitude"].astype(float)
        sel = detections[
            lon.between(west, east)
            & lat.between(south, north)
            & detections["acq_date"].isin(dates)
        ].copy()
        sel["acq_time"] = sel["acq_time"].str.replace(":", "").astype(int)
        sel["instrument"] = "VIIRS"
        sel["confidence"] = sel["confidence"].str[0]
        columns = API_HEADER.strip().split(",")
        return (
            200,
            sel[columns].to_csv(index=False).encode(),
            {"Content-Type": "text/csv"},
        )

    return answer


def test_acquire_firms_area_api_splits_records_and_reuses(
    firms_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = pd.read_csv(firms_dir / GLOBAL / SNPP, dtype=str)
    source = SourceConfig(
        kind="firms", name="firms-snpp", options={"product": "VIIRS_SNPP_NRT"}
    )
    region = RegionConfig(crs="EPSG:4326", bbox=(-10, 0, 40, 20), pixel_size=0.1)
    window = TimeConfig(start="2023-11-01", end="2023-11-15")
    monkeypatch.setenv("FIRMS_MAP_KEY", "k3y-s3cret")
    with FaultServer() as server, Ledger(tmp_path / "ledger.sqlite") as ledger:
        server.routes["/api/area/csv/"] = _area_api(raw, "k3y-s3cret")
        api = server.url + "api/area/csv/"
        frame = acquire_firms(
            source, region, window, tmp_path / "dl", ledger, api_url=api
        )
        lat, lon = raw["latitude"].astype(float), raw["longitude"].astype(float)
        expected = (lon.between(-10, 40) & lat.between(0, 20)).sum()
        assert len(frame) == expected > 1000
        assert len(server.log) == 2  # 15 days: two requests
        assert all("k3y-s3cret" not in r.url for r in ledger.requests())
        assert not any("k3y" in p.name for p in (tmp_path / "dl").rglob("*"))
        again = acquire_firms(
            source, region, window, tmp_path / "dl", ledger, api_url=api
        )
        assert len(server.log) == 2 and len(again) == len(frame)

        monkeypatch.setenv("FIRMS_MAP_KEY", "wrong")
        other = TimeConfig(start="2023-12-01", end="2023-12-02")
        with pytest.raises(AuthenticationError, match="refused the MAP_KEY"):
            acquire_firms(source, region, other, tmp_path / "dl", ledger, api_url=api)
        monkeypatch.delenv("FIRMS_MAP_KEY")
        with pytest.raises(AuthenticationError, match="set the environment variable"):
            acquire_firms(source, region, other, tmp_path / "dl", ledger, api_url=api)


def test_acquire_firms_daily_text_files(
    firms_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = "SUOMI_VIIRS_C2_Global_VNP14IMGTDL_NRT_"
    monkeypatch.setenv("EARTHDATA_TOKEN", "tok")
    source = SourceConfig(
        kind="firms", name="daily", options={"mode": "daily", "prefix": prefix}
    )
    region = RegionConfig(crs="EPSG:4326", bbox=(-180, -90, 180, 90), pixel_size=1)
    with FaultServer() as server, Ledger(tmp_path / "ledger.sqlite") as ledger:
        server.add(f"/daily/{SNPP}", (firms_dir / GLOBAL / SNPP).read_bytes())
        frame = acquire_firms(
            source,
            region,
            TimeConfig(start="2023-11-09", end="2023-11-09"),
            tmp_path / "dl",
            ledger,
            api_url=server.url + "daily/",
        )
        assert len(frame) == 43_981
        assert server.log[0].headers["Authorization"] == "Bearer tok"
        assert ledger.summary() == {"verified": 1}
