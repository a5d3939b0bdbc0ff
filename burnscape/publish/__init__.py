"""burnscape publish stage: pygeoapi providers, configuration and the API server.

- :mod:`burnscape.publish.server`: ``write_server_config``, ``create_app``,
  ``serve`` (waitress).
- :mod:`burnscape.publish.geopackage`: ``GeoPackageProvider`` (OGC API
  Features from burnscape.gpkg, with datetime).
- :mod:`burnscape.publish.coverage`: ``ZarrCoverageProvider`` (OGC API
  Coverages from burned.zarr and cube.zarr on their native grid).

This package never imports torch or :mod:`burnscape.model`.
"""
