"""PointCloud2 <-> numpy for any field layout (pure numpy, no rclpy).

Works on any object with the standard PointCloud2 attributes (``height``, ``width``,
``fields`` [each with ``name``, ``offset``, ``datatype``, ``count``], ``is_bigendian``,
``point_step``, ``row_step``, ``data``): rclpy messages and ``rosbags`` dataclasses alike.
The decode is a single ``np.frombuffer`` with a structured dtype built from the fields;
no Python loop over points.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# sensor_msgs/PointField datatype codes -> numpy scalar types.
POINTFIELD_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.int8), 2: np.dtype(np.uint8), 3: np.dtype(np.int16), 4: np.dtype(np.uint16),
    5: np.dtype(np.int32), 6: np.dtype(np.uint32), 7: np.dtype(np.float32), 8: np.dtype(np.float64),
}
DTYPE_TO_POINTFIELD: dict[np.dtype, int] = {v: k for k, v in POINTFIELD_DTYPES.items()}
XYZI = ('x', 'y', 'z', 'intensity')


@dataclass(frozen=True)
class PointFieldSpec:
    """One sensor_msgs/PointField as plain values."""
    name: str
    offset: int
    datatype: int
    count: int = 1


@dataclass
class CloudFields:
    """Everything a PointCloud2 message needs except its header."""
    fields: list[PointFieldSpec]
    height: int
    width: int
    point_step: int
    row_step: int
    data: bytes
    is_bigendian: bool = False
    is_dense: bool = True


@dataclass
class DecodedCloud:
    """points: (N, 4) float32 x, y, z, intensity; extras: name -> (N,) or (N, count) arrays.

    n_dropped: rows removed because x, y or z was NaN/inf (0 when dropping was not asked).
    """
    points: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    n_dropped: int = 0


def cloud_dtype(fields, point_step: int, is_bigendian: bool = False) -> np.dtype:
    """Structured dtype of one point (itemsize = point_step, padding honoured).

    fields: iterable of PointField-like objects. Raises ValueError naming the bad field.
    """
    names, formats, offsets = [], [], []
    order = '>' if is_bigendian else '<'
    for f in fields:
        code = int(f.datatype)
        if code not in POINTFIELD_DTYPES:
            raise ValueError(f'PointCloud2 field {f.name!r}: unknown datatype code {code} (expected 1..8)')
        count = int(f.count) if int(f.count) > 0 else 1
        base = POINTFIELD_DTYPES[code].newbyteorder(order)
        fmt = base if count == 1 else np.dtype((base, (count,)))
        end = int(f.offset) + fmt.itemsize
        if end > point_step:
            raise ValueError(f'PointCloud2 field {f.name!r}: offset {f.offset} + size {fmt.itemsize} '
                             f'exceeds point_step {point_step}')
        if f.name in names:
            raise ValueError(f'PointCloud2 field {f.name!r} appears twice')
        names.append(f.name)
        formats.append(fmt)
        offsets.append(int(f.offset))
    if point_step <= 0:
        raise ValueError(f'PointCloud2 point_step must be positive, got {point_step}')
    return np.dtype({'names': names, 'formats': formats, 'offsets': offsets, 'itemsize': point_step})


def _as_bytes_view(data) -> np.ndarray:
    """Zero-copy uint8 view of message data (array.array, bytes, numpy, list)."""
    if isinstance(data, np.ndarray):
        return data.view(np.uint8).reshape(-1)
    if isinstance(data, list):  # generic fallback: a list of ints
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def cloud_to_structured(msg) -> np.ndarray:
    """PointCloud2-like -> (height * width,) structured array (a view on the data when possible).

    Raises ValueError for an inconsistent point_step / row_step / data length.
    """
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    dtype = cloud_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    raw = _as_bytes_view(msg.data)
    if row_step < width * point_step:
        raise ValueError(f'PointCloud2 row_step {row_step} < width {width} * point_step {point_step}')
    need = height * row_step
    if raw.size < need:
        raise ValueError(f'PointCloud2 data truncated: {raw.size} bytes, expected height {height} * '
                         f'row_step {row_step} = {need}')
    if height * width == 0:
        return np.zeros(0, dtype=dtype)
    if row_step == width * point_step:
        return np.frombuffer(raw[:need], dtype=dtype)
    # Row padding: view rows, cut each to width * point_step bytes, then reinterpret.
    rows = raw[:need].reshape(height, row_step)[:, :width * point_step]
    return np.ascontiguousarray(rows).view(dtype).reshape(-1)


def cloud_to_xyzi(msg, drop_nonfinite: bool = True, extra_fields: tuple[str, ...] | None = ()) -> DecodedCloud:
    """PointCloud2-like -> DecodedCloud(points (N, 4) float32, extras, n_dropped).

    A missing ``intensity`` field gives zeros. extra_fields: names to return besides x, y, z,
    intensity (None = every other field). drop_nonfinite: drop rows whose x, y or z is NaN/inf
    and report the count. Raises ValueError when x, y or z is missing or the layout is bad.
    """
    arr = cloud_to_structured(msg)
    names = arr.dtype.names or ()
    missing = [n for n in ('x', 'y', 'z') if n not in names]
    if missing:
        raise ValueError(f'PointCloud2 lacks field(s) {missing}; has {list(names)}')
    n = arr.shape[0]
    if _is_packed_xyzi_f32(arr.dtype):
        # Fast path: x, y, z, intensity are the first 16 bytes as native float32: one strided copy.
        step = arr.dtype.itemsize
        if n == 0:
            points = np.zeros((0, 4), np.float32)
        elif step % 4 == 0:
            points = arr.view(np.float32).reshape(n, step // 4)[:, :4].copy()
        else:
            points = arr.view(np.uint8).reshape(n, step)[:, :16].copy().view(np.float32)
    else:
        points = np.empty((n, 4), dtype=np.float32)
        for i, name in enumerate(XYZI):
            if name in names:
                points[:, i] = arr[name] if arr.dtype[name].shape == () else arr[name][:, 0]
            else:
                points[:, i] = 0.0
    if extra_fields is None:
        wanted = [nm for nm in names if nm not in XYZI]
    else:
        absent = [nm for nm in extra_fields if nm not in names]
        if absent:
            raise ValueError(f'PointCloud2 lacks requested extra field(s) {absent}; has {list(names)}')
        wanted = list(extra_fields)
    extras = {nm: arr[nm].astype(arr.dtype[nm].base.newbyteorder('='), copy=True) for nm in wanted}
    n_dropped = 0
    if drop_nonfinite and not np.isfinite(points).all():  # cheap contiguous test first (exact per-row test below)
        ok = np.isfinite(points[:, :3]).all(axis=1)
        n_dropped = int(n - ok.sum())
        if n_dropped:
            points = points[ok]
            extras = {k: v[ok] for k, v in extras.items()}
    return DecodedCloud(points=points, extras=extras, n_dropped=n_dropped)


def _is_packed_xyzi_f32(dtype: np.dtype) -> bool:
    f32 = np.dtype(np.float32)
    for name, offset in zip(XYZI, (0, 4, 8, 12)):
        if name not in (dtype.names or ()):
            return False
        dt, off = dtype.fields[name][:2]
        if off != offset or dt != f32:  # dt != f32 also for a foreign byte order
            return False
    return True


def xyzi_to_cloud_fields(points: np.ndarray, extras: dict[str, np.ndarray] | None = None,
                         is_bigendian: bool = False) -> CloudFields:
    """points: (N, 3) or (N, 4) float -> CloudFields with x, y, z, intensity float32 + extras.

    extras: name -> (N,) array of any PointField-compatible dtype (e.g. ``label`` uint16,
    ``rgb`` float32 from :func:`pack_rgb_float`). The cloud is unorganized (height 1).
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] not in (3, 4):
        raise ValueError(f'points must be (N, 3) or (N, 4), got shape {points.shape}')
    n = points.shape[0]
    extras = dict(extras or {})
    order = '>' if is_bigendian else '<'
    names, formats, specs = [], [], []
    offset = 0
    for name in XYZI:
        names.append(name)
        formats.append(np.dtype(np.float32).newbyteorder(order))
        specs.append(PointFieldSpec(name, offset, 7, 1))
        offset += 4
    for name, values in extras.items():
        values = np.asarray(values)
        if values.shape[0] != n or values.ndim != 1:
            raise ValueError(f'extra field {name!r}: expected shape ({n},), got {values.shape}')
        base = values.dtype.newbyteorder('=')
        if base not in DTYPE_TO_POINTFIELD:
            raise ValueError(f'extra field {name!r}: dtype {values.dtype} has no PointField datatype')
        if name in names:
            raise ValueError(f'extra field {name!r} clashes with x, y, z, intensity')
        size = base.itemsize
        offset = (offset + size - 1) // size * size  # natural alignment
        names.append(name)
        formats.append(base.newbyteorder(order))
        specs.append(PointFieldSpec(name, offset, DTYPE_TO_POINTFIELD[base], 1))
        offset += size
    point_step = (offset + 3) // 4 * 4
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': [s.offset for s in specs],
                      'itemsize': point_step})
    arr = np.zeros(n, dtype=dtype)
    arr['x'], arr['y'], arr['z'] = points[:, 0], points[:, 1], points[:, 2]
    if points.shape[1] == 4:
        arr['intensity'] = points[:, 3]
    for name, values in extras.items():
        arr[name] = values
    dense = bool(np.isfinite(points[:, :3]).all())
    return CloudFields(fields=specs, height=1, width=n, point_step=point_step, row_step=point_step * n,
                       data=arr.tobytes(), is_bigendian=is_bigendian, is_dense=dense)


def pack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """rgb: (N, 3) uint8 -> (N,) float32 whose bits are 0x00RRGGBB (the PCL/RViz ``rgb`` field)."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    if rgb.ndim != 2 or rgb.shape[1] != 3:
        raise ValueError(f'rgb must be (N, 3) uint8, got shape {rgb.shape}')
    packed = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2].astype(np.uint32)
    return packed.view(np.float32)


def unpack_rgb_float(rgb_float: np.ndarray) -> np.ndarray:
    """(N,) float32 packed rgb -> (N, 3) uint8."""
    u = np.asarray(rgb_float, dtype=np.float32).view(np.uint32)
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=1).astype(np.uint8)
