"""Optional C++ kernels for the two conversions that numpy cannot do in one memory pass.

* ``bgr_to_rgb``: 3-byte pixels reversed in place of 3 byte-strided numpy copies (16-byte shuffles);
* ``xyzi_f32``: x, y, z (+ intensity) of every point copied into an (N, 4) float32 array and tested for
  finiteness in the same pass (numpy needs a copy and a second reading pass).

Built by :mod:`ros_ncal.nativelib` at first use (or ahead of time with ``python -m ros_ncal.nativelib``);
when unavailable the codecs keep their numpy paths, with the same results.
"""
from __future__ import annotations

import ctypes
from typing import Optional

import numpy as np

from ros_ncal.nativelib import NativeLibrary

SOURCE = r'''
#include <cstdint>
#include <cstring>

typedef uint8_t u8x16 __attribute__((vector_size(16)));
typedef uint32_t u32x4 __attribute__((vector_size(16)));

extern "C" {
int ncal_codec_abi_version() { return 1; }

// src rows of w 3-byte pixels (row stride src_step bytes) -> dst (h, w, 3) contiguous with bytes 0 and 2
// of every pixel swapped. Five pixels per 16-byte shuffle; the 16th byte written is rewritten by the next.
void ncal_bgr_to_rgb(const uint8_t* src, int64_t h, int64_t w, int64_t src_step, uint8_t* dst) {
  const u8x16 mask = {2, 1, 0, 5, 4, 3, 8, 7, 6, 11, 10, 9, 14, 13, 12, 15};
  for (int64_t r = 0; r < h; ++r) {
    const uint8_t* s = src + r * src_step;
    uint8_t* d = dst + r * w * 3;
    int64_t p = 0;
    for (; p + 6 <= w; p += 5) {
      u8x16 v;
      std::memcpy(&v, s + 3 * p, 16);
      v = __builtin_shuffle(v, mask);
      std::memcpy(d + 3 * p, &v, 16);
    }
    for (; p < w; ++p) {
      d[3 * p] = s[3 * p + 2]; d[3 * p + 1] = s[3 * p + 1]; d[3 * p + 2] = s[3 * p];
    }
  }
}

}  // extern "C"

// n points of step bytes: native float32 x, y, z at oxyz (+4, +8); intensity float32 at oi (or oi < 0: 0).
// Writes dst (n, 4) and returns 1 when every value written is finite (no exponent field all ones).
template <bool WIDE, bool WHOLE, bool HAS_I>
static int xyzi_impl(const uint8_t* src, int64_t n, int64_t step, int64_t oxyz, int64_t oi, float* dst) {
  const u32x4 expo = {0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u};
  u32x4 bad = {0, 0, 0, 0};
  for (int64_t p = 0; p < n; ++p) {
    const uint8_t* s = src + p * step;
    u32x4 v = {0, 0, 0, 0};
    if (WIDE) std::memcpy(&v, s + oxyz, 16); else std::memcpy(&v, s + oxyz, 12);
    if (!WHOLE) {
      uint32_t i = 0;
      if (HAS_I) std::memcpy(&i, s + oi, 4);
      v[3] = i;
    }
    std::memcpy(dst + 4 * p, &v, 16);
    bad |= (u32x4)((v & expo) == expo);
  }
  return (bad[0] | bad[1] | bad[2] | bad[3]) ? 0 : 1;
}

extern "C" int ncal_xyzi_f32(const uint8_t* src, int64_t n, int64_t step, int64_t oxyz, int64_t oi,
                             float* dst) {
  const bool wide = oxyz + 16 <= step, whole = oi == oxyz + 12, has_i = oi >= 0;
  if (whole && step == 16 && oxyz == 0) {  // packed x y z intensity: a flat copy (vectorized by the compiler)
    const int64_t m = 4 * n;
    uint32_t bad = 0;
    for (int64_t k = 0; k < m; ++k) {
      uint32_t v;
      std::memcpy(&v, src + 4 * k, 4);
      std::memcpy(dst + k, &v, 4);
      bad |= (v & 0x7f800000u) == 0x7f800000u;
    }
    return bad ? 0 : 1;
  }
  if (whole) return xyzi_impl<true, true, true>(src, n, step, oxyz, oi, dst);
  if (wide) return has_i ? xyzi_impl<true, false, true>(src, n, step, oxyz, oi, dst)
                         : xyzi_impl<true, false, false>(src, n, step, oxyz, oi, dst);
  return has_i ? xyzi_impl<false, false, true>(src, n, step, oxyz, oi, dst)
               : xyzi_impl<false, false, false>(src, n, step, oxyz, oi, dst);
}
'''


def _setup(lib) -> None:
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.ncal_bgr_to_rgb.argtypes = [ptr, i64, i64, i64, ptr]
    lib.ncal_bgr_to_rgb.restype = None
    lib.ncal_xyzi_f32.argtypes = [ptr, i64, i64, i64, i64, ptr]
    lib.ncal_xyzi_f32.restype = ctypes.c_int


LIBRARY = NativeLibrary('ncal_codec', SOURCE, 1, _setup, disable_env='NCAL_CODEC_NATIVE')


def _address(buf: np.ndarray) -> int:
    return buf.__array_interface__['data'][0]


def bgr_to_rgb(arr: np.ndarray) -> Optional[np.ndarray]:
    """arr: (H, W, 3) uint8 with strides (row, 3, 1) (a view on message data is fine) -> (H, W, 3) with the
    channel order reversed, or None when the kernels are unavailable or the layout differs."""
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or arr.strides[1:] != (3, 1) \
            or arr.strides[0] < 3 * arr.shape[1]:
        return None
    lib = LIBRARY.load()
    if lib is None:
        return None
    h, w = arr.shape[:2]
    out = np.empty((h, w, 3), np.uint8)
    if h and w:
        lib.ncal_bgr_to_rgb(_address(arr), h, w, arr.strides[0], _address(out))
    return out


def xyzi_f32(raw: np.ndarray, n: int, step: int, oxyz: int, oi: int) -> Optional[tuple]:
    """raw: contiguous uint8 of n points of step bytes -> ((n, 4) float32, all_finite), or None when the
    kernels are unavailable."""
    lib = LIBRARY.load()
    if lib is None or not raw.flags['C_CONTIGUOUS'] or raw.size < n * step:
        return None
    out = np.empty((n, 4), np.float32)
    ok = lib.ncal_xyzi_f32(_address(raw), n, step, oxyz, oi, _address(out))
    return out, bool(ok)
