"""Timing helper shared by the benches (run as scripts from the repository root: bench/ is on sys.path)."""
from __future__ import annotations

import time

import numpy as np


def interleaved(fns: dict, repeats: int) -> dict:
    """name -> median seconds; every function runs once per round after one warm-up call each, so load
    changes on a shared machine hit all of them alike."""
    for fn in fns.values():
        fn()
    samples = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in samples.items()}
