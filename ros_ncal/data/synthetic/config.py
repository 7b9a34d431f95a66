"""Configuration of the synthetic driving world (dataclasses, loaded from ``config/synthetic*.yaml``).

Ranges are ``[low, high]`` pairs drawn uniformly per scene or per object.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ros_ncal.config_io import dataclass_from_dict, read_yaml_mapping

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[3] / 'config' / 'synthetic.yaml'


@dataclass
class SceneConfig:
    """Street layout and object densities. The street runs along world +x; world z is up, ground at z = 0."""
    x_range_m: tuple[float, float] = (-120.0, 320.0)  # extent of the street along x
    lane_width_m: tuple[float, float] = (3.0, 3.8)  # one driving lane per direction
    parking_width_m: tuple[float, float] = (2.0, 2.6)  # parking strip between lane and curb, both sides
    sidewalk_width_m: tuple[float, float] = (2.0, 4.5)
    sidewalk_height_m: float = 0.15
    terrain_width_m: tuple[float, float] = (0.0, 6.0)  # grass strip between sidewalk and buildings
    building_length_m: tuple[float, float] = (8.0, 30.0)
    building_depth_m: tuple[float, float] = (8.0, 20.0)
    building_height_m: tuple[float, float] = (5.0, 24.0)
    building_gap_prob: float = 0.3  # chance of an open lot (terrain, fence, trees) after a building
    building_gap_m: tuple[float, float] = (4.0, 15.0)
    fence_prob: float = 0.5  # chance that an open lot is fenced along the building line
    cross_streets_per_100m: float = 0.5  # mean rate of crossing streets along the main street (0 = none)
    cross_street_width_m: tuple[float, float] = (7.0, 12.0)
    trees_per_100m: float = 7.0  # per side
    hedges_per_100m: float = 2.0  # per side, on grass strips at least 1.2 m wide
    poles_per_100m: float = 4.0  # per side
    sign_prob: float = 0.4  # chance that a pole carries a traffic sign
    parked_car_prob: float = 0.55  # per 6.5 m parking slot
    truck_prob: float = 0.06  # chance that a parked car is a truck
    parked_two_wheeler_prob: float = 0.06  # chance that an occupied slot holds 1-3 parked bicycles / motorcycles
    other_vehicle_prob: float = 0.04  # chance that an occupied slot holds a caravan / trailer (other-vehicle)
    motorcyclist_fraction: float = 0.3  # share of the riders on motorcycles (motorcyclist, no box)
    gravel_strip_prob: float = 0.3  # chance per side that the strip before the buildings is gravel (other-ground)
    moving_cars: tuple[int, int] = (4, 12)  # in both lanes
    pedestrians: tuple[int, int] = (6, 18)  # on the sidewalks
    cyclists: tuple[int, int] = (1, 5)  # on the lanes, near the right edge
    near_ego_fraction: float = 0.6  # share of moving things placed 20 m behind to 70 m ahead of the ego start
    sun_elevation_deg: tuple[float, float] = (25.0, 65.0)
    sun_azimuth_deg: tuple[float, float] = (0.0, 360.0)
    overcast_prob: float = 0.2  # chance of an overcast scene: no direct sun, no shadows, brighter diffuse sky light
    exposure_gain: tuple[float, float] = (0.8, 1.2)  # per-scene camera brightness
    white_balance_jitter: float = 0.04  # per-scene, per-channel relative colour gain jitter
    ego_speed_mps: tuple[float, float] = (6.0, 12.0)  # also the speed of the ego lane's traffic
    oncoming_speed_mps: tuple[float, float] = (4.0, 14.0)  # speed of the oncoming lane's traffic
    ego_start_x_m: tuple[float, float] = (-20.0, 60.0)  # where the ego starts (sample() frames are taken here)
    ego_lateral_jitter_m: float = 0.3
    ego_yaw_jitter_deg: float = 2.0
    ego_clearance_m: float = 12.0  # no vehicle in the ego lane within this distance of the ego start


@dataclass
class LidarConfig:
    """Rotating multi-beam LiDAR (HDL-64E-like elevation table)."""
    n_beams: int = 64
    n_azimuth: int = 2048
    elevation_top_deg: float = 2.0
    elevation_split_deg: float = -8.33  # last beam of the upper block (1/3 deg spacing on the HDL-64E)
    elevation_bottom_deg: float = -24.8
    mount_height_m: float = 1.73  # above the ground, in the ego frame
    min_range_m: float = 2.5  # returns closer than this are dropped (ego body)
    max_range_m: float = 100.0
    range_noise_m: float = 0.02
    dropout_prob: float = 0.03  # random missing returns
    dark_dropout_prob: float = 0.5  # extra dropout scaled by (1 - reflectivity * cos incidence)^4
    intensity_noise: float = 0.02
    motion_distortion: bool = False  # fire blocks of the sweep at their own times (see lidar.sweep_blocks)
    scan_period_s: float = 0.1
    distortion_blocks: int = 32
    frame_id: str = 'lidar'


@dataclass
class CameraConfig:
    """Pinhole camera (KITTI-like image_2) and its extrinsic relative to the LiDAR."""
    width: int = 1242
    height: int = 375
    fx: float = 721.5
    fy: float = 721.5
    cx: float = 609.6
    cy: float = 172.9
    position_in_lidar_m: tuple[float, float, float] = (0.27, 0.06, -0.08)  # camera centre in the LiDAR frame
    rotation_offset_deg: tuple[float, float, float] = (0.3, -0.5, 0.2)  # extra roll/pitch/yaw (xyz, LiDAR axes)
    frame_id: str = 'camera_optical_frame'
    time_offset_s: float = 0.0  # camera exposure time minus LiDAR stamp (the moving ego shifts the view)
    ambient: float = 0.38
    sun_strength: float = 0.85
    haze_distance_m: float = 350.0
    pixel_noise: float = 1.5  # sigma of additive image noise, in 0..255 levels
    shadows: bool = True
    shadow_resolution_m: float = 0.12  # texel size of the sun shadow map
    shadow_max_distance_m: float = 70.0  # beyond this range pixels are lit without a shadow test
    shadow_bias_m: float = 0.12


@dataclass
class SyntheticConfig:
    """Everything the synthetic world needs: seed, scene, sensors, frame rate."""
    seed: int = 0
    num_samples: int = 10000  # length when used as a map-style dataset
    frame_rate_hz: float = 10.0
    min_box_points: int = 5  # boxes are emitted for things with at least this many LiDAR returns
    scene: SceneConfig = field(default_factory=SceneConfig)
    lidar: LidarConfig = field(default_factory=LidarConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)


def validate_config(cfg: SyntheticConfig) -> SyntheticConfig:
    """Raise ValueError naming the first inconsistent setting."""
    s, lid, cam = cfg.scene, cfg.lidar, cfg.camera
    for name in ('x_range_m', 'lane_width_m', 'parking_width_m', 'sidewalk_width_m', 'terrain_width_m',
                 'building_length_m', 'building_depth_m', 'building_height_m', 'building_gap_m', 'moving_cars',
                 'pedestrians', 'cyclists', 'sun_elevation_deg', 'exposure_gain', 'ego_speed_mps',
                 'oncoming_speed_mps', 'ego_start_x_m', 'cross_street_width_m'):
        lo, hi = getattr(s, name)
        if hi < lo:
            raise ValueError(f'scene.{name}: high {hi} < low {lo}')
    if s.x_range_m[1] - s.x_range_m[0] < 50:
        raise ValueError(f'scene.x_range_m: street shorter than 50 m ({s.x_range_m})')
    if not (s.x_range_m[0] < s.ego_start_x_m[0] and s.ego_start_x_m[1] < s.x_range_m[1]):
        raise ValueError('scene.ego_start_x_m must lie inside scene.x_range_m')
    if lid.n_beams < 2 or lid.n_azimuth < 8:
        raise ValueError(f'lidar: need at least 2 beams and 8 azimuth steps, got {lid.n_beams} x {lid.n_azimuth}')
    if not lid.elevation_top_deg > lid.elevation_split_deg > lid.elevation_bottom_deg:
        raise ValueError('lidar: elevation_top_deg > elevation_split_deg > elevation_bottom_deg required')
    if lid.distortion_blocks < 1 or lid.scan_period_s <= 0:
        raise ValueError('lidar: distortion_blocks >= 1 and scan_period_s > 0 required')
    if not 0 < lid.min_range_m < lid.max_range_m:
        raise ValueError('lidar: 0 < min_range_m < max_range_m required')
    if cam.width < 8 or cam.height < 8 or cam.fx <= 0 or cam.fy <= 0:
        raise ValueError(f'camera: bad image size or focal length ({cam.width}x{cam.height}, fx={cam.fx})')
    if cfg.frame_rate_hz <= 0:
        raise ValueError('frame_rate_hz must be positive')
    return cfg


def load_synthetic_config(path: str | Path | None = None) -> SyntheticConfig:
    """Read a YAML file (default ``config/synthetic.yaml``) into a validated SyntheticConfig.

    Missing keys keep their defaults; unknown keys raise ValueError (typos must not pass silently).
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not path.is_file():
        raise FileNotFoundError(f'synthetic config not found: {path}')
    return validate_config(dataclass_from_dict(SyntheticConfig, read_yaml_mapping(path), str(path),
                                               exact_tuple_length=True))


load_config = load_synthetic_config  # short alias (used by ros_ncal.nclr.sources)
