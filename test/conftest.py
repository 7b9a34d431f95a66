"""Test-session set-up: ROS network safety before anything imports rclpy (docs/design.md, "Network safety")."""
import os
import sys
from pathlib import Path

from ros_ncal.rosenv import apply_safe_ros_env

# An isolated domain per test session (overridable by exporting ROS_DOMAIN_ID).
apply_safe_ros_env(isolate=True)
# One intra-op thread by default because this suite checks correctness only and its CI machine (2 cores) is
# shared: OpenMP threads of tiny ops mostly spin at barriers there. Not needed by the sparse engine any more
# (no scatter kernels, one parallel region per pass; docs/performance.md); test_sparse_conv.py sets 1, 2
# and all-core counts itself. Export OMP_NUM_THREADS to override.
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
