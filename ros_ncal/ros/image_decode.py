"""Camera messages -> (H, W, 3) uint8 RGB for the nodes: :mod:`ros_ncal.msgcodec`, and cv_bridge where installed.

Who decodes what was measured (``bench/bench_image_decode.py``, docs/ros.md "cv_bridge in the nodes"):

* rgb8, bgr8 (what camera drivers publish), 8UC1, mono16, 16UC1, 32FC1: msgcodec. On rgb8 and bgr8 it is faster
  (rgb8 a view, bgr8 about 2x), and cv_bridge mis-decodes rows padded by a byte count that is not a multiple of the
  pixel size (it takes ``step // pixel size`` pixels per row); cv_bridge refuses 8UC1 / 16UC1 / 32FC1 -> rgb8 and
  rounds mono16 differently (off by one grey level, so the output would depend on the install).
* rgba8, bgra8, mono8: cv_bridge where installed (the same pixels, 2-7x faster than msgcodec's numpy paths),
  msgcodec otherwise. Row padding is removed before cv_bridge sees the image.
* raw Image in a colour encoding only cv_bridge knows (Bayer 8 / 16 bit, yuv422, yuv422_yuy2, rgb16, bgr16,
  rgba16, bgra16): cv_bridge (OpenCV demosaicing and YUV conversion). Without cv_bridge such images are dropped
  (``image_encoding``), and the reason says cv_bridge would take them.
* CompressedImage: cv_bridge (``cv2.imdecode``: the same pixels, faster than PIL on JPEG and PNG); where it fails or
  gives no 8-bit colour image (a 16-bit PNG), msgcodec (PIL) decodes it or names the problem.
"""
from __future__ import annotations

import threading
from collections import Counter
from types import SimpleNamespace

import numpy as np

from ros_ncal.msgcodec import IMAGE_ENCODINGS, array_to_rgb, compressed_to_rgb, image_to_array

# Colour encodings cv_bridge converts to rgb8 and msgcodec does not know (checked in test_upstream_ros_packages.py).
CV_BRIDGE_ENCODINGS = frozenset(
    [f'bayer_{p}{bits}' for p in ('rggb', 'bggr', 'gbrg', 'grbg') for bits in (8, 16)]
    + ['yuv422', 'yuv422_yuy2', 'rgb16', 'bgr16', 'rgba16', 'bgra16'])
# Encodings both know, where cv_bridge gave the same pixels faster (bench/bench_image_decode.py).
CV_BRIDGE_FASTER = frozenset({'rgba8', 'bgra8', 'mono8'})


class UnsupportedEncodingError(ValueError):
    """The image's encoding is one this decoder cannot turn into RGB."""


def load_cv_bridge():
    """(a CvBridge, '') or (None, why not) - cv_bridge is optional (built with NCAL_CV_BRIDGE=1 or a ROS distro's)."""
    try:
        from cv_bridge import CvBridge
        return CvBridge(), ''
    except Exception as exc:  # noqa: BLE001 - ImportError, or a native library that does not load
        return None, f'cv_bridge not importable ({type(exc).__name__}: {exc})'


class ImageDecoder:
    """Image / CompressedImage -> (H, W, 3) uint8 RGB; ``used`` counts the decodes per tool (thread-safe)."""

    def __init__(self, use_cv_bridge: bool = True):
        if use_cv_bridge:
            self.bridge, self.why_no_bridge = load_cv_bridge()
        else:
            self.bridge, self.why_no_bridge = None, 'cv_bridge not used (use_cv_bridge=False)'
        self.encodings = frozenset(IMAGE_ENCODINGS) | (CV_BRIDGE_ENCODINGS if self.bridge is not None else frozenset())
        self.used: Counter = Counter()
        self._lock = threading.Lock()

    def _count(self, tool: str) -> None:
        with self._lock:
            self.used[tool] += 1

    # -- raw images
    def check(self, msg) -> None:
        """Raise UnsupportedEncodingError or ValueError (size, step, data length) without decoding."""
        enc = str(msg.encoding)
        if enc in IMAGE_ENCODINGS:
            if int(msg.width) <= 0 or int(msg.height) <= 0:
                raise ValueError(f'Image size {msg.width}x{msg.height}')
            image_to_array(msg)      # a view: step and length checks only
            return
        self._unpadded(msg)

    def tool_for(self, encoding: str) -> str:
        """'cv_bridge' or 'msgcodec': which one decodes a raw Image of this encoding here."""
        if self.bridge is not None and (encoding in CV_BRIDGE_ENCODINGS or encoding in CV_BRIDGE_FASTER):
            return 'cv_bridge'
        return 'msgcodec'

    def to_rgb(self, msg) -> np.ndarray:
        enc = str(msg.encoding)
        if self.tool_for(enc) == 'msgcodec':
            if enc not in IMAGE_ENCODINGS:
                self._unpadded(msg)          # raises UnsupportedEncodingError naming what would take it
            self._count('msgcodec')
            return array_to_rgb(image_to_array(msg), enc)
        view = self._unpadded(msg)
        try:
            rgb = self.bridge.imgmsg_to_cv2(view, desired_encoding='rgb8')
        except Exception as exc:  # noqa: BLE001 - CvBridgeError, or OpenCV's own (odd width for yuv422, ...)
            raise ValueError(f'cv_bridge cannot convert this {enc} image: {type(exc).__name__}: {exc}') from None
        self._count('cv_bridge')
        return rgb

    def _unpadded(self, msg):
        """The message, or an equivalent one without row padding (cv_bridge assumes step is whole pixels)."""
        enc = str(msg.encoding)
        if enc not in self.encodings:
            extra = '' if self.bridge is not None else (f'; {", ".join(sorted(CV_BRIDGE_ENCODINGS))} need cv_bridge '
                                                        f'({self.why_no_bridge})')
            raise UnsupportedEncodingError(f'Image encoding {enc!r} is not supported; supported: '
                                           f'{sorted(self.encodings)}{extra}')
        dtype, channels = self.bridge.encoding_to_dtype_with_channels(enc)
        h, w, step = int(msg.height), int(msg.width), int(msg.step)
        if h <= 0 or w <= 0:
            raise ValueError(f'Image size {w}x{h}')
        row = w * int(channels) * np.dtype(dtype).itemsize
        if step < row:
            raise ValueError(f'Image step {step} is smaller than width {w} * {channels} channel(s) * '
                             f'{np.dtype(dtype).itemsize} byte(s) = {row} for encoding {enc!r}')
        data = msg.data
        raw = data.view(np.uint8).reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
        if raw.size < h * step:
            raise ValueError(f'Image data has {raw.size} bytes, expected height {h} * step {step} = {h * step}')
        if step == row:
            return msg
        rows = np.ascontiguousarray(raw[:h * step].reshape(h, step)[:, :row])
        return SimpleNamespace(height=h, width=w, encoding=enc, is_bigendian=msg.is_bigendian, step=row, data=rows)

    # -- compressed images
    def compressed_to_rgb(self, msg) -> np.ndarray:
        fmt = str(getattr(msg, 'format', '') or '')
        if self.bridge is not None and 'compressedDepth' not in fmt and len(msg.data):
            try:
                rgb = self.bridge.compressed_imgmsg_to_cv2(msg, desired_encoding='rgb8')
            except Exception:  # noqa: BLE001 - undecodable bytes: msgcodec below says why
                rgb = None
            if rgb is not None and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3:
                self._count('cv_bridge')
                return rgb
        self._count('msgcodec')
        return compressed_to_rgb(msg.data, fmt)
