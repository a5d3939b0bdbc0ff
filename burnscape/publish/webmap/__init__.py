"""Publish stage: the web map served at ``/map`` beside the OGC API."""

from burnscape.publish.webmap.bins import BinQuery, bin_layer
from burnscape.publish.webmap.blueprint import (
    FIRE_LIMIT,
    PIXEL_LIMIT,
    missing_assets,
    webmap_blueprint,
)

__all__ = [
    "FIRE_LIMIT",
    "PIXEL_LIMIT",
    "BinQuery",
    "bin_layer",
    "missing_assets",
    "webmap_blueprint",
]
