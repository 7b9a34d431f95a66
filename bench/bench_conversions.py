"""Throughput of msgcodec conversions vs a plain memcpy of the same bytes, measured in the same run.

    .venv/bin/python bench/bench_conversions.py [--repeats 50]

PointCloud2 (120k points) -> (N, 4) float32 for two layouts (packed x y z intensity, point_step 16;
a driver-style padded layout with ring and time, point_step 32), and a 1242x375 bgr8 Image -> RGB.
The baseline copies the message's data buffer into a preallocated array (np.copyto) and as
bytes(). Prints median times and the ratio conversion / memcpy.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ros_ncal.bag import rosbags_msgs as rm
from ros_ncal.msgcodec import POINTFIELD_DTYPES, array_to_image_fields, cloud_to_xyzi, image_to_rgb


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def make_cloud(n: int, padded: bool, rng):
    ts = rm.typestore()
    PF = ts.types['sensor_msgs/msg/PointField']
    if padded:
        dt = np.dtype({'names': ['x', 'y', 'z', 'intensity', 'ring', 'time'],
                       'formats': ['<f4', '<f4', '<f4', '<f4', '<u2', '<f4'],
                       'offsets': [0, 4, 8, 16, 20, 24], 'itemsize': 32})
    else:
        dt = np.dtype({'names': ['x', 'y', 'z', 'intensity'], 'formats': ['<f4'] * 4, 'offsets': [0, 4, 8, 12],
                       'itemsize': 16})
    arr = np.zeros(n, dt)
    for k in ('x', 'y', 'z', 'intensity'):
        arr[k] = rng.normal(size=n)
    inv = {v: k for k, v in POINTFIELD_DTYPES.items()}
    fields = [PF(name=nm, offset=dt.fields[nm][1], datatype=inv[dt.fields[nm][0].newbyteorder('=')], count=1)
              for nm in dt.names]
    return ts.types['sensor_msgs/msg/PointCloud2'](
        header=rm.header('l', 0), height=1, width=n, fields=fields, is_bigendian=False, point_step=dt.itemsize,
        row_step=dt.itemsize * n, data=np.frombuffer(arr.tobytes(), np.uint8), is_dense=True)


def memcpy_baselines(data: np.ndarray, repeats: int) -> tuple[float, float]:
    dst = np.empty_like(data)
    return (median_time(lambda: np.copyto(dst, data), repeats), median_time(lambda: bytes(data), repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=50)
    ap.add_argument('--points', type=int, default=120_000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f'{"case":<44} {"MB":>6} {"conv ms":>8} {"copyto ms":>9} {"bytes ms":>8} {"conv/copyto":>11}')
    for padded in (False, True):
        msg = make_cloud(a.points, padded, rng)
        t_conv = median_time(lambda: cloud_to_xyzi(msg), a.repeats)
        t_copy, t_bytes = memcpy_baselines(msg.data, a.repeats)
        name = f'PointCloud2 {a.points // 1000}k pts step {msg.point_step} -> (N,4) f32'
        print(f'{name:<44} {msg.data.nbytes / 1e6:6.2f} {t_conv * 1e3:8.3f} {t_copy * 1e3:9.3f} {t_bytes * 1e3:8.3f} '
              f'{t_conv / t_copy:11.1f}')
    img = rng.integers(0, 255, (375, 1242, 3), dtype=np.uint8)
    f = array_to_image_fields(img, 'bgr8')
    ts = rm.typestore()
    msg = ts.types['sensor_msgs/msg/Image'](header=rm.header('c', 0), height=f.height, width=f.width, encoding='bgr8',
                                            is_bigendian=False, step=f.step, data=np.frombuffer(f.data, np.uint8))
    t_conv = median_time(lambda: image_to_rgb(msg), a.repeats)
    t_copy, t_bytes = memcpy_baselines(msg.data, a.repeats)
    name = 'Image 1242x375 bgr8 -> RGB uint8'
    print(f'{name:<44} {msg.data.nbytes / 1e6:6.2f} {t_conv * 1e3:8.3f} {t_copy * 1e3:9.3f} {t_bytes * 1e3:8.3f} '
          f'{t_conv / t_copy:11.1f}')


if __name__ == '__main__':
    main()
