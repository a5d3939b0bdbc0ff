"""Events stage: burned pixels to fire events, GeoTIFFs and the events store."""

from burnscape.events.banet import burned_from_banet_geotiff
from burnscape.events.chunked import ChunkedLabels, label_events_chunked
from burnscape.events.detections import active_fires_frame, burned_from_detections
from burnscape.events.extract import EventsSummary, extract_events
from burnscape.events.grid import read_burned
from burnscape.events.labels import label_events
from burnscape.events.store import open_store
from burnscape.events.workflows import is_events_workflow, run_events_workflow

__all__ = [
    "ChunkedLabels",
    "EventsSummary",
    "active_fires_frame",
    "burned_from_banet_geotiff",
    "burned_from_detections",
    "extract_events",
    "is_events_workflow",
    "label_events",
    "label_events_chunked",
    "open_store",
    "read_burned",
    "run_events_workflow",
]
