"""Test-session set-up: ROS network safety before anything imports rclpy (ROS_ENV.md)."""
import os
import sys
from pathlib import Path

from ros_ncal.rosenv import apply_safe_ros_env

# An isolated domain per test session (overridable by exporting ROS_DOMAIN_ID).
apply_safe_ros_env(isolate=True)
# One intra-op thread: the sparse-conv scatter kernels are 5-10x slower with 2 threads on 2 shared cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('NCAL_SHARED_DATA', REPO.parent / 'shared' / 'data'))
sys.path.insert(0, str(REPO / 'test'))


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """../shared/data: real KITTI / SemanticKITTI / nuScenes frames (required, not optional)."""
    assert SHARED_DATA.is_dir(), f'shared data not found at {SHARED_DATA}; set NCAL_SHARED_DATA'
    return SHARED_DATA


@pytest.fixture(scope='session')
def kitti_dir(shared_data) -> Path:
    return shared_data / 'kitti_object'
