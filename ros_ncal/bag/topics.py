"""Topic and frame names of the project's sensor bags (KITTI-style defaults)."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class BagTopics:
    points: str = '/kitti/velo/points'
    image: str = '/kitti/camera/image_raw'
    camera_info: str = '/kitti/camera/camera_info'
    tf_static: str = '/tf_static'
    lidar_frame: str = 'velo_link'
    camera_frame: str = 'camera_color_left_optical_frame'

    @classmethod
    def from_dict(cls, d: dict | None) -> 'BagTopics':
        d = dict(d or {})
        unknown = set(d) - set(asdict(cls()))
        if unknown:
            raise ValueError(f'unknown BagTopics keys {sorted(unknown)}')
        return cls(**d)
