"""Native CPU kernels for the torch engine: output-stationary sparse convolution in one OpenMP region per pass.

Why: the gather - matmul - ``index_add_`` loop runs about 3 x 27 parallel regions per layer and pass, and
``index_add_`` on CPU gets slower with more threads. Here every pass is one parallel region without atomics:

* forward / input gradient: rows of a CSR (pairs sorted by destination row); each destination row is
  ``sum_p src[col[p]] @ W[k[p]]``, computed by one thread in pair order, so the result is bitwise the same
  for any number of threads;
* weight gradient: one task per (kernel offset, block of output channels), each summing its pairs in a fixed
  order (also independent of the thread count).

The C++ source below has no PyTorch headers: it compiles in a few seconds with ``g++ -O3 -fopenmp`` into a
per-user cache at first use, or ahead of time with ``python -m ros_ncal.nativelib`` (see
:mod:`ros_ncal.nativelib`). It is called through ctypes (the GIL is released during the call) and runs on
PyTorch's own OpenMP runtime (libgomp is already loaded by torch), with ``torch.get_num_threads()``
threads. When no compiler is found, the build fails, or ``NCAL_SPARSE_NATIVE=0`` / ``NCAL_NATIVE=0`` is
set, :func:`available` is False and the engine uses its pure-PyTorch path.
Only float32 / float64 CPU tensors take this path; CUDA and other dtypes (autocast) use PyTorch ops.
"""
from __future__ import annotations

import ctypes
from typing import Optional

import torch

from ros_ncal.nativelib import NativeLibrary

