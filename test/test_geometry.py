"""Property tests for ros_ncal.geometry: SE(3) invariants, projection, perturbation bounds, errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros_ncal import geometry as g

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False)
vec3 = st.tuples(finite, finite, finite).map(np.array)
rotvec = st.tuples(*[st.floats(-3.0, 3.0, allow_nan=False)] * 3).map(np.array)


@st.composite
def rigid(draw):
    return g.make_T(g.rotvec_to_matrix(draw(rotvec)), draw(vec3))


@settings(max_examples=60, deadline=None)
@given(rigid())
def test_inverse_composes_to_identity(T):
    assert np.allclose(g.compose(T, g.invert(T)), np.eye(4), atol=1e-9)
    assert np.allclose(g.compose(g.invert(T), T), np.eye(4), atol=1e-9)
    assert g.is_rigid(g.invert(T))


@settings(max_examples=60, deadline=None)
@given(rigid(), rigid(), st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=8))
def test_composition_matches_sequential_application(A, B, pts):
    P = np.array(pts, dtype=np.float64)
    assert np.allclose(g.transform_points(g.compose(A, B), P), g.transform_points(A, g.transform_points(B, P)),
                       atol=1e-7)


@settings(max_examples=60, deadline=None)
@given(rotvec)
def test_quaternion_and_rotvec_round_trip(rv):
    R = g.rotvec_to_matrix(rv)
    q = g.matrix_to_quat(R)
    assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
    assert np.allclose(g.quat_to_matrix(q), R, atol=1e-9)
    assert np.allclose(g.rotvec_to_matrix(g.matrix_to_rotvec(R)), R, atol=1e-9)
    T = g.make_T(R, [1, 2, 3])
    xyz, q2 = g.T_to_xyz_quat(T)
    assert np.allclose(g.T_from_xyz_quat(xyz, q2), T, atol=1e-9)


def test_validate_rigid_names_the_problem():
    with pytest.raises(g.NonRigidTransformError, match='orthonormal'):
        g.validate_rigid(np.diag([2.0, 1, 1, 1]))
    with pytest.raises(g.NonRigidTransformError, match='reflection'):
        g.validate_rigid(np.diag([-1.0, 1, 1, 1]))
    T = np.eye(4)
    T[0, 3] = np.nan
    with pytest.raises(g.NonRigidTransformError, match='NaN'):
        g.validate_rigid(T)
    with pytest.raises(g.NonRigidTransformError, match='shape'):
        g.validate_rigid(np.eye(3))
    T = np.eye(4)
    T[3, 0] = 1
    with pytest.raises(g.NonRigidTransformError, match='last row'):
        g.validate_rigid(T)
    with pytest.raises(g.NonRigidTransformError):
        g.quat_to_matrix([0, 0, 0, 0])


def test_projection_of_known_points():
    K = np.array([[700.0, 0, 600], [0, 700, 180], [0, 0, 1]])
    P = np.array([[0.0, 0, 10], [1.0, -0.5, 5], [0, 0, -3], [100, 0, 1]])
    uv, depth = g.project_points(P, K)
    assert np.allclose(uv[0], [600, 180])
    assert np.allclose(uv[1], [600 + 700 * 0.2, 180 - 700 * 0.1])
    assert np.isnan(uv[2]).all()
    mask = g.in_image_mask(uv, depth, (375, 1242))
    assert mask.tolist() == [True, True, False, False]
    assert np.allclose(g.backproject(uv[:2], depth[:2], K), P[:2])


@settings(max_examples=40, deadline=None)
@given(rigid(), st.floats(1.0, 40.0), st.floats(-0.9, 0.9), st.floats(-0.9, 0.9))
def test_project_lidar_consistent_with_camera_frame(T, z, a, b):
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    p_cam = np.array([[a * z, b * z, z]])
    p_lidar = g.transform_points(g.invert(T), p_cam)
    uv, depth, mask = g.project_lidar(p_lidar, T, K, (480, 640))
    assert np.allclose(depth, z, atol=1e-6)
    assert np.allclose(uv[0], [320 + 500 * a, 240 + 500 * b], atol=1e-5)


def test_intrinsics_changes_are_consistent():
    K = np.array([[700.0, 0, 600], [0, 710, 180], [0, 0, 1]])
    P = np.array([[1.0, 0.4, 8.0], [-2.0, -0.3, 12.0]])
    uv, _ = g.project_points(P, K)
    uv_s, _ = g.project_points(P, g.scale_intrinsics(K, 0.5, 0.25))
    assert np.allclose(uv_s, (uv + 0.5) * [0.5, 0.25] - 0.5)
    uv_c, _ = g.project_points(P, g.crop_intrinsics(K, 100, 20))
    assert np.allclose(uv_c, uv - [100, 20])
    uv_f, _ = g.project_points(P, g.flip_intrinsics(K, 1242))
    assert np.allclose(uv_f[:, 0], 1241 - uv[:, 0]) and np.allclose(uv_f[:, 1], uv[:, 1])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 30.0), st.floats(0.0, 2.0))
def test_perturbation_respects_bounds(seed, max_deg, max_m):
    rng = np.random.default_rng(seed)
    T = g.random_perturbation(rng, max_deg, max_m)
    assert g.is_rigid(T)
    assert g.rotation_angle_deg(T[:3, :3]) <= max_deg + 1e-6
    assert np.linalg.norm(T[:3, 3]) <= max_m + 1e-9
    assert g.rotation_error_deg(T, np.eye(4)) == pytest.approx(g.rotation_angle_deg(T[:3, :3]), abs=1e-6)
    assert g.translation_error_m(T, np.eye(4)) == pytest.approx(np.linalg.norm(T[:3, 3]))


def test_planar_perturbation_is_yaw_and_xy_only():
    rng = np.random.default_rng(0)
    for _ in range(20):
        T = g.random_planar_perturbation(rng, 4.0, 15.0)
        assert T[2, 3] == 0 and abs(T[2, 2] - 1) < 1e-12 and np.abs(T[:2, 3]).max() <= 15.0


def test_error_metrics_are_symmetric_and_zero_on_identity():
    rng = np.random.default_rng(1)
    A, B = g.random_perturbation(rng, 20, 1), g.random_perturbation(rng, 20, 1)
    assert g.rotation_error_deg(A, A) == pytest.approx(0, abs=1e-5)
    assert g.rotation_error_deg(A, B) == pytest.approx(g.rotation_error_deg(B, A))
    assert np.allclose(g.relative_transform(A, A), np.eye(4))


def test_chain_transform_walks_edges_both_ways_and_says_when_unconnected():
    """The TF-chain lookup without ROS (ros_ncal.geometry.frames) of the bag reader; the nodes use tf2_ros."""
    from ros_ncal.geometry import chain_transform, invert, make_T, rotvec_to_matrix
    T_base_lidar = make_T(rotvec_to_matrix([0.0, 0.0, 0.3]), [1.0, 0.0, 1.6])
    T_base_cam = make_T(rotvec_to_matrix([0.1, -0.2, 0.05]), [1.5, 0.2, 1.4])
    edges = {('base_link', 'velo'): T_base_lidar, ('base_link', 'cam'): T_base_cam, ('odom', 'other'): np.eye(4)}
    np.testing.assert_allclose(chain_transform(edges, 'cam', 'velo'), invert(T_base_cam) @ T_base_lidar, atol=1e-12)
    np.testing.assert_allclose(chain_transform(edges, 'velo', 'cam'), invert(T_base_lidar) @ T_base_cam, atol=1e-12)
    np.testing.assert_array_equal(chain_transform(edges, 'cam', 'cam'), np.eye(4))
    assert chain_transform(edges, 'cam', 'other') is None and chain_transform(edges, 'cam', 'nowhere') is None


def test_one_undistortion_for_nodes_and_bags_covers_every_ros_model():
    """geometry.distortion: the nodes' Rectifier and the bag reader share UndistortMap, so a fisheye
    (equidistant) camera that works live is no longer refused from a recording."""
    from ros_ncal.geometry.distortion import Rectifier, UndistortMap, distort_normalized
    K = np.array([[100.0, 0, 64], [0, 100, 48], [0, 0, 1]])
    x = np.array([0.0, 0.3, -0.4])
    y = np.array([0.0, -0.2, 0.1])
    for model, D in (('plumb_bob', [-0.3, 0.1, 0.001, -0.002, 0.0]), ('rational_polynomial', [-0.3, 0.1, 0, 0, 0, 0.1, 0, 0]),
                     ('equidistant', [0.1, -0.05, 0.01, 0.0])):
        xd, yd = distort_normalized(x, y, model, np.array(D))
        assert xd[0] == 0 and yd[0] == 0 and not np.allclose(xd[1:], x[1:])
        img = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
        m = UndistortMap(K, np.array(D), model, (96, 128))
        live = Rectifier()(img, K, np.array(D), model)
        np.testing.assert_array_equal(live, m(img))
    with pytest.raises(ValueError, match='not supported'):
        distort_normalized(x, y, 'unknown_model', np.zeros(5))


def test_extrinsic_from_params_forms_agree_and_bad_ones_raise():
    T = g.make_T(g.rotvec_to_matrix(np.array([0.1, -0.2, 0.3])), np.array([0.3, -0.1, 0.2]))
    xyz, q = g.T_to_xyz_quat(T)
    np.testing.assert_allclose(g.extrinsic_from_params(list(T.ravel()), [], []), T, atol=1e-12)
    np.testing.assert_allclose(g.extrinsic_from_params([], list(xyz), list(q)), T, atol=1e-9)
    assert g.extrinsic_from_params([], [], []) is None
    with pytest.raises(ValueError, match='16 numbers'):
        g.extrinsic_from_params([1.0] * 12, [], [])
    with pytest.raises(ValueError, match='T_cam_lidar'):
        g.extrinsic_from_params(list((2 * np.eye(4)).ravel()), [], [])
    with pytest.raises(ValueError, match='norm'):
        g.extrinsic_from_params([], [0, 0, 0], [0, 0, 0, 2.0])


def test_rectifier_inverts_plumb_bob_distortion():
    """Distort a checkerboard with the plumb_bob model, rectify it back: close to the original."""
    from ros_ncal.geometry.distortion import Rectifier
    H, W = 60, 80
    K = np.array([[60.0, 0, 39.5], [0, 60.0, 29.5], [0, 0, 1]])
    v, u = np.mgrid[0:H, 0:W]
    sharp = 120 + 100 * np.sin(u / 5.0) * np.cos(v / 4.0)
    D = np.array([-0.2, 0.05, 0.001, -0.001, 0.0])
    # distorted image: for each distorted pixel find the undistorted source by fixed-point iteration
    xd, yd = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    x, y = xd.copy(), yd.copy()
    for _ in range(20):
        r2 = x * x + y * y
        rad = 1 + D[0] * r2 + D[1] * r2 ** 2
        dx = 2 * D[2] * x * y + D[3] * (r2 + 2 * x * x)
        dy = D[2] * (r2 + 2 * y * y) + 2 * D[3] * x * y
        x, y = (xd - dx) / rad, (yd - dy) / rad
    from scipy import ndimage
    src = [y * K[1, 1] + K[1, 2], x * K[0, 0] + K[0, 2]]
    distorted = ndimage.map_coordinates(sharp, src, order=1, mode='nearest')
    rgb = np.repeat(distorted[:, :, None], 3, axis=2).astype(np.uint8)
    out = Rectifier()(rgb, K, D, 'plumb_bob')
    inner = (slice(10, H - 10), slice(10, W - 10))
    err_rect = np.abs(out[..., 0][inner].astype(float) - sharp[inner]).mean()
    err_raw = np.abs(rgb[..., 0][inner].astype(float) - sharp[inner]).mean()
    assert err_rect < 0.5 * err_raw
    same = Rectifier()(rgb, K, np.zeros(5), 'plumb_bob')
    assert same is rgb
    r = Rectifier()                                  # one map per camera, built once
    r(rgb, K, D, 'plumb_bob')
    first = r._map
    np.testing.assert_array_equal(r(rgb, K, D, 'plumb_bob'), out)
    assert r._map is first
    r(rgb, K, 2 * D, 'plumb_bob')                    # another camera model: a new map
    assert r._map is not first
