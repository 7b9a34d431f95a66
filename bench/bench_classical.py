"""Seconds per KITTI frame of the classical edge-alignment calibrator (target < 5 s on 1 core).

Prints per-frame times for the shared KITTI object frames at a 2 deg / 10 cm perturbation, and the
ratio against a baseline measured in the same run: one projection of the full cloud with the
initial extrinsic (ros_ncal.geometry.project_lidar), the cheapest thing any calibrator must do.
Run: OMP_NUM_THREADS=1 .venv/bin/python bench/bench_classical.py [--frames N] [--repeats R]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

import numpy as np  # noqa: E402

from ros_ncal.calib import ClassicalCalibConfig, EdgeAlignmentCalibrator, calibrator_input  # noqa: E402
from ros_ncal.calib.eval_data import load_kitti_samples  # noqa: E402
from ros_ncal.geometry import pose_error, project_lidar, random_perturbation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=8)
    ap.add_argument('--repeats', type=int, default=1)
    ap.add_argument('--config', default='config/calib_eval.yaml')
    args = ap.parse_args()
    samples, ids = load_kitti_samples(max_frames=args.frames)
    cal = EdgeAlignmentCalibrator(ClassicalCalibConfig.from_yaml(args.config) if os.path.exists(args.config)
                                  else ClassicalCalibConfig())
    rng = np.random.default_rng(0)
    times, base = [], []
    for s, name in zip(samples, ids):
        for _ in range(args.repeats):
            T0 = s.T_cam_lidar @ random_perturbation(rng, 2.0, 0.1, 2.0, 0.1)
            inp = calibrator_input(s, T0)
            t = time.perf_counter()
            project_lidar(s.points, T0, s.K, s.image_hw)
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = cal.estimate(inp, T0)
            times.append(time.perf_counter() - t)
            rre, rte = pose_error(res.T_cam_lidar, s.T_cam_lidar)
            print(f'{name}: {times[-1]:.2f} s  ({s.num_points} points, {res.extras.get("n_edge_points")} edge points; '
                  f'RRE 2.00 -> {rre:.2f} deg, confidence {res.confidence:.2f})', flush=True)
    t_med, b_med = float(np.median(times)), float(np.median(base))
    print(f'classical: median {t_med:.2f} s/frame, max {max(times):.2f} s (threads: OMP_NUM_THREADS='
          f'{os.environ.get("OMP_NUM_THREADS")})')
    print(f'baseline (one full-cloud projection): median {1000 * b_med:.1f} ms; ratio {t_med / b_med:.0f}x')


if __name__ == '__main__':
    main()
