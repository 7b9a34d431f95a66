"""Camera message -> RGB: ros_ncal.msgcodec against cv_bridge, per encoding, on the same rclpy messages.

    .venv/bin/python bench/bench_image_decode.py [--repeats 100] [--image ../shared/data/kitti_object/training/image_2/000001.png]

The real KITTI image (1242x375) in every raw encoding the nodes accept, with and without row padding (2 bytes per
row: what a driver aligning rows to 4 bytes adds to a 1242-pixel bgr8 row), plus Bayer / YUV encodings only
cv_bridge knows and JPEG / PNG CompressedImages. For each: median ms of msgcodec and of
``CvBridge.imgmsg_to_cv2(msg, 'rgb8')`` (``compressed_imgmsg_to_cv2``), interleaved; whether the two agree (max
abs difference); what the nodes use (``ros_ncal/ros/image_decode.py``, which this table is the evidence for).
Needs cv_bridge (``NCAL_CV_BRIDGE=1 bash scripts/setup.sh``); without it only says so.
"""
from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import numpy as np
from _timing import interleaved


def ms(fns: dict, repeats: int) -> dict:
    """name -> median milliseconds (bench/_timing.interleaved)."""
    return {k: 1e3 * v for k, v in interleaved(fns, repeats).items()}


REPO = Path(__file__).resolve().parents[1]


def raw_cases(rgb: np.ndarray):
    """(label, encoding, array in that encoding, row padding bytes)."""
    H, W = rgb.shape[:2]
    g = rgb[:, :, 1]
    alpha = np.full((H, W), 255, np.uint8)
    bayer = np.empty((H, W), np.uint8)                      # RGGB mosaic of the image
    bayer[0::2, 0::2], bayer[0::2, 1::2] = rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1]
    bayer[1::2, 0::2], bayer[1::2, 1::2] = rgb[1::2, 0::2, 1], rgb[1::2, 1::2, 2]
    yuv = np.stack([g, np.full((H, W), 128, np.uint8)], axis=2)  # YUYV with neutral chroma
    return [('rgb8', 'rgb8', rgb, 0), ('rgb8, rows padded by 2 bytes', 'rgb8', rgb, 2),
            ('bgr8', 'bgr8', rgb[:, :, ::-1], 0), ('bgr8, rows padded by 2 bytes', 'bgr8', rgb[:, :, ::-1], 2),
            ('rgba8', 'rgba8', np.dstack([rgb, alpha]), 0), ('bgra8', 'bgra8', np.dstack([rgb[:, :, ::-1], alpha]), 0),
            ('mono8', 'mono8', g, 0), ('8UC1', '8UC1', g, 0), ('mono16', 'mono16', g.astype(np.uint16) * 250 + 7, 0),
            ('32FC1', '32FC1', g.astype(np.float32) / 10, 0),
            ('bayer_rggb8', 'bayer_rggb8', bayer, 0), ('yuv422_yuy2', 'yuv422_yuy2', yuv, 0)]


def image_msg(arr: np.ndarray, encoding: str, pad: int):
    from sensor_msgs.msg import Image

    from ros_ncal.msgcodec import IMAGE_ENCODINGS, array_to_image_fields
    if encoding in IMAGE_ENCODINGS:
        f = array_to_image_fields(arr, encoding, row_padding=pad)
        return Image(height=f.height, width=f.width, encoding=encoding, is_bigendian=0, step=f.step, data=f.data)
    rows = np.ascontiguousarray(arr).reshape(arr.shape[0], -1)
    return Image(height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=0, step=rows.shape[1],
                 data=rows.tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=100)
    ap.add_argument('--image', type=Path,
                    default=REPO.parent / 'shared' / 'data' / 'kitti_object' / 'training' / 'image_2' / '000001.png')
    a = ap.parse_args()
    from sensor_msgs.msg import CompressedImage

    from ros_ncal.data.kitti_files import read_image_rgb
    from ros_ncal.msgcodec import IMAGE_ENCODINGS, compressed_to_rgb, image_to_rgb
    from ros_ncal.ros.image_decode import ImageDecoder, load_cv_bridge
    bridge, why = load_cv_bridge()
    if bridge is None:
        print(f'{why}: nothing to compare (NCAL_CV_BRIDGE=1 bash scripts/setup.sh builds it)')
        return
    nodes = ImageDecoder()
    rgb = read_image_rgb(a.image)
    print(f'load average {os.getloadavg()[0]:.1f}; {rgb.shape[1]}x{rgb.shape[0]} image; medians of {a.repeats} '
          'interleaved rounds')
    print('| message | msgcodec | cv_bridge | agree | the nodes use |')
    print('|---|---|---|---|---|')

    def row(label, ours, theirs, ref):
        fns, out = {}, {}
        for name, fn in (('ours', ours), ('cvb', theirs)):
            try:
                out[name] = fn()
                fns[name] = fn
            except Exception as exc:  # noqa: BLE001 - report what the tool says
                out[name] = f'{type(exc).__name__}: {str(exc).split(".")[0][:60]}'
        t = ms(fns, a.repeats)
        cells = []
        for name in ('ours', 'cvb'):
            cells.append(f'{t[name]:.3f} ms' if name in t else f'refused ({out[name]})')
        if all(isinstance(out[n], np.ndarray) for n in ('ours', 'cvb')):
            d = np.abs(out['ours'].astype(np.int32) - out['cvb'].astype(np.int32)).max()
            agree = 'same pixels' if d == 0 else f'differ (max {d})'
        else:
            agree = '-'
        used = nodes.used.copy()
        got = ref()
        tool = [k for k in nodes.used if nodes.used[k] != used.get(k, 0)][0]
        assert np.array_equal(got, out['ours' if tool == 'msgcodec' else 'cvb'])
        print(f'| {label} | {cells[0]} | {cells[1]} | {agree} | {tool} |')

    for label, enc, arr, pad in raw_cases(rgb):
        msg = image_msg(arr, enc, pad)
        ours = (lambda m=msg: image_to_rgb(m)) if enc in IMAGE_ENCODINGS else \
            (lambda m=msg: (_ for _ in ()).throw(ValueError(f'encoding {m.encoding} not supported')))
        row(label, ours, lambda m=msg: bridge.imgmsg_to_cv2(m, 'rgb8'), lambda m=msg: nodes.to_rgb(m))
    from PIL import Image as PILImage
    for fmt in ('jpeg', 'png'):
        buf = io.BytesIO()
        PILImage.fromarray(rgb).save(buf, format=fmt.upper())
        msg = CompressedImage(format=fmt, data=buf.getvalue())
        row(f'CompressedImage {fmt} ({len(buf.getvalue()) / 1e3:.0f} kB)', lambda m=msg: compressed_to_rgb(m.data, m.format),
            lambda m=msg: bridge.compressed_imgmsg_to_cv2(m, 'rgb8'), lambda m=msg: nodes.compressed_to_rgb(m))


if __name__ == '__main__':
    main()
