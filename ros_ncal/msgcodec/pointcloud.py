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

from . import _native

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
    Cached per layout (a stream repeats one layout; building a dtype costs more than a small cloud's copy).
    """
    key = (tuple((str(f.name), int(f.offset), int(f.datatype), int(f.count)) for f in fields), int(point_step),
           bool(is_bigendian))
    dtype = _DTYPE_CACHE.get(key)
    if dtype is None:
        dtype = _build_cloud_dtype(key[0], key[1], key[2])
        if len(_DTYPE_CACHE) >= 256:
            _DTYPE_CACHE.clear()
        _DTYPE_CACHE[key] = dtype
    return dtype


_DTYPE_CACHE: dict[tuple, np.dtype] = {}


def _build_cloud_dtype(fields: tuple, point_step: int, is_bigendian: bool) -> np.dtype:
    names, formats, offsets = [], [], []
    order = '>' if is_bigendian else '<'
    for name, offset, code, count in fields:
        if code not in POINTFIELD_DTYPES:
            raise ValueError(f'PointCloud2 field {name!r}: unknown datatype code {code} (expected 1..8)')
        count = count if count > 0 else 1
        base = POINTFIELD_DTYPES[code].newbyteorder(order)
        fmt = base if count == 1 else np.dtype((base, (count,)))
        end = offset + fmt.itemsize
        if end > point_step:
            raise ValueError(f'PointCloud2 field {name!r}: offset {offset} + size {fmt.itemsize} '
                             f'exceeds point_step {point_step}')
        if name in names:
            raise ValueError(f'PointCloud2 field {name!r} appears twice')
        names.append(name)
        formats.append(fmt)
        offsets.append(offset)
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

    Speed (bench/bench_conversions.py): when x, y, z are consecutive native float32 (the usual driver
    layout, any point_step), the points come out of one strided copy of 12 or 16 bytes per point
    (plus one column copy when intensity is elsewhere), and the finiteness test is one dot product
    with zeros on the result (NaN * 0 and inf * 0 are NaN); the exact per-row test runs only when it
    fails.
    """
    arr = cloud_to_structured(msg)
    names = arr.dtype.names or ()
    missing = [n for n in ('x', 'y', 'z') if n not in names]
    if missing:
        raise ValueError(f'PointCloud2 lacks field(s) {missing}; has {list(names)}')
    n = arr.shape[0]
    xyz_offset = _xyz_f32_offset(arr.dtype)
    finite = None  # known from the native pass
    if xyz_offset is not None and n > 0:
        native = _native_xyzi(arr, xyz_offset)
        if native is not None:
            points, finite = native
        else:
            points = _copy_xyzi(arr, xyz_offset)
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
    if finite is None and drop_nonfinite and n:
        finite = _all_finite(points)
    if drop_nonfinite and n and not finite:  # cheap test first (exact per-row test below)
        ok = np.isfinite(points[:, :3]).all(axis=1)
        n_dropped = int(n - ok.sum())
        if n_dropped:
            points = points[ok]
            extras = {k: v[ok] for k, v in extras.items()}
    return DecodedCloud(points=points, extras=extras, n_dropped=n_dropped)


_F32 = np.dtype(np.float32)
_ZEROS = np.zeros(0, np.float32)


def _all_finite(points: np.ndarray) -> bool:
    """True when every value of the contiguous float32 array is finite: dot(values, 0) is exactly 0 then
    and NaN otherwise (NaN * 0 and inf * 0 are NaN): one vectorized pass, no temporary boolean array."""
    global _ZEROS
    flat = points.reshape(-1)
    if _ZEROS.size < flat.size:
        _ZEROS = np.zeros(flat.size, np.float32)
    with np.errstate(invalid='ignore'):
        return bool(np.dot(flat, _ZEROS[:flat.size]) == 0.0)


def _xyz_f32_offset(dtype: np.dtype) -> int | None:
    """Byte offset of x when x, y, z are scalar native float32 at offsets o, o + 4, o + 8; else None."""
    fields = dtype.fields
    x = fields['x']
    if x[0] != _F32:  # also unequal for a foreign byte order or a count > 1
        return None
    o = x[1]
    for name, off in (('y', o + 4), ('z', o + 8)):
        f = fields[name]
        if f[1] != off or f[0] != _F32:
            return None
    return o


def _native_xyzi(arr: np.ndarray, o: int):
    """((N, 4) float32, all finite) from the C++ kernel in one pass, or None (kernel unavailable, or an
    intensity that is not a native float32 scalar)."""
    inten = arr.dtype.fields.get('intensity')
    if inten is None:
        oi = -1
    elif inten[0] == _F32:
        oi = inten[1]
    else:
        return None
    return _native.xyzi_f32(arr.view(np.uint8), arr.shape[0], arr.dtype.itemsize, o, oi)


def _copy_xyzi(arr: np.ndarray, o: int) -> np.ndarray:
    """(N,) contiguous structured array (itemsize = point_step) with native float32 x, y, z at o, o+4, o+8
    -> (N, 4) float32. The 16 bytes from x are copied as one 16-byte item per point (numpy's strided copy
    is fast for 1, 2, 4, 8 and 16-byte items, slow for 12); the intensity column is then written on its
    own unless it was among those 16 bytes (native float32 at o + 12): converted, or zeros when absent."""
    n, step = arr.shape[0], arr.dtype.itemsize
    raw = arr.view(np.uint8)
    points = np.empty((n, 4), np.float32)
    inten = arr.dtype.fields.get('intensity')
    if o + 16 <= step:
        src = np.ndarray((n,), dtype='V16', buffer=raw, offset=o, strides=(step,))
        np.copyto(points.view('V16').reshape(n), src)
        if inten is not None and inten[1] == o + 12 and inten[0] == _F32:
            return points
    else:  # x, y, z end the point: x, y as one 8-byte item, then z
        src = np.ndarray((n,), dtype='V8', buffer=raw, offset=o, strides=(step,))
        np.copyto(np.ndarray((n,), dtype='V8', buffer=points, strides=(16,)), src)
        points[:, 2] = arr['z']
    if inten is None:
        points[:, 3] = 0.0
    else:
        points[:, 3] = arr['intensity'] if inten[0].shape == () else arr['intensity'][:, 0]
    return points


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
