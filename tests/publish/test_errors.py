"""An unexpected failure is a plain 500: its detail goes to the log, not the client."""

import logging

from burnscape.publish.geopackage import GeoPackageProvider
from burnscape.publish.server import create_app

from .conftest import write_gpkg

SECRET = "/srv/private/burnscape.gpkg: database disk image is malformed"


def test_unexpected_error_is_500_with_details_only_in_the_log(
    tmp_path, monkeypatch, caplog
):
    write_gpkg(tmp_path / "burnscape.gpkg")
    app = create_app(tmp_path, server_url="http://127.0.0.1:5000")

    def broken(self, **kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(GeoPackageProvider, "query", broken)
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/collections/fire-events/items?f=json")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "details are in the server log" in response.get_json()["description"]
    assert "malformed" not in body and "/srv/private" not in body
    assert "Traceback" not in body
    assert SECRET in caplog.text


def test_client_errors_log_one_info_line_and_no_traceback(tmp_path, caplog):
    write_gpkg(tmp_path / "burnscape.gpkg")
    app = create_app(tmp_path, server_url="http://127.0.0.1:5000")
    client = app.test_client()
    # the CLI sets the burnscape logger's level; other tests run it in-process
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, "burnscape"):
        missing = client.get("/collections/fire-events/items/no-such-id?f=json")
        sortby = client.get("/collections/fire-events/items?f=json&sortby=nope")
        no_route = client.get("/no/such/path")
        process = client.get("/processes/burnscape-workflow?f=json")
    assert missing.status_code == 404 and sortby.status_code == 400
    assert no_route.status_code == 404 and process.status_code == 200
    assert "sortby 'nope'" in sortby.get_json()["description"]
    pygeoapi_records = [r for r in caplog.records if r.name.startswith("pygeoapi")]
    assert not [r for r in pygeoapi_records if r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if r.exc_info]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("burnscape")]
    assert any("answered 404" in line and "no-such-id" in line for line in lines)
    assert any("answered 400" in line and "sortby" in line for line in lines)
    assert any("answered 404" in line and "/no/such/path" in line for line in lines)


def test_server_side_failures_reported_by_pygeoapi_still_log_errors(
    tmp_path, monkeypatch, caplog
):
    from pygeoapi.provider.base import ProviderConnectionError

    write_gpkg(tmp_path / "burnscape.gpkg")
    app = create_app(tmp_path, server_url="http://127.0.0.1:5000")

    def unreachable(self, **kwargs):
        raise ProviderConnectionError(user_msg="database unreachable")

    monkeypatch.setattr(GeoPackageProvider, "query", unreachable)
    with caplog.at_level(logging.INFO):
        response = app.test_client().get("/collections/fire-events/items?f=json")
    assert response.status_code >= 500
    assert [
        r
        for r in caplog.records
        if r.name.startswith("pygeoapi") and r.levelno >= logging.ERROR
    ]
