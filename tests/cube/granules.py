"""Build small granule files with the real products' structure, for tests.

No VNP09GA or MOD09GA file ships with the shared data, so these builders write
files laid out as the real products are: the same dataset paths and names,
attributes (scale_factor, add_offset, _FillValue, valid_range), HDF-EOS
``StructMetadata.0`` with the sinusoidal grid of tile h08v05 (its real corner
coordinates, GCTP sinusoidal on the 6371007.181 m sphere). Only the number of
pixels differs (coarser pixels over the same tile extent) to keep them small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TILE_UL = (-11119505.196667, 4447802.078667)
"""Upper-left corner (m) of sinusoidal tile h08v05."""
TILE_LR = (-10007554.677000, 3335851.559000)
"""Lower-right corner (m) of sinusoidal tile h08v05."""
SPHERE = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m"

REFLECTANCE_FILL = -28672


def struct_metadata(
    grids: list[tuple[str, int, int, list[str]]],
    hdf5: bool,
    corners: tuple[tuple[float, float], tuple[float, float]] = (TILE_UL, TILE_LR),
) -> str:
    """Return an HDF-EOS StructMetadata.0 text for sinusoidal grids."""
    prefix = "HE5_" if hdf5 else ""
    lines = ["GROUP=SwathStructure", "END_GROUP=SwathStructure", "GROUP=GridStructure"]
    for number, (name, rows, cols, fields) in enumerate(grids, start=1):
        lines += [
            f"\tGROUP=GRID_{number}",
            f'\t\tGridName="{name}"',
            f"\t\tXDim={cols}",
            f"\t\tYDim={rows}",
            f"\t\tUpperLeftPointMtrs=({corners[0][0]:.6f},{corners[0][1]:.6f})",
            f"\t\tLowerRightMtrs=({corners[1][0]:.6f},{corners[1][1]:.6f})",
            f"\t\tProjection={prefix}GCTP_SNSOID",
            "\t\tProjParams=(6371007.181000,0,0,0,0,0,0,0,0,0,0,0,0)",
            "\t\tSphereCode=-1",
            f"\t\tGridOrigin={prefix}HDFE_GD_UL",
            "\t\tGROUP=DataField",
        ]
        for k, field in enumerate(fields, start=1):
            lines += [
                f"\t\t\tOBJECT=DataField_{k}",
                f'\t\t\t\tDataFieldName="{field}"',
                '\t\t\t\tDimList=("YDim","XDim")',
                f"\t\t\tEND_OBJECT=DataField_{k}",
            ]
        lines += ["\t\tEND_GROUP=DataField", f"\tEND_GROUP=GRID_{number}"]
    lines += [
        "END_GROUP=GridStructure",
        "GROUP=PointStructure",
        "END_GROUP=PointStructure",
        "END",
    ]
    return "\n".join(lines) + "\n"


def write_vnp09ga(
    path: Path,
    bands: dict[str, np.ndarray],
    qf1: np.ndarray | None = None,
    corners: tuple[tuple[float, float], tuple[float, float]] = (TILE_UL, TILE_LR),
) -> Path:
    """Write a VNP09GA-structured HDF5 file (1 km grid ``VNP_Grid_1km_2D``).

    ``bands`` maps dataset names (``SurfReflect_M5_1`` ...) to int16 raw
    arrays of one shape; ``qf1`` is the uint8 ``SurfReflect_QF1_1``.
    """
    import h5py

    rows, cols = next(iter(bands.values())).shape
    fields = list(bands) + (["SurfReflect_QF1_1"] if qf1 is not None else [])
    with h5py.File(path, "w") as handle:
        info = handle.create_group("HDFEOS INFORMATION")
        info.create_dataset(
            "StructMetadata.0",
            data=np.bytes_(
                struct_metadata(
                    [("VNP_Grid_1km_2D", rows, cols, fields)], True, corners
                )
            ),
        )
        info.attrs["HDFEOSVersion"] = np.bytes_("HDFEOS_5.1.15")
        attrs = handle.create_group("HDFEOS/ADDITIONAL/FILE_ATTRIBUTES")
        attrs.attrs["ShortName"] = np.bytes_("VNP09GA")
        data = handle.create_group("HDFEOS/GRIDS/VNP_Grid_1km_2D/Data Fields")
        for name, raw in bands.items():
            dataset = data.create_dataset(name, data=raw.astype(np.int16))
            dataset.attrs["long_name"] = np.bytes_(
                f"1km Surface Reflectance Band {name[12:-2]}"
            )
            dataset.attrs["units"] = np.bytes_("reflectance")
            dataset.attrs["scale_factor"] = np.array([0.0001], dtype=np.float64)
            dataset.attrs["add_offset"] = np.array([0.0], dtype=np.float64)
            dataset.attrs["_FillValue"] = np.array([REFLECTANCE_FILL], dtype=np.int16)
            dataset.attrs["valid_range"] = np.array([-100, 16000], dtype=np.int16)
        if qf1 is not None:
            dataset = data.create_dataset(
                "SurfReflect_QF1_1", data=qf1.astype(np.uint8)
            )
            dataset.attrs["long_name"] = np.bytes_("Surface Reflectance Quality Flag 1")
            dataset.attrs["_FillValue"] = np.array([255], dtype=np.uint8)
    return path


def write_mod09ga(
    path: Path,
    bands: dict[str, np.ndarray],
    state: np.ndarray | None = None,
    extra: dict[str, tuple[np.ndarray, float, float, float]] | None = None,
) -> Path:
    """Write a MOD09GA-structured HDF4 file (500 m and 1 km sinusoidal grids).

    ``bands`` maps SDS names (``sur_refl_b01_1`` ...) to int16 raw arrays on the
    500 m grid; ``state`` is the uint16 ``state_1km_1`` on the 1 km grid (half
    the rows and columns). ``extra`` adds 500 m SDS as name -> (raw, scale,
    offset, fill), e.g. a MOD13-style NDVI.
    """
    from pyhdf.SD import SD, SDC

    rows, cols = next(iter(bands.values())).shape
    extra = extra or {}
    grids = [
        ("MODIS_Grid_1km_2D", rows // 2, cols // 2, ["state_1km_1"]),
        ("MODIS_Grid_500m_2D", rows, cols, list(bands) + list(extra)),
    ]
    sd = SD(str(path), SDC.WRITE | SDC.CREATE | SDC.TRUNC)
    try:
        sd.attr("StructMetadata.0").set(SDC.CHAR, struct_metadata(grids, False))
        for name, raw in bands.items():
            _sds(
                sd,
                name,
                raw,
                "MODIS_Grid_500m_2D",
                0.0001,
                0.0,
                REFLECTANCE_FILL,
                (-100, 16000),
            )
        for name, (raw, scale, offset, fill) in extra.items():
            _sds(sd, name, raw, "MODIS_Grid_500m_2D", scale, offset, fill, None)
        if state is not None:
            sds = sd.create("state_1km_1", SDC.UINT16, state.shape)
            sds.dim(0).setname("YDim:MODIS_Grid_1km_2D")
            sds.dim(1).setname("XDim:MODIS_Grid_1km_2D")
            sds.attr("_FillValue").set(SDC.UINT16, 65535)
            sds[:] = state.astype(np.uint16)
            sds.endaccess()
    finally:
        sd.end()
    return path


def _sds(sd, name, raw, grid, scale, offset, fill, valid) -> None:  # noqa: ANN001
    from pyhdf.SD import SDC

    sds = sd.create(name, SDC.INT16, raw.shape)
    sds.dim(0).setname(f"YDim:{grid}")
    sds.dim(1).setname(f"XDim:{grid}")
    sds.attr("long_name").set(SDC.CHAR, f"{name} of the test granule")
    sds.attr("units").set(SDC.CHAR, "reflectance")
    sds.attr("_FillValue").set(SDC.INT16, int(fill))
    if valid is not None:
        sds.attr("valid_range").set(SDC.INT16, [int(valid[0]), int(valid[1])])
    sds.attr("scale_factor").set(SDC.FLOAT64, float(scale))
    sds.attr("add_offset").set(SDC.FLOAT64, float(offset))
    sds[:] = raw.astype(np.int16)
    sds.endaccess()
