"""Throughput of msgcodec conversions vs a plain memcpy of the same bytes, measured in the same run.

    .venv/bin/python bench/bench_conversions.py [--repeats 200]

PointCloud2 (120k points) -> (N, 4) float32 for two layouts (packed x y z intensity, point_step 16;
a driver-style padded layout x y z _ intensity ring time, point_step 32), and a 1242x375 bgr8 Image -> RGB.
The baseline copies the message's data buffer into a preallocated array (np.copyto) and as bytes().
Repetitions are interleaved (every method once per round) so load changes on a shared machine hit all
columns alike; medians are printed with the ratio conversion / memcpy.

Where they import, the ROS tools run on the same data in the same rounds (columns are left out otherwise,
and the output says so): sensor_msgs_py.point_cloud2.read_points_numpy (x, y, z, intensity, skip_nans) and
cv_bridge's imgmsg_to_cv2(desired_encoding='rgb8'), both on rclpy messages holding the same bytes.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
from _timing import interleaved

from ros_ncal.bag import rosbags_msgs as rm
from ros_ncal.msgcodec import POINTFIELD_DTYPES, array_to_image_fields, cloud_to_xyzi, image_to_rgb


def cloud_dtype_of(padded: bool) -> np.dtype:
    if padded:
        return np.dtype({'names': ['x', 'y', 'z', 'intensity', 'ring', 'time'],
                         'formats': ['<f4', '<f4', '<f4', '<f4', '<u2', '<f4'],
                         'offsets': [0, 4, 8, 16, 20, 24], 'itemsize': 32})
    return np.dtype({'names': ['x', 'y', 'z', 'intensity'], 'formats': ['<f4'] * 4, 'offsets': [0, 4, 8, 12],
                     'itemsize': 16})


def make_cloud(n: int, padded: bool, rng):
    ts = rm.typestore()
    PF = ts.types['sensor_msgs/msg/PointField']
    dt = cloud_dtype_of(padded)
    arr = np.zeros(n, dt)
    for k in ('x', 'y', 'z', 'intensity'):
        arr[k] = rng.normal(size=n)
    inv = {v: k for k, v in POINTFIELD_DTYPES.items()}
    fields = [PF(name=nm, offset=dt.fields[nm][1], datatype=inv[dt.fields[nm][0].newbyteorder('=')], count=1)
              for nm in dt.names]
    return ts.types['sensor_msgs/msg/PointCloud2'](
        header=rm.header('l', 0), height=1, width=n, fields=fields, is_bigendian=False, point_step=dt.itemsize,
        row_step=dt.itemsize * n, data=np.frombuffer(arr.tobytes(), np.uint8), is_dense=True)


def rclpy_cloud(bag_msg):
    """The same cloud as an rclpy sensor_msgs/PointCloud2 (None when sensor_msgs is not importable)."""
    try:
        from sensor_msgs.msg import PointCloud2, PointField
    except ImportError:
        return None
    msg = PointCloud2()
    msg.height, msg.width = bag_msg.height, bag_msg.width
    msg.fields = [PointField(name=f.name, offset=f.offset, datatype=f.datatype, count=f.count) for f in bag_msg.fields]
    msg.is_bigendian, msg.point_step, msg.row_step = False, bag_msg.point_step, bag_msg.row_step
    msg.data = bag_msg.data.tobytes()
    msg.is_dense = True
    return msg


def rclpy_image(bag_msg):
    try:
        from sensor_msgs.msg import Image
    except ImportError:
        return None
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.step = bag_msg.height, bag_msg.width, bag_msg.encoding, bag_msg.step
    msg.is_bigendian = 0
    msg.data = bag_msg.data.tobytes()
    return msg


def optional_tools():
    """(read_points_numpy or None, CvBridge() or None, notes)."""
    notes = []
    try:
        from sensor_msgs_py.point_cloud2 import read_points_numpy
    except ImportError as exc:
        read_points_numpy = None
        notes.append(f'sensor_msgs_py: not importable here ({exc}); its column is left out')
    try:
        from cv_bridge import CvBridge
        bridge = CvBridge()
    except ImportError as exc:
        bridge = None
        notes.append(f'cv_bridge: not importable here ({exc}); its column is left out')
    return read_points_numpy, bridge, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=200)
    ap.add_argument('--points', type=int, default=120_000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    read_points_numpy, bridge, notes = optional_tools()
    print(f'load average {os.getloadavg()[0]:.1f}; medians of {a.repeats} interleaved rounds')
    print('| case | MB | ours | memcpy (np.copyto) | bytes() | ours / memcpy | ROS tool | ROS tool / memcpy |')
    print('|---|---|---|---|---|---|---|---|')
    for padded in (False, True):
        msg = make_cloud(a.points, padded, rng)
        dst = np.empty_like(msg.data)
        fns = {'ours': lambda: cloud_to_xyzi(msg), 'copyto': lambda: np.copyto(dst, msg.data),
               'bytes': lambda: bytes(msg.data)}
        ros_msg = rclpy_cloud(msg) if read_points_numpy else None
        if ros_msg is not None:
            fns['ros'] = lambda: read_points_numpy(ros_msg, field_names=('x', 'y', 'z', 'intensity'), skip_nans=True)
            np.testing.assert_array_equal(fns['ros'](), cloud_to_xyzi(msg).points)
        t = interleaved(fns, a.repeats)
        name = f'PointCloud2 {a.points // 1000}k pts, point_step {msg.point_step} -> (N, 4) float32'
        ros = (f"read_points_numpy {t['ros'] * 1e3:.3f} ms | {t['ros'] / t['copyto']:.1f}x" if 'ros' in t
               else '- | -')
        print(f"| {name} | {msg.data.nbytes / 1e6:.2f} | {t['ours'] * 1e3:.3f} ms | {t['copyto'] * 1e3:.3f} ms | "
              f"{t['bytes'] * 1e3:.3f} ms | {t['ours'] / t['copyto']:.2f}x | {ros} |")
    img = rng.integers(0, 255, (375, 1242, 3), dtype=np.uint8)
    f = array_to_image_fields(img, 'bgr8')
    ts = rm.typestore()
    msg = ts.types['sensor_msgs/msg/Image'](header=rm.header('c', 0), height=f.height, width=f.width, encoding='bgr8',
                                            is_bigendian=False, step=f.step, data=np.frombuffer(f.data, np.uint8))
    dst = np.empty_like(msg.data)
    fns = {'ours': lambda: image_to_rgb(msg), 'copyto': lambda: np.copyto(dst, msg.data),
           'bytes': lambda: bytes(msg.data)}
    ros_img = rclpy_image(msg) if bridge is not None else None
    if ros_img is not None:
        fns['ros'] = lambda: bridge.imgmsg_to_cv2(ros_img, desired_encoding='rgb8')
        np.testing.assert_array_equal(fns['ros'](), image_to_rgb(msg))
    t = interleaved(fns, a.repeats)
    ros = f"cv_bridge {t['ros'] * 1e3:.3f} ms | {t['ros'] / t['copyto']:.1f}x" if 'ros' in t else '- | -'
    print(f"| Image 1242x375 bgr8 -> RGB uint8 | {msg.data.nbytes / 1e6:.2f} | {t['ours'] * 1e3:.3f} ms | "
          f"{t['copyto'] * 1e3:.3f} ms | {t['bytes'] * 1e3:.3f} ms | {t['ours'] / t['copyto']:.2f}x | {ros} |")
    for line in notes:
        print(line)


if __name__ == '__main__':
    main()
