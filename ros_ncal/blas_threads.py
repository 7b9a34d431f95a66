"""One OpenBLAS thread per process unless the user chose otherwise: the setting of every ros_ncal process that
runs the calibrator or a node (the ``ncal`` command, ``python -m ros_ncal.nodes.<node>``, the benchmarks).

numpy's bundled OpenBLAS starts one thread per core for any matrix product, and those threads keep spinning
for a while after the product ends. The library's products are skinny ((N, 3) points times a 3x3), so the
threads buy nothing, but on a 2-core machine their spinning takes the cores from torch's own OpenMP threads:
measured on the KITTI drive frames (docs/calibration_eval.md "Cost"), the network pass that follows the
input preparation's point transform took 134 ms instead of 48 ms, one third of the default backend's time
per frame, and the nodes' matrix products were several times slower on a busy machine (docs/nodes.md).

OpenBLAS reads ``OPENBLAS_NUM_THREADS`` when numpy loads it, so :func:`prefer_single_thread_blas` must run
before the first ``import numpy`` of the process; an exported value always wins.
"""
from __future__ import annotations

import os

ENV = 'OPENBLAS_NUM_THREADS'


def prefer_single_thread_blas() -> bool:
    """Default ``OPENBLAS_NUM_THREADS`` to 1 for this process and its children; returns whether it was unset
    (False: the user's value stands)."""
    if ENV in os.environ:
        return False
    os.environ[ENV] = '1'
    return True
