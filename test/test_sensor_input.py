"""ros_ncal.data.sensor_input: the collector's and calibrator's input pieces without ROS (parameters, the pair
that becomes a Sample, decoded once for both workers). The subscribing front end is tested on a live graph
(test_calibrator_node.py, test_collector.py, test_node_faults.py, test_upstream_ros_packages.py). The PointCloud2
checks (decode_cloud, keep_valid_points) are also the segmenter's and detector's (test_downstream_nodes.py)."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from ros_ncal.data.sensor_input import (CameraFrame, CloudFrame, DropInput, ExtrinsicParams, PairedInput, accept_stamp,
                                        decode_cloud, keep_valid_points)
from ros_ncal.data.stamp_guard import StampGuard
from ros_ncal.geometry import T_to_xyz_quat, make_T, rotvec_to_matrix
from ros_ncal.geometry.distortion import Rectifier
from ros_ncal.msgcodec import CameraIntrinsics, xyzi_to_cloud_fields


def _image(rgb: np.ndarray, data: bytes | None = None):
    """An Image-like message (msgcodec reads any object with the ROS field names)."""
    h, w = rgb.shape[:2]
    return SimpleNamespace(height=h, width=w, encoding='rgb8', is_bigendian=0, step=3 * w,
                           data=rgb.tobytes() if data is None else data)


def _pair(msg, width=4, height=4, D=None, model='plumb_bob'):
    intr = CameraIntrinsics(K=np.diag([2.0, 2.0, 1.0]), D=np.zeros(5) if D is None else np.asarray(D),
                            distortion_model=model, width=width, height=height)
    return PairedInput(camera=CameraFrame(msg, False, 1, 'camera'),
                       cloud=CloudFrame(np.zeros((3, 4), np.float32), 1, 'lidar'),
                       intrinsics=intr, T_cam_lidar=np.eye(4), received_mono=0.0)


def test_a_pair_that_cannot_be_decoded_fails_the_same_way_for_both_workers_and_is_counted_once():
    bad = _image(np.zeros((4, 4, 3), np.uint8), data=bytes(10))      # truncated data
    pair = _pair(bad)
    errors = []
    for _ in range(2):                       # the calibration and the overlay worker
        with pytest.raises(ValueError) as exc:
            pair.decode_image()
        errors.append(exc.value)
    assert errors[0] is errors[1]            # decoded once, the failure is cached like the image
    claims = []
    threads = [threading.Thread(target=lambda: claims.append(pair.claim_decode_failure())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claims) == [False] * 7 + [True]


def test_a_pair_is_decoded_once_rectified_when_distorted_and_checked_against_its_camera_info():
    rgb = np.random.default_rng(0).integers(0, 255, (4, 4, 3), dtype=np.uint8)
    pair = _pair(_image(rgb))
    out = pair.decode_image(Rectifier())
    np.testing.assert_array_equal(out, rgb)              # no distortion: the decoded image as it is
    assert pair.decode_image() is out                    # the second worker gets the same array
    D = [-0.2, 0.05, 0.0, 0.0, 0.0]
    rectified = _pair(_image(rgb), D=D).decode_image(Rectifier())
    np.testing.assert_array_equal(rectified, Rectifier()(rgb, np.diag([2.0, 2.0, 1.0]), np.array(D), 'plumb_bob'))
    with pytest.raises(DropInput) as exc:
        _pair(_image(rgb), width=8, height=4).decode_image()
    assert exc.value.reason == 'image_size_mismatch'


def test_extrinsic_params_give_the_nominal_unless_the_source_is_tf():
    T = make_T(rotvec_to_matrix(np.array([0.1, -0.2, 0.3])), np.array([0.3, -0.1, 0.2]))
    xyz, q = T_to_xyz_quat(T)
    np.testing.assert_allclose(ExtrinsicParams(T_cam_lidar=list(T.ravel())).matrix(), T, atol=1e-12)
    np.testing.assert_allclose(ExtrinsicParams(xyz=list(xyz), quat_xyzw=list(q)).matrix(), T, atol=1e-9)
    assert ExtrinsicParams().matrix() is None                                      # auto, nothing set: /tf_static
    assert ExtrinsicParams(source='tf', T_cam_lidar=list(T.ravel())).matrix() is None
    ExtrinsicParams(source='param', T_cam_lidar=list(T.ravel())).validate()
    with pytest.raises(ValueError, match="extrinsic.source is 'param'"):
        ExtrinsicParams(source='param').validate()


def _cloud(n: int, bad_rows: dict[int, float] | None = None) -> np.ndarray:
    pts = np.arange(4 * n, dtype=np.float32).reshape(n, 4) * 0.01
    for i, v in (bad_rows or {}).items():
        pts[i, 0] = v
    return pts


def test_keep_valid_points_removes_nan_rows_and_counts_them():
    pts = _cloud(10, {2: np.nan, 5: np.inf})
    pts[7, 3] = np.nan                                     # NaN intensity: the row goes too
    kept = keep_valid_points(pts, min_points=1, max_nonfinite_fraction=0.9)
    assert (kept.n_nonfinite, kept.n_out_of_range, kept.n_removed) == (3, 0, 3)
    np.testing.assert_array_equal(kept.points, pts[[0, 1, 3, 4, 6, 8, 9]])
    assert kept.points.flags.c_contiguous and kept.points.dtype == np.float32
    clean = _cloud(5)
    kept = keep_valid_points(clean, 5, 0.9)
    assert kept.n_removed == 0 and np.array_equal(kept.points, clean)


@pytest.mark.parametrize('pts, args, reason, detail', [
    (np.zeros((0, 4), np.float32), (1, 0.9), 'cloud_empty', 'PointCloud2 has no points'),
    (np.full((4, 4), np.nan, np.float32), (1, 0.9), 'cloud_nonfinite', '4 of 4 points have NaN/inf'),
    (_cloud(10, {0: np.nan, 1: np.nan}), (1, 0.1), 'cloud_nonfinite', '2 of 10 points have NaN/inf'),
    (_cloud(10, {0: np.nan, 1: np.nan}), (9, 0.9), 'cloud_nonfinite', '2 of 10 points have NaN/inf'),
    (_cloud(3), (5, 0.9), 'cloud_empty', '3 points < input.min_points 5'),
    (_cloud(10, {0: 1e6, 1: -1e6, 2: np.nan}), (1, 0.2, 1000.0), 'cloud_out_of_range',
     '2 of 10 points beyond input.max_coordinate_m 1000.0'),
    (_cloud(10, {0: 1e6, 1: np.nan}), (1, 0.1, 1000.0), 'cloud_nonfinite', '1 of 10 points have NaN/inf'),
])
def test_keep_valid_points_drops_unusable_clouds_with_a_reason(pts, args, reason, detail):
    with pytest.raises(DropInput) as exc:
        keep_valid_points(pts, *args)
    assert (exc.value.reason, exc.value.detail) == (reason, detail)


def test_keep_valid_points_removes_out_of_range_rows_only_with_a_coordinate_limit():
    pts = _cloud(10, {4: 2000.0, 6: np.nan})
    kept = keep_valid_points(pts, 1, 0.9, max_coordinate_m=1000.0)
    assert (kept.n_nonfinite, kept.n_out_of_range, kept.n_removed) == (1, 1, 2)
    np.testing.assert_array_equal(kept.points, pts[[0, 1, 2, 3, 5, 7, 8, 9]])
    kept = keep_valid_points(pts, 1, 0.9)                 # the collector / calibrator: no coordinate limit
    assert (kept.n_nonfinite, kept.n_out_of_range) == (1, 0) and len(kept.points) == 9


def test_decode_cloud_keeps_every_row_and_reports_a_malformed_message():
    pts = _cloud(6, {1: np.nan})
    np.testing.assert_array_equal(decode_cloud(xyzi_to_cloud_fields(pts)), pts)
    truncated = xyzi_to_cloud_fields(pts)
    truncated.data = truncated.data[:-5]
    with pytest.raises(DropInput) as exc:
        decode_cloud(truncated)
    assert exc.value.reason == 'cloud_malformed'


def test_accept_stamp_returns_nanoseconds_or_drops_with_the_guards_reason():
    g = StampGuard(max_future_s=2.0, max_past_s=30.0)
    assert accept_stamp(g, SimpleNamespace(sec=100, nanosec=5)) == 100 * 10**9 + 5
    for stamp, reason, detail in ((SimpleNamespace(sec=0, nanosec=0), 'stamp_zero', 'stamp 0.000 s'),
                                  (SimpleNamespace(sec=103, nanosec=0), 'stamp_future', 'stamp 103.000 s'),
                                  (SimpleNamespace(sec=50, nanosec=0), 'stamp_past', 'stamp 50.000 s')):
        with pytest.raises(DropInput) as exc:
            accept_stamp(g, stamp)
        assert exc.value.reason == reason
        assert exc.value.detail == f'{detail} vs newest accepted 100.000 s'