SOURCE = r'''
#include <cstdint>
#include <algorithm>
#include <omp.h>

namespace {

// 32-byte SIMD vectors through GCC vector extensions (AVX2 with -march=native, two SSE halves otherwise);
// U is the unaligned, aliasing variant used for loads and stores.
template <typename T> struct V {
  typedef T v __attribute__((vector_size(32)));
  typedef T u __attribute__((vector_size(32), aligned(sizeof(T)), may_alias));
  static constexpr int N = 32 / sizeof(T);
};
template <typename T> inline typename V<T>::v ld(const T* p) { return *reinterpret_cast<const typename V<T>::u*>(p); }
template <typename T> inline void st(T* p, typename V<T>::v x) { *reinterpret_cast<typename V<T>::u*>(p) = x; }

// Random source rows are the latency bottleneck: prefetch the rows of the pairs PF ahead.
constexpr int64_t PF = 8;
template <typename T> inline void prefetch_row(const T* row, int64_t n) {
  const char* c = reinterpret_cast<const char*>(row);
  for (int64_t off = 0; off < n * (int64_t)sizeof(T); off += 64) __builtin_prefetch(c + off, 0, 3);
}

// out[r, :] = sum_{p in [rowptr[r], rowptr[r+1])} src[col[p], :] @ W[k[p]]   (W: K x cin x cout, row-major)
// Columns in blocks of 4 vectors (two accumulator sets over even / odd input channels), then single vectors,
// then scalars. Each row is summed by one thread in pair order: the same bits for any thread count.
template <typename T>
void conv_csr(const int64_t* rowptr, const int32_t* col, const int32_t* koff, const T* src, const T* W, T* out,
              int64_t n_rows, int64_t cin, int64_t cout, int nthreads) {
  typedef typename V<T>::v vec;
  constexpr int N = V<T>::N;
  const int64_t wstride = cin * cout;
  const int64_t n_pairs = rowptr[n_rows];
#pragma omp parallel for schedule(dynamic, 256) num_threads(nthreads)
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t p0 = rowptr[r], p1 = rowptr[r + 1];
    T* o = out + r * cout;
    for (int64_t p = p0; p < p1 && p < p0 + PF; ++p) prefetch_row(src + (int64_t)col[p] * cin, cin);
    int64_t jb = 0;
    for (; jb + 4 * N <= cout; jb += 4 * N) {
      vec a0 = {}, a1 = {}, a2 = {}, a3 = {}, b0 = {}, b1 = {}, b2 = {}, b3 = {};
      for (int64_t p = p0; p < p1; ++p) {
        if (jb == 0 && p + PF < n_pairs) prefetch_row(src + (int64_t)col[p + PF] * cin, cin);
        const T* x = src + (int64_t)col[p] * cin;
        const T* w = W + (int64_t)koff[p] * wstride + jb;
        int64_t c = 0;
        for (; c + 1 < cin; c += 2) {
          const T s = x[c], t = x[c + 1];
          const T* w0 = w + c * cout;
          const T* w1 = w0 + cout;
          a0 += s * ld(w0); a1 += s * ld(w0 + N); a2 += s * ld(w0 + 2 * N); a3 += s * ld(w0 + 3 * N);
          b0 += t * ld(w1); b1 += t * ld(w1 + N); b2 += t * ld(w1 + 2 * N); b3 += t * ld(w1 + 3 * N);
        }
        if (c < cin) {
          const T s = x[c];
          const T* w0 = w + c * cout;
          a0 += s * ld(w0); a1 += s * ld(w0 + N); a2 += s * ld(w0 + 2 * N); a3 += s * ld(w0 + 3 * N);
        }
      }
      st(o + jb, a0 + b0); st(o + jb + N, a1 + b1); st(o + jb + 2 * N, a2 + b2); st(o + jb + 3 * N, a3 + b3);
    }
    for (; jb + N <= cout; jb += N) {
      vec a0 = {};
      for (int64_t p = p0; p < p1; ++p) {
        const T* x = src + (int64_t)col[p] * cin;
        const T* w = W + (int64_t)koff[p] * wstride + jb;
        for (int64_t c = 0; c < cin; ++c) a0 += x[c] * ld(w + c * cout);
      }
      st(o + jb, a0);
    }
    for (; jb < cout; ++jb) {
      T a0 = 0;
      for (int64_t p = p0; p < p1; ++p) {
        const T* x = src + (int64_t)col[p] * cin;
        const T* w = W + (int64_t)koff[p] * wstride + jb;
        for (int64_t c = 0; c < cin; ++c) a0 += x[c] * w[c * cout];
      }
      o[jb] = a0;
    }
  }
}

// dW[k, c, j] = sum_{p in [kptr[k], kptr[k+1])} a[ia[p], c] * b[ib[p], j]   (a: rows x cin, b: rows x cout)
// One task per (k, block of 2 vectors of output channels). Pairs in chunks of PC (their rows stay in L1)
// update a 4 x 2-vector register tile of dW; the summation order is fixed, independent of the thread count.
template <typename T>
void weight_grad(const int64_t* kptr, const int32_t* ia, const int32_t* ib, const T* a, const T* b, T* dW,
                 int64_t K, int64_t cin, int64_t cout, int nthreads) {
  typedef typename V<T>::v vec;
  constexpr int N = V<T>::N;
  constexpr int JB = 2 * N;
  constexpr int64_t PC = 128;
  const int64_t nj = (cout + JB - 1) / JB;
  const int64_t ntask = K * nj;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t t = 0; t < ntask; ++t) {
    const int64_t k = t / nj, jb = (t % nj) * JB;
    const int64_t jw = std::min<int64_t>(JB, cout - jb);
    T* dw = dW + k * cin * cout;
    for (int64_t c = 0; c < cin; ++c)
      for (int64_t j = 0; j < jw; ++j) dw[c * cout + jb + j] = T(0);
    for (int64_t q0 = kptr[k]; q0 < kptr[k + 1]; q0 += PC) {
      const int64_t q1 = std::min<int64_t>(q0 + PC, kptr[k + 1]);
      int64_t c0 = 0;
      if (jw == JB) {
        for (; c0 + 4 <= cin; c0 += 4) {
          vec s00 = {}, s01 = {}, s10 = {}, s11 = {}, s20 = {}, s21 = {}, s30 = {}, s31 = {};
          for (int64_t p = q0; p < q1; ++p) {
            if (c0 == 0 && p + PF < q1) {
              prefetch_row(a + (int64_t)ia[p + PF] * cin, cin);
              prefetch_row(b + (int64_t)ib[p + PF] * cout + jb, JB);
            }
            const T* x = a + (int64_t)ia[p] * cin + c0;
            const T* g = b + (int64_t)ib[p] * cout + jb;
            const vec g0 = ld(g), g1 = ld(g + N);
            s00 += x[0] * g0; s01 += x[0] * g1; s10 += x[1] * g0; s11 += x[1] * g1;
            s20 += x[2] * g0; s21 += x[2] * g1; s30 += x[3] * g0; s31 += x[3] * g1;
          }
          T* d = dw + c0 * cout + jb;
          st(d, ld(d) + s00); st(d + N, ld(d + N) + s01);
          d += cout; st(d, ld(d) + s10); st(d + N, ld(d + N) + s11);
          d += cout; st(d, ld(d) + s20); st(d + N, ld(d + N) + s21);
          d += cout; st(d, ld(d) + s30); st(d + N, ld(d + N) + s31);
        }
      }
      for (; c0 < cin; ++c0) {
        T acc[JB];
        for (int j = 0; j < JB; ++j) acc[j] = T(0);
        for (int64_t p = q0; p < q1; ++p) {
          const T s = a[(int64_t)ia[p] * cin + c0];
          const T* g = b + (int64_t)ib[p] * cout + jb;
          for (int64_t j = 0; j < jw; ++j) acc[j] += s * g[j];
        }
        for (int64_t j = 0; j < jw; ++j) dw[c0 * cout + jb + j] += acc[j];
      }
    }
  }
}

}  // namespace

extern "C" {
int ncal_sparse_abi_version() { return 2; }
void ncal_conv_csr_f32(const int64_t* rp, const int32_t* col, const int32_t* k, const float* src, const float* W,
                       float* out, int64_t n, int64_t cin, int64_t cout, int nt) {
  conv_csr<float>(rp, col, k, src, W, out, n, cin, cout, nt);
}
void ncal_conv_csr_f64(const int64_t* rp, const int32_t* col, const int32_t* k, const double* src, const double* W,
                       double* out, int64_t n, int64_t cin, int64_t cout, int nt) {
  conv_csr<double>(rp, col, k, src, W, out, n, cin, cout, nt);
}
void ncal_weight_grad_f32(const int64_t* kp, const int32_t* ia, const int32_t* ib, const float* a, const float* b,
                          float* dW, int64_t K, int64_t cin, int64_t cout, int nt) {
  weight_grad<float>(kp, ia, ib, a, b, dW, K, cin, cout, nt);
}
void ncal_weight_grad_f64(const int64_t* kp, const int32_t* ia, const int32_t* ib, const double* a, const double* b,
                          double* dW, int64_t K, int64_t cin, int64_t cout, int nt) {
  weight_grad<double>(kp, ia, ib, a, b, dW, K, cin, cout, nt);
}
}
'''

