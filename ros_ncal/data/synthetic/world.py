"""Frames of the synthetic world as Samples: single frames, index-seeded datasets, drives."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.spatial.transform import Rotation

from ros_ncal.data.sample import Sample
from ros_ncal.geometry import invert, make_T, transform_points, validate_rigid

from . import classes as C
from .camera import intrinsics, render
from .config import CameraConfig, SyntheticConfig, validate_config
from .lidar import scan
from .scene import Scene, generate_scene


def ego_pose(x: float, y: float, yaw: float) -> np.ndarray:
    """(4, 4) T_world_ego of a vehicle on the ground plane at (x, y) heading ``yaw`` (rad)."""
    return make_T(Rotation.from_euler('z', yaw).as_matrix(), (x, y, 0.0))


def camera_extrinsic(cfg: CameraConfig) -> np.ndarray:
    """True (4, 4) T_cam_lidar of the configured camera (optical frame; KITTI-like mounting)."""
    R_lidar_optical = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    R_offset = Rotation.from_euler('xyz', cfg.rotation_offset_deg, degrees=True).as_matrix()
    return invert(make_T(R_offset @ R_lidar_optical, cfg.position_in_lidar_m))


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from integers (stable across runs and platforms)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def render_frame(scene: Scene, ego_pose: np.ndarray, cfg: SyntheticConfig, time_s: float = 0.0,
                 T_cam_lidar: np.ndarray | None = None, noise_seed: int | None = None,
                 stamp_ns: int | None = None, ego_velocity: np.ndarray | None = None) -> Sample:
    """Render one LiDAR scan at ``time_s`` and the camera image at ``time_s + camera.time_offset_s``.

    ego_pose: (4, 4) T_world_ego at ``time_s`` (ego frame on the ground; the LiDAR sits
    ``lidar.mount_height_m`` above it).
    T_cam_lidar: nominal extrinsic to store in the Sample (e.g. a deliberately wrong one); the rendering
    always uses the configured true extrinsic, which then goes to ``meta['T_cam_lidar_true']``.
    ego_velocity: (3,) world m/s, moves the ego over a non-zero camera time offset and, with
    ``lidar.motion_distortion``, during the sweep (default: standing).
    Returns a Sample with points, image, labels, instances, boxes (LiDAR frame) and pixel_labels.
    """
    T_world_ego = validate_rigid(ego_pose, name='ego_pose')
    T_cam_lidar_true = camera_extrinsic(cfg.camera)
    T_world_lidar = T_world_ego @ make_T(np.eye(3), (0.0, 0.0, cfg.lidar.mount_height_m))
    dt_cam = float(cfg.camera.time_offset_s)
    T_world_lidar_at_cam = T_world_lidar.copy()
    if ego_velocity is not None:
        T_world_lidar_at_cam[:3, 3] += np.asarray(ego_velocity, np.float64).reshape(3) * dt_cam
    T_world_cam = T_world_lidar_at_cam @ invert(T_cam_lidar_true)
    seed = derive_seed(scene.seed, int(round(time_s * 1000)), 7) if noise_seed is None else int(noise_seed)
    # Independent noise streams: changing one sensor's settings leaves the other's noise as it was.
    lidar_rng, camera_rng = (np.random.default_rng([seed, k]) for k in (1, 2))
    points, point_labels, instance_ids = scan(scene, T_world_lidar, cfg.lidar, time_s, lidar_rng, ego_velocity)
    image, pixel_labels, _ = render(scene, T_world_cam, cfg.camera, time_s + dt_cam, camera_rng)
    boxes, box_labels, box_instances = _boxes_in_lidar(scene, T_world_lidar, time_s, instance_ids, cfg.min_box_points)
    meta = {
        'source': 'synthetic',
        'scene_seed': int(scene.seed),
        'time_s': float(time_s),
        'T_world_lidar': T_world_lidar.tolist(),
        'sun_direction': scene.sun_direction.tolist(),
        'box_instance_ids': box_instances.tolist(),
        'class_names': list(C.CLASS_NAMES),
        'box_class_names': list(C.BOX_CLASS_NAMES),
    }
    nominal = T_cam_lidar_true
    if T_cam_lidar is not None:
        nominal = validate_rigid(T_cam_lidar, atol=1e-4, name='T_cam_lidar')
        if not np.allclose(nominal, T_cam_lidar_true, atol=1e-9):
            meta['T_cam_lidar_true'] = T_cam_lidar_true.tolist()
    stamp = int(round(time_s * 1e9)) if stamp_ns is None else int(stamp_ns)
    return Sample(points=points, image=image, K=intrinsics(cfg.camera), T_cam_lidar=nominal, stamp_ns=stamp,
                  image_stamp_ns=stamp + int(round(dt_cam * 1e9)), frame_ids=(cfg.lidar.frame_id, cfg.camera.frame_id),
                  point_labels=point_labels, instance_ids=instance_ids, boxes=boxes, box_labels=box_labels,
                  pixel_labels=pixel_labels, meta=meta)


def _boxes_in_lidar(scene: Scene, T_world_lidar: np.ndarray, time_s: float, instance_ids: np.ndarray,
                    min_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (M, 7) float32 in the LiDAR frame of instances with a box class and >= min_points returns."""
    counts = np.bincount(instance_ids, minlength=len(scene.inst_box_class))
    keep = np.flatnonzero((scene.inst_box_class >= 0) & (counts >= max(min_points, 1)))
    keep = keep[keep > 0]
    world = scene.instance_boxes_at(time_s)[keep]
    T_lidar_world = invert(T_world_lidar)
    centers = transform_points(T_lidar_world, world[:, :3])
    lidar_yaw = np.arctan2(T_world_lidar[1, 0], T_world_lidar[0, 0])
    yaw = np.mod(world[:, 6] - lidar_yaw + np.pi, 2 * np.pi) - np.pi
    boxes = np.concatenate([centers, world[:, 3:6], yaw[:, None]], axis=1).astype(np.float32)
    return boxes, scene.inst_box_class[keep].astype(np.int32), keep.astype(np.int32)


