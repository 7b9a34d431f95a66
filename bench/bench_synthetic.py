"""Synthetic world speed on ONE core: frames per second at a config, LiDAR vs camera split, and the gain
of per-primitive ray culling over brute-force casting of the same LiDAR rays (baseline, same run).

    .venv/bin/python bench/bench_synthetic.py [--config config/synthetic.yaml] [--frames 5]
"""
import os

for _var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[_var] = '1'

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from ros_ncal.data.synthetic import SyntheticWorld, camera_extrinsic, ego_pose, load_synthetic_config  # noqa: E402
from ros_ncal.data.synthetic.camera import render  # noqa: E402
from ros_ncal.data.synthetic.lidar import beam_elevations_deg, scan  # noqa: E402
from ros_ncal.data.synthetic.primitives import intersect_ground  # noqa: E402
from ros_ncal.data.synthetic.raycast import SpinningGrid, cast, intersect_primitive  # noqa: E402
from ros_ncal.geometry import invert, make_T  # noqa: E402


def brute_force_cast(grid, scene):
    best = intersect_ground(grid.origin, grid.directions)
    for p in range(scene.num_primitives):
        t = intersect_primitive(scene, p, scene.center[p], grid.origin, grid.directions)
        np.minimum(best, t, out=best)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--config', default=None)
    ap.add_argument('--frames', type=int, default=5)
    args = ap.parse_args()
    cfg = load_synthetic_config(args.config)
    world = SyntheticWorld(cfg)
    world.sample(10_000)  # warm-up
    t_scene, t_lidar, t_cam, n_points = [], [], [], []
    for i in range(args.frames):
        t0 = time.perf_counter()
        scene = world.scene(i)
        t1 = time.perf_counter()
        T_world_lidar = ego_pose(*scene.ego_start) @ make_T(np.eye(3), (0, 0, cfg.lidar.mount_height_m))
        rng = np.random.default_rng(i)
        pts, _, _ = scan(scene, T_world_lidar, cfg.lidar, 0.0, rng)
        t2 = time.perf_counter()
        render(scene, T_world_lidar @ invert(camera_extrinsic(cfg.camera)), cfg.camera, 0.0, rng)
        t3 = time.perf_counter()
        t_scene.append(t1 - t0)
        t_lidar.append(t2 - t1)
        t_cam.append(t3 - t2)
        n_points.append(len(pts))
    t_full, cpu_full = [], []
    for i in range(args.frames):
        t0, c0 = time.perf_counter(), time.process_time()
        world.sample(i)
        t_full.append(time.perf_counter() - t0)
        cpu_full.append(time.process_time() - c0)
    ms = lambda v: 1000 * float(np.median(v))  # noqa: E731
    print(f'config: {args.config or "config/synthetic.yaml"}: {cfg.lidar.n_beams}x{cfg.lidar.n_azimuth} rays, '
          f'{cfg.camera.width}x{cfg.camera.height} image; {args.frames} frames, 1 thread, medians')
    print(f'points per frame: {int(np.median(n_points))}')
    print(f'scene generation {ms(t_scene):.0f} ms, LiDAR {ms(t_lidar):.0f} ms, camera {ms(t_cam):.0f} ms')
    print(f'full Sample: {ms(t_full):.0f} ms per frame = {1000 / ms(t_full):.2f} frames/s (wall); '
          f'{ms(cpu_full):.0f} ms process CPU time = {1000 / ms(cpu_full):.2f} frames/s per core')
    print(f'load average during the run: {os.getloadavg()[0]:.1f} (other processes inflate wall times)')
    # Baseline: the same LiDAR rays cast against every primitive (no culling), nearest hit only.
    scene = world.scene(0)
    T_world_lidar = ego_pose(*scene.ego_start) @ make_T(np.eye(3), (0, 0, cfg.lidar.mount_height_m))
    grid = SpinningGrid(origin=T_world_lidar[:3, 3].copy(), R_world_lidar=T_world_lidar[:3, :3].copy(),
                        elevations_rad=np.deg2rad(beam_elevations_deg(cfg.lidar)), n_azimuth=cfg.lidar.n_azimuth)
    t0 = time.perf_counter()
    cast(grid, scene, 0.0)
    t_culled = time.perf_counter() - t0
    t0 = time.perf_counter()
    brute_force_cast(grid, scene)
    t_brute = time.perf_counter() - t0
    print(f'LiDAR ray casting, {scene.num_primitives} primitives: culled {1000 * t_culled:.0f} ms, '
          f'brute force {1000 * t_brute:.0f} ms: {t_brute / t_culled:.1f}x faster')


if __name__ == '__main__':
    main()
