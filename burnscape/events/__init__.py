"""Events stage: burned pixels to fire events, GeoTIFFs and the events store."""

from burnscape.events.banet import burned_from_banet_geotiff
from burnscape.events.extract import EventsSummary, extract_events
from burnscape.events.grid import read_burned
from burnscape.events.labels import label_events
from burnscape.events.store import open_store

__all__ = [
    "EventsSummary",
    "burned_from_banet_geotiff",
    "extract_events",
    "label_events",
    "open_store",
    "read_burned",
]