def _ego_velocity(scene: Scene) -> np.ndarray:
    """(3,) world velocity of the scene's ego (driving along its start heading)."""
    yaw = scene.ego_start[2]
    return scene.ego_speed * np.array([np.cos(yaw), np.sin(yaw), 0.0])


class SyntheticWorld:
    """Index-seeded synthetic dataset and drives.

    ``sample(i)`` renders a fresh scene seeded by (cfg.seed, i) from its ego start: the same index gives
    the same Sample. ``drive(seed, n)`` renders n consecutive frames (cfg.frame_rate_hz) of one scene with
    the ego moving forward and moving things advancing. ``T_cam_lidar`` overrides the nominal extrinsic
    stored in the Samples (the true one goes to meta['T_cam_lidar_true']).
    """

    def __init__(self, cfg: SyntheticConfig | None = None, T_cam_lidar: np.ndarray | None = None):
        self.cfg = validate_config(cfg if cfg is not None else SyntheticConfig())
        self.T_cam_lidar = None if T_cam_lidar is None else validate_rigid(T_cam_lidar, atol=1e-4,
                                                                          name='T_cam_lidar')

    def __len__(self) -> int:
        return self.cfg.num_samples

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)} synthetic samples')
        return self.sample(index)

    def scene(self, index: int) -> Scene:
        """The scene behind ``sample(index)``."""
        return generate_scene(self.cfg.scene, derive_seed(self.cfg.seed, index))

    def sample(self, index: int) -> Sample:
        if index < 0:
            raise IndexError(f'synthetic sample index must be >= 0, got {index}')
        scene = self.scene(index)
        x, y, yaw = scene.ego_start
        period_ns = int(round(1e9 / self.cfg.frame_rate_hz))
        sample = render_frame(scene, ego_pose(x, y, yaw), self.cfg, 0.0, T_cam_lidar=self.T_cam_lidar,
                              noise_seed=derive_seed(self.cfg.seed, index, 1), stamp_ns=index * period_ns,
                              ego_velocity=_ego_velocity(scene))
        sample.meta['index'] = int(index)
        return sample

    def drive(self, seed: int, n_frames: int) -> Iterator[Sample]:
        """n_frames consecutive Samples of the scene ``seed``, stamps at cfg.frame_rate_hz from 0."""
        if n_frames < 0:
            raise ValueError(f'n_frames must be >= 0, got {n_frames}')
        scene = generate_scene(self.cfg.scene, derive_seed(seed, 0xD21E))
        x, y, yaw = scene.ego_start
        for k in range(n_frames):
            t = k / self.cfg.frame_rate_hz
            dist = scene.ego_speed * t
            pose = ego_pose(x + dist * np.cos(yaw), y + dist * np.sin(yaw), yaw)
            sample = render_frame(scene, pose, self.cfg, t, T_cam_lidar=self.T_cam_lidar,
                                  noise_seed=derive_seed(seed, k, 2), stamp_ns=int(round(t * 1e9)),
                                  ego_velocity=_ego_velocity(scene))
            sample.meta['frame'] = k
            yield sample
