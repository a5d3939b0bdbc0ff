"""Exceptions and warnings raised by burnscape, grouped by pipeline stage."""

from __future__ import annotations


class BurnscapeError(Exception):
    """Root of every error burnscape raises on purpose.

    Catch this to handle any failure a caller can act on; anything else is a bug.
    """


class BurnscapeWarning(UserWarning):
    """Root of burnscape's warnings: a step was skipped or degraded and work went on."""


# --- configuration -------------------------------------------------------------


class ConfigError(BurnscapeError, ValueError):
    """A workflow or configuration file is invalid (unknown key, bad value, bad YAML).

    The message names the file, the key and what is expected.
    """


class DataNotFoundError(BurnscapeError, FileNotFoundError):
    """A local input (shared data folder, mirror, weights, store) does not exist."""


# --- acquire -------------------------------------------------------------------


class AcquireError(BurnscapeError):
    """Base of the download stage's errors."""


class SearchError(AcquireError):
    """A catalogue search failed (bad response, server error after retries)."""


class AssetUnavailableError(AcquireError, FileNotFoundError):
    """The source does not hold an asset that the search or workflow named.

    Raise it for a 404 or a mirror that lacks the file. Not for transient failures:
    those are :class:`DownloadError`.
    """


class DownloadError(AcquireError):
    """A download failed after its retries (connection, 5xx, truncated body, HTML)."""


class ChecksumError(DownloadError):
    """A downloaded file's size or checksum does not match the expected one.

    The file is deleted and never ingested.
    """


class AuthenticationError(AcquireError, PermissionError):
    """Credentials are missing or refused (401/403, login page instead of data)."""


# --- cube ----------------------------------------------------------------------


class CubeError(BurnscapeError):
    """Base of the cube stage's errors."""


class GranuleReadError(CubeError):
    """A granule cannot be read: corrupt file, missing band, unknown format."""


class MissingBandError(GranuleReadError):
    """A granule opens but lacks a band (variable, SDS, asset) the cube needs."""


class GridMismatchError(CubeError, ValueError):
    """An existing store's grid or time axis differs from the workflow's region."""


# --- model ---------------------------------------------------------------------


class ModelError(BurnscapeError):
    """Base of the model stage's errors."""


class WeightsError(ModelError):
    """Weights are missing, unreadable or do not match the architecture."""


# --- events --------------------------------------------------------------------


class EventsError(BurnscapeError):
    """Base of the events stage's errors."""


class StoreError(EventsError):
    """The events store (GeoPackage or PostGIS) cannot be read or written."""


# --- publish -------------------------------------------------------------------


class PublishError(BurnscapeError):
    """The API server cannot be configured or started."""


# --- warnings ------------------------------------------------------------------


class SkippedInputWarning(BurnscapeWarning):
    """An input (granule, day, asset) was skipped; the reason is in the message."""


class EmptyResultWarning(BurnscapeWarning):
    """A stage produced nothing (no burned pixels, no events) for a valid reason."""