ABI_VERSION = 2


def _setup(lib) -> None:
    i64, ptr, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    for name in ('ncal_conv_csr_f32', 'ncal_conv_csr_f64', 'ncal_weight_grad_f32', 'ncal_weight_grad_f64'):
        fn = getattr(lib, name)
        fn.argtypes = [ptr] * 6 + [i64, i64, i64, cint]
        fn.restype = None


LIBRARY = NativeLibrary('ncal_sparse', SOURCE, ABI_VERSION, _setup,
                        flags=['-O3', '-march=native', '-fopenmp', '-fPIC', '-shared', '-std=c++14'],
                        disable_env='NCAL_SPARSE_NATIVE')


def _load() -> Optional[ctypes.CDLL]:
    return LIBRARY.load()


def build(verbose: bool = False):
    """Compile the kernels into the cache now (see :mod:`ros_ncal.nativelib`); return the path."""
    return LIBRARY.build(verbose=verbose)


def available() -> bool:
    """True when the native kernels are built (or build now) and loaded."""
    return _load() is not None


def unavailable_reason() -> Optional[str]:
    _load()
    return LIBRARY.error


def supports(*tensors: torch.Tensor) -> bool:
    """Whether these tensors can take the native path (CPU, one dtype float32/float64, no CPU autocast)."""
    t0 = tensors[0]
    if t0.device.type != 'cpu' or t0.dtype not in (torch.float32, torch.float64):
        return False
    if any(t.device.type != 'cpu' or t.dtype != t0.dtype for t in tensors[1:]):
        return False
    try:
        if torch.is_autocast_enabled('cpu'):
            return False
    except TypeError:  # older torch
        if torch.is_autocast_cpu_enabled():
            return False
    return available()


def _p(t: torch.Tensor) -> int:
    return t.data_ptr()


def conv_csr(rowptr: torch.Tensor, col: torch.Tensor, koff: torch.Tensor, src: torch.Tensor,
             weight: torch.Tensor) -> torch.Tensor:
    """rowptr (R+1,) int64, col / koff (P,) int32, src (S, Cin), weight (K, Cin, Cout) -> (R, Cout):
    row r = sum over its pairs p of src[col[p]] @ weight[koff[p]]."""
    lib = _load()
    src, weight = src.contiguous(), weight.contiguous()
    n, cin, cout = rowptr.numel() - 1, weight.shape[1], weight.shape[2]
    out = torch.empty(n, cout, dtype=src.dtype)
    fn = lib.ncal_conv_csr_f32 if src.dtype == torch.float32 else lib.ncal_conv_csr_f64
    fn(_p(rowptr), _p(col), _p(koff), _p(src), _p(weight), _p(out), n, cin, cout, torch.get_num_threads())
    return out


def weight_grad(kptr: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor, a: torch.Tensor,
                b: torch.Tensor) -> torch.Tensor:
    """kptr (K+1,) int64, ia / ib (P,) int32 grouped by offset, a (Na, Cin), b (Nb, Cout) -> (K, Cin, Cout):
    dW[k] = sum over offset k's pairs p of outer(a[ia[p]], b[ib[p]])."""
    lib = _load()
    a, b = a.contiguous(), b.contiguous()
    K, cin, cout = kptr.numel() - 1, a.shape[1], b.shape[1]
    dw = torch.empty(K, cin, cout, dtype=a.dtype)
    fn = lib.ncal_weight_grad_f32 if a.dtype == torch.float32 else lib.ncal_weight_grad_f64
    fn(_p(kptr), _p(ia), _p(ib), _p(a), _p(b), _p(dw), K, cin, cout, torch.get_num_threads())
    return dw


if __name__ == '__main__':
    print(build(verbose=True))
