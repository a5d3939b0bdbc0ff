"""Cube stage: stream granules into an append-safe, crash-safe Zarr cube.

Public entry points:

- :func:`build_cube`: create, extend or complete ``cube.zarr`` from granules
  on a Dask cluster (one task per slot and tile).
- :func:`scenes_from_items`, :func:`ingest_items`: turn downloaded items into
  granules, applying each product's conventions, and ingest them.
- :mod:`burnscape.cube.readers`: one reader per product behind a registry.
- :mod:`burnscape.cube.timeaxis`: time slots and their fixed encoding.
"""
