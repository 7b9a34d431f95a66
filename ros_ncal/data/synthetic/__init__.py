"""Synthetic driving world: procedural streets seen by a 64-beam LiDAR and a KITTI-like camera.

    from ros_ncal.data.synthetic import SyntheticWorld, load_synthetic_config
    world = SyntheticWorld(load_synthetic_config())       # config/synthetic.yaml
    sample = world.sample(0)                              # a ros_ncal.data.sample.Sample
    for s in world.drive(seed=3, n_frames=20): ...         # consecutive 10 Hz frames

See docs/synthetic.md.
"""
from .classes import BOX_CLASS_NAMES, CLASS_COLORS, CLASS_NAMES, NUM_CLASSES, THING_CLASSES  # noqa: F401
from .config import (CameraConfig, LidarConfig, SceneConfig, SyntheticConfig, load_synthetic_config,  # noqa: F401
                     validate_config)
from .scene import Scene, generate_scene  # noqa: F401
from .world import SyntheticWorld, camera_extrinsic, ego_pose, render_frame  # noqa: F401
