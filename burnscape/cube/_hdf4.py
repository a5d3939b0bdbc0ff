"""Cube stage: open one SDS of an HDF4 / HDF-EOS2 file with pyhdf."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from burnscape.cube._hdfeos import EosGrid, parse_grids
from burnscape.errors import GranuleReadError, MissingBandError

__all__ = ["grid_for", "open_sds"]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@contextlib.contextmanager
def open_sds(
    path: str, variable: str | None
) -> Iterator[tuple[Any, dict[str, Any], dict[str, EosGrid], tuple[int, int]]]:
    """Open ``variable`` (or the file's only SDS) of an HDF4 file.

    Yields
    ------
    tuple
        The SDS (sliceable), its attributes, the file's HDF-EOS grids and the
        SDS's (rows, columns).

    Raises
    ------
    GranuleReadError
        The file is not a readable HDF4 file.
    MissingBandError
        The file lacks ``variable`` (or holds several SDS and none was named).
    """
    from pyhdf.error import HDF4Error
    from pyhdf.SD import SD, SDC

    name = Path(path).name
    try:
        sd = SD(str(path), SDC.READ)
    except HDF4Error as err:
        raise GranuleReadError(f"cannot open HDF4 file {name}: {err}") from err
    try:
        available = list(sd.datasets())
        chosen = variable or (available[0] if len(available) == 1 else None)
        if chosen not in available:
            raise MissingBandError(
                f"{name} has no SDS {variable!r}; it holds {available}"
            )
        try:
            sds = sd.select(chosen)
            attributes = sds.attributes()
            _, rank, dims, _, _ = sds.info()
            grids = parse_grids(str(sd.attributes().get("StructMetadata.0", "")))
        except HDF4Error as err:
            raise GranuleReadError(
                f"cannot read SDS {chosen} of {name}: {err}"
            ) from err
        if rank != 2:
            raise GranuleReadError(f"SDS {chosen} of {name} is {rank}-D, not 2-D")
        try:
            yield sds, attributes, grids, (int(dims[0]), int(dims[1]))
        except HDF4Error as err:
            raise GranuleReadError(
                f"cannot read SDS {chosen} of {name}: {err}"
            ) from err
        finally:
            sds.endaccess()
    finally:
        sd.end()


def grid_for(
    grids: dict[str, EosGrid], variable: str, shape: tuple[int, int], path: str
) -> EosGrid:
    """Return the grid that declares ``variable`` (or the one of its shape).

    Raises
    ------
    GranuleReadError
        No grid in the file's StructMetadata.0 fits the variable.
    """
    for grid in grids.values():
        if variable in grid.fields and (grid.height, grid.width) == shape:
            return grid
    for grid in grids.values():
        if (grid.height, grid.width) == shape:
            return grid
    raise GranuleReadError(
        f"{Path(path).name}: no HDF-EOS grid of shape {shape} for {variable}; "
        "the file is not a gridded product burnscape can place"
    )


def fill_test(attributes: dict[str, Any]) -> float | None:
    """Return the VIIRS SDR fill threshold (``FILL_TEST_VALUE``), if stated."""
    text = str(attributes.get("FILL_TEST_VALUE", ""))
    match = _NUMBER.search(text.split("=", 1)[-1])
    return float(match.group()) if match else None
