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
