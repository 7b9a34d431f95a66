"""msgcodec: PointCloud2 / Image / CameraInfo / Transform <-> numpy on rclpy and rosbags messages."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros_ncal.bag import rosbags_msgs as rm
from ros_ncal.data.kitti_files import read_image_rgb
from ros_ncal.geometry import NonRigidTransformError, T_from_xyz_quat, invert
from ros_ncal.msgcodec import (CameraIntrinsics, POINTFIELD_DTYPES, array_to_image_fields, camera_info_to_intrinsics,
                               cloud_to_xyzi, image_to_array, image_to_rgb, intrinsics_to_camera_info_fields,
                               ns_to_sec_nanosec, pack_rgb_float, stamp_to_ns, transform_stamped_to_matrix,
                               transform_to_matrix, unpack_rgb_float, xyzi_to_cloud_fields)

TS = rm.typestore()
PC2 = TS.types['sensor_msgs/msg/PointCloud2']
PF = TS.types['sensor_msgs/msg/PointField']
IMG = TS.types['sensor_msgs/msg/Image']


def _cdr_roundtrip(msg, msgtype):
    """Serialize and deserialize through rosbags CDR (what a bag file holds)."""
    return TS.deserialize_cdr(TS.serialize_cdr(msg, msgtype), msgtype)


def _cloud_from_structured(arr: np.ndarray, height: int = 1, row_pad: int = 0, bigendian: bool = False):
    """A rosbags PointCloud2 whose data is ``arr`` (structured, possibly padded/big-endian) laid out in rows."""
    inv = {v: k for k, v in POINTFIELD_DTYPES.items()}
    fields = []
    for name in arr.dtype.names:
        dt, off = arr.dtype.fields[name][:2]
        base, count = (dt.base, int(np.prod(dt.shape))) if dt.shape else (dt, 1)
        fields.append(PF(name=name, offset=off, datatype=inv[base.newbyteorder('=')], count=count))
    width = arr.size // height
    rows = arr.tobytes()
    step = arr.dtype.itemsize * width
    buf = b''.join(rows[r * step:(r + 1) * step] + b'\xee' * row_pad for r in range(height))
    return PC2(header=rm.header('lidar', 5), height=height, width=width, fields=fields, is_bigendian=bigendian,
               point_step=arr.dtype.itemsize, row_step=step + row_pad, data=np.frombuffer(buf, np.uint8),
               is_dense=False)


def test_kitti_cloud_roundtrip_rclpy_and_rosbags(kitti_points):
    from ros_ncal.ros.conversions import cloud_msg_to_points, points_to_cloud_msg
    labels = (np.arange(len(kitti_points)) % 20).astype(np.uint16)
    msg = points_to_cloud_msg(kitti_points, 'velo_link', 123, extras={'label': labels})
    dec = cloud_msg_to_points(msg)
    np.testing.assert_array_equal(dec.points, kitti_points)
    np.testing.assert_array_equal(dec.extras['label'], labels)
    assert dec.n_dropped == 0 and msg.width == len(kitti_points) and msg.header.frame_id == 'velo_link'
    bag_msg = _cdr_roundtrip(rm.pointcloud2(kitti_points, 'velo_link', 123, {'label': labels}),
                             'sensor_msgs/msg/PointCloud2')
    dec2 = cloud_to_xyzi(bag_msg, extra_fields=('label',))
    np.testing.assert_array_equal(dec2.points, kitti_points)
    np.testing.assert_array_equal(dec2.extras['label'], labels)


def test_rgb_field_packs_and_unpacks():
    rgb = np.array([[255, 0, 0], [0, 128, 255], [1, 2, 3]], np.uint8)
    cf = xyzi_to_cloud_fields(np.zeros((3, 4), np.float32), {'rgb': pack_rgb_float(rgb)})
    assert [f.name for f in cf.fields] == ['x', 'y', 'z', 'intensity', 'rgb'] and cf.fields[4].datatype == 7
    msg = PC2(header=rm.header('l', 0), height=1, width=3,
              fields=[PF(name=f.name, offset=f.offset, datatype=f.datatype, count=1) for f in cf.fields],
              is_bigendian=False, point_step=cf.point_step, row_step=cf.row_step,
              data=np.frombuffer(cf.data, np.uint8), is_dense=True)
    np.testing.assert_array_equal(unpack_rgb_float(cloud_to_xyzi(msg, extra_fields=None).extras['rgb']), rgb)


def test_velodyne_layout_with_padding_ring_time_and_no_intensity():
    # Like a Velodyne/Ouster driver: x y z, 4 pad bytes, ring uint16, time float32, point_step 32.
    dt = np.dtype({'names': ['x', 'y', 'z', 'ring', 'time'], 'formats': ['<f4', '<f4', '<f4', '<u2', '<f4'],
                   'offsets': [0, 4, 8, 16, 20], 'itemsize': 32})
    arr = np.zeros(6, dt)
    arr['x'], arr['y'], arr['z'] = np.arange(6), -np.arange(6), 2.5
    arr['ring'], arr['time'] = np.arange(6) % 3, np.linspace(0, 0.1, 6)
    dec = cloud_to_xyzi(_cloud_from_structured(arr, height=2, row_pad=8), extra_fields=None)
    np.testing.assert_array_equal(dec.points[:, 0], np.arange(6))
    np.testing.assert_array_equal(dec.points[:, 3], np.zeros(6))  # intensity missing -> zeros
    np.testing.assert_array_equal(dec.extras['ring'], arr['ring'])
    np.testing.assert_allclose(dec.extras['time'], arr['time'])
    assert set(dec.extras) == {'ring', 'time'}


def test_nan_rows_dropped_with_count_or_kept():
    pts = np.arange(20, dtype=np.float32).reshape(5, 4)
    pts[1, 0] = np.nan
    pts[3, 2] = np.inf
    bag_msg = rm.pointcloud2(pts, 'l', 0, {'label': np.arange(5, dtype=np.uint16)})
    dec = cloud_to_xyzi(bag_msg, extra_fields=('label',))
    assert dec.n_dropped == 2 and bag_msg.is_dense is False
    np.testing.assert_array_equal(dec.points, pts[[0, 2, 4]])
    np.testing.assert_array_equal(dec.extras['label'], [0, 2, 4])
    pts_i = pts.copy()
    pts_i[:, 3] = np.nan  # a NaN intensity alone does not drop a point
    assert cloud_to_xyzi(rm.pointcloud2(pts_i, 'l', 0)).n_dropped == 2
    kept = cloud_to_xyzi(bag_msg, drop_nonfinite=False)
    assert kept.n_dropped == 0 and kept.points.shape == (5, 4)


_FIELD_TYPES = st.sampled_from([('<f4', 7), ('<f8', 8), ('<u2', 4), ('<i4', 5), ('u1', 2), ('<i2', 3)])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), height=st.sampled_from([1, 2, 3]), big=st.booleans(), row_pad=st.integers(0, 9),
       pad=st.integers(0, 12), xyz_type=st.sampled_from(['<f4', '<f8']), extra=_FIELD_TYPES,
       order=st.permutations(['x', 'y', 'z', 'intensity', 'extra']), seed=st.integers(0, 2**16))
def test_any_layout_decodes(n, height, big, row_pad, pad, xyz_type, extra, order, seed):
    rng = np.random.default_rng(seed)
    fmts = {'x': xyz_type, 'y': xyz_type, 'z': xyz_type, 'intensity': '<f4', 'extra': extra[0]}
    offsets, off = {}, 0
    for name in order:
        size = np.dtype(fmts[name]).itemsize
        off = (off + size - 1) // size * size
        offsets[name] = off
        off += size
    bo = '>' if big else '<'
    dt = np.dtype({'names': list(order), 'formats': [np.dtype(fmts[k]).newbyteorder(bo) for k in order],
                   'offsets': [offsets[k] for k in order], 'itemsize': off + pad})
    total = n * height
    arr = np.zeros(total, dt)
    vals = {k: rng.normal(size=total) * 10 for k in ('x', 'y', 'z', 'intensity')}
    for k in vals:
        arr[k] = vals[k]
    arr['extra'] = rng.integers(0, 100, total)
    msg = _cdr_roundtrip(_cloud_from_structured(arr, height=height, row_pad=row_pad, bigendian=big),
                         'sensor_msgs/msg/PointCloud2')
    dec = cloud_to_xyzi(msg, extra_fields=('extra',))
    expect = np.stack([arr[k].astype(np.float32) for k in ('x', 'y', 'z', 'intensity')], 1)
    np.testing.assert_array_equal(dec.points, expect)
    np.testing.assert_array_equal(dec.extras['extra'], arr['extra'].astype(arr['extra'].dtype.newbyteorder('=')))


def _xyz_cloud(**overrides):
    fields = [PF(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate('xyz')]
    kw = dict(header=rm.header('l', 0), height=1, width=4, fields=fields, is_bigendian=False, point_step=12,
              row_step=48, data=np.zeros(48, np.uint8), is_dense=True)
    kw.update(overrides)
    return PC2(**kw)


@pytest.mark.parametrize('overrides, problem', [
    ({'point_step': 8}, 'exceeds point_step'),
    ({'data': np.zeros(40, np.uint8)}, 'truncated'),
    ({'row_step': 40}, 'row_step'),
    ({'fields': [PF(name='x', offset=0, datatype=7, count=1), PF(name='y', offset=4, datatype=7, count=1)]},
     "lacks field(s) ['z']"),
    ({'fields': [PF(name='x', offset=0, datatype=9, count=1)]}, 'unknown datatype'),
])
def test_malformed_cloud_names_problem(overrides, problem):
    with pytest.raises(ValueError, match=problem.replace('[', r'\[').replace(']', r'\]').replace('(', r'\(')
                       .replace(')', r'\)')):
        cloud_to_xyzi(_xyz_cloud(**overrides))


def test_real_kitti_image_all_encodings(kitti_dir):
    rgb = read_image_rgb(kitti_dir / 'training' / 'image_2' / '000001.png')
    assert rgb.shape == (375, 1242, 3)
    from ros_ncal.ros.conversions import array_to_image_msg, rgb_to_image_msg
    for enc in ('rgb8', 'bgr8'):
        msg = rgb_to_image_msg(rgb, 'cam', 7, encoding=enc)
        np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    alpha = np.full(rgb.shape[:2] + (1,), 200, np.uint8)
    np.testing.assert_array_equal(image_to_rgb(array_to_image_msg(np.concatenate([rgb, alpha], 2), 'rgba8', 'c', 0)), rgb)
    np.testing.assert_array_equal(
        image_to_rgb(array_to_image_msg(np.concatenate([rgb[:, :, ::-1], alpha], 2), 'bgra8', 'c', 0)), rgb)
    gray = rgb[:, :, 1]
    np.testing.assert_array_equal(image_to_rgb(array_to_image_msg(gray, 'mono8', 'c', 0)), np.repeat(gray[:, :, None], 3, 2))


@pytest.mark.parametrize('encoding, dtype', [('mono16', np.uint16), ('32FC1', np.float32), ('bgr8', np.uint8)])
@pytest.mark.parametrize('big', [False, True])
def test_image_padding_and_endianness(encoding, dtype, big):
    rng = np.random.default_rng(0)
    shape = (7, 5, 3) if encoding == 'bgr8' else (7, 5)
    arr = (rng.random(shape) * 1000).astype(dtype)
    f = array_to_image_fields(arr, encoding, is_bigendian=big, row_padding=3)
    msg = _cdr_roundtrip(IMG(header=rm.header('c', 0), height=f.height, width=f.width, encoding=f.encoding,
                             is_bigendian=f.is_bigendian, step=f.step, data=np.frombuffer(f.data, np.uint8)),
                         'sensor_msgs/msg/Image')
    assert msg.step == arr.shape[1] * arr.itemsize * (3 if arr.ndim == 3 else 1) + 3
    np.testing.assert_array_equal(image_to_array(msg), arr)
    out = image_to_rgb(msg)
    assert out.shape == (7, 5, 3) and out.dtype == np.uint8
    if encoding == 'mono16':
        np.testing.assert_array_equal(out[:, :, 0], (arr.astype(np.uint32) * 255 // 65535).astype(np.uint8))


@pytest.mark.parametrize('overrides, problem', [
    ({'encoding': 'yuv422'}, "encoding 'yuv422' is not supported"),
    ({'step': 10}, 'step 10 is smaller'),
    ({'data': np.zeros(10, np.uint8)}, 'expected height'),
])
def test_bad_image_names_problem(overrides, problem):
    kw = dict(header=rm.header('c', 0), height=2, width=4, encoding='rgb8', is_bigendian=False, step=12,
              data=np.zeros(24, np.uint8))
    kw.update(overrides)
    with pytest.raises(ValueError, match=problem):
        image_to_rgb(IMG(**kw))


def test_camera_info_roundtrip_and_models():
    from ros_ncal.ros.conversions import intrinsics_to_camera_info_msg
    K = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
    for model, D in (('plumb_bob', [0.1, -0.2, 0.001, 0.002, 0.0]), ('equidistant', [0.1, 0.01, 0.0, 0.001]),
                     ('rational_polynomial', np.arange(8) * 0.01)):
        msg = intrinsics_to_camera_info_msg(CameraIntrinsics(K=K, D=np.asarray(D), distortion_model=model,
                                                             width=1242, height=375), 'cam', 9)
        back = camera_info_to_intrinsics(msg)
        np.testing.assert_array_equal(back.K, K)
        np.testing.assert_array_equal(back.D, D)
        assert (back.distortion_model, back.width, back.height) == (model, 1242, 375)
        assert np.allclose(np.asarray(msg.p).reshape(3, 4)[:, :3], K)
    bag_ci = _cdr_roundtrip(rm.camera_info(CameraIntrinsics(K=K, width=10, height=5), 'cam', 1),
                            'sensor_msgs/msg/CameraInfo')
    np.testing.assert_array_equal(camera_info_to_intrinsics(bag_ci).K, K)
    fields = intrinsics_to_camera_info_fields(CameraIntrinsics(K=K))
    with pytest.raises(ValueError, match="'kannala_brandt' is not supported"):
        camera_info_to_intrinsics(_NS(**dict(fields, distortion_model='kannala_brandt')))
    with pytest.raises(ValueError, match='plumb_bob expects'):
        camera_info_to_intrinsics(_NS(**dict(fields, d=[0.1, 0.2])))
    with pytest.raises(ValueError, match='focal'):
        camera_info_to_intrinsics(_NS(**dict(fields, k=np.zeros(9))))


class _NS:
    """A plain object with message attributes (msgcodec accepts any such object)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_transform_roundtrip_and_rigidity():
    from ros_ncal.ros.conversions import matrix_to_transform_stamped
    T = T_from_xyz_quat(np.array([0.27, 0.05, -0.07]), np.array([-0.4948, 0.5, -0.4999, 0.5053]) /
                        np.linalg.norm([-0.4948, 0.5, -0.4999, 0.5053]))
    msg = matrix_to_transform_stamped(T, 'velo_link', 'cam', 1_500_000_001)
    st_ = transform_stamped_to_matrix(msg)
    np.testing.assert_allclose(st_.T_parent_child, T, atol=1e-12)
    assert (st_.parent_frame, st_.child_frame, st_.stamp_ns) == ('velo_link', 'cam', 1_500_000_001)
    bag_t = _cdr_roundtrip(rm.transform_stamped(invert(T), 'a', 'b', 5), 'geometry_msgs/msg/TransformStamped')
    np.testing.assert_allclose(transform_stamped_to_matrix(bag_t).T_parent_child, invert(T), atol=1e-12)
    S = T.copy()
    S[:3, :3] *= 1.1
    with pytest.raises(NonRigidTransformError):
        matrix_to_transform_stamped(S, 'a', 'b', 0)
    msg.transform.rotation.w *= 2.0
    with pytest.raises(NonRigidTransformError, match='norm'):
        transform_to_matrix(msg.transform)


@given(st.integers(0, 2**62))
def test_time_roundtrip(ns):
    sec, nanosec = ns_to_sec_nanosec(ns)
    assert 0 <= nanosec < 10**9
    assert stamp_to_ns(_NS(sec=sec, nanosec=nanosec)) == ns


def test_generic_rosbags_to_rclpy_conversion():
    from ros_ncal.ros.generic import rclpy_message_class, to_rclpy
    K = np.array([[700.0, 0, 600], [0, 700, 180], [0, 0, 1]])
    info = to_rclpy(rm.camera_info(CameraIntrinsics(K=K, D=np.arange(5) * 0.1, width=1242, height=375), 'cam', 42),
                    'sensor_msgs/msg/CameraInfo')
    assert type(info).__name__ == 'CameraInfo' and info.header.frame_id == 'cam' and info.header.stamp.nanosec == 42
    np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), K)
    np.testing.assert_array_equal(info.d, np.arange(5) * 0.1)
    assert info.roi.do_rectify is False and info.width == 1242
    T = T_from_xyz_quat(np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 0.0, 1.0]))
    tf = to_rclpy(rm.tf_message([rm.transform_stamped(T, 'a', 'b', 7)]), 'tf2_msgs/msg/TFMessage')
    np.testing.assert_allclose(transform_stamped_to_matrix(tf.transforms[0]).T_parent_child, T)
    pts = np.arange(40, dtype=np.float32).reshape(10, 4)
    cloud = to_rclpy(rm.pointcloud2(pts, 'l', 0), 'sensor_msgs/msg/PointCloud2')
    np.testing.assert_array_equal(cloud_to_xyzi(cloud).points, pts)
    with pytest.raises(ImportError, match="message package 'nonexistent_msgs'"):
        rclpy_message_class('nonexistent_msgs/msg/Thing')


# --- the optional C++ conversion kernels (ros_ncal.msgcodec._native) against the numpy paths ---

def test_codec_native_kernels_are_built_here():
    from ros_ncal.msgcodec import _native
    assert _native.LIBRARY.load() is not None, f'codec kernels unavailable: {_native.LIBRARY.error}'


_LAYOUTS = {
    'packed16': ({'names': ['x', 'y', 'z', 'intensity'], 'formats': ['<f4'] * 4, 'offsets': [0, 4, 8, 12],
                  'itemsize': 16}),
    'padded32': ({'names': ['x', 'y', 'z', 'intensity', 'ring', 'time'],
                  'formats': ['<f4', '<f4', '<f4', '<f4', '<u2', '<f4'], 'offsets': [0, 4, 8, 16, 20, 24],
                  'itemsize': 32}),
    'xyz_only12': ({'names': ['x', 'y', 'z'], 'formats': ['<f4'] * 3, 'offsets': [0, 4, 8], 'itemsize': 12}),
    'xyz_at_end': ({'names': ['intensity', 'x', 'y', 'z'], 'formats': ['<f4'] * 4, 'offsets': [0, 4, 8, 12],
                    'itemsize': 16}),
    'u16_intensity': ({'names': ['x', 'y', 'z', 'intensity'], 'formats': ['<f4', '<f4', '<f4', '<u2'],
                       'offsets': [0, 4, 8, 12], 'itemsize': 16}),
    'odd_step': ({'names': ['t', 'x', 'y', 'z', 'intensity'], 'formats': ['u1', '<f4', '<f4', '<f4', '<f4'],
                  'offsets': [0, 1, 5, 9, 13], 'itemsize': 19}),
}


@pytest.mark.parametrize('layout', sorted(_LAYOUTS))
@pytest.mark.parametrize('bad', [None, np.nan, np.inf, -np.inf])
def test_cloud_native_and_numpy_paths_agree(monkeypatch, layout, bad):
    from ros_ncal.msgcodec import _native
    dt = np.dtype(_LAYOUTS[layout])
    rng = np.random.default_rng(len(layout))
    arr = np.zeros(1001, dt)
    for name in dt.names:
        arr[name] = rng.normal(size=arr.size) * 10 if dt[name].kind == 'f' else rng.integers(0, 100, arr.size)
    if bad is not None:
        arr['x'][[3, 500]] = bad
        arr['z'][1000] = bad
        if 'intensity' in dt.names and dt['intensity'].kind == 'f':
            arr['intensity'][7] = bad  # a bad intensity alone does not drop a point
    msg = _cloud_from_structured(arr)
    fast = cloud_to_xyzi(msg, extra_fields=None)
    kept = cloud_to_xyzi(msg, drop_nonfinite=False)
    monkeypatch.setattr(_native, 'xyzi_f32', lambda *a, **k: None)
    slow = cloud_to_xyzi(msg, extra_fields=None)
    np.testing.assert_array_equal(fast.points, slow.points)
    assert fast.n_dropped == slow.n_dropped == (0 if bad is None else 3)
    assert fast.extras.keys() == slow.extras.keys()
    for k in fast.extras:
        np.testing.assert_array_equal(fast.extras[k], slow.extras[k])
    assert kept.points.shape == (1001, 4) and kept.n_dropped == 0
    expect = np.stack([arr[k].astype(np.float32) if k in dt.names else np.zeros(arr.size, np.float32)
                       for k in ('x', 'y', 'z', 'intensity')], 1)
    np.testing.assert_array_equal(kept.points, expect)


@pytest.mark.parametrize('width', [1, 4, 5, 6, 7, 11, 64, 1242])
@pytest.mark.parametrize('row_padding', [0, 5])
def test_bgr8_native_swap_matches_reference(monkeypatch, width, row_padding):
    from ros_ncal.msgcodec import _native
    rng = np.random.default_rng(width)
    bgr = rng.integers(0, 256, (3, width, 3), dtype=np.uint8)
    f = array_to_image_fields(bgr, 'bgr8', row_padding=row_padding)
    msg = IMG(header=rm.header('c', 0), height=f.height, width=f.width, encoding='bgr8', is_bigendian=False,
              step=f.step, data=np.frombuffer(f.data, np.uint8))
    fast = image_to_rgb(msg)
    np.testing.assert_array_equal(fast, bgr[:, :, ::-1])
    assert fast.flags['C_CONTIGUOUS'] and fast.flags['WRITEABLE']
    monkeypatch.setattr(_native, 'bgr_to_rgb', lambda arr: None)
    np.testing.assert_array_equal(image_to_rgb(msg), fast)


def test_one_compressed_image_decoder_for_nodes_and_bags():
    """msgcodec.compressed_to_rgb: jpeg / png -> RGB; empty, depth and garbage data -> ValueError with the
    reason (the node counts it as a drop; the bag reader raises BagInputError)."""
    import io

    from PIL import Image

    from ros_ncal.msgcodec import compressed_to_rgb
    rgb = (np.arange(4 * 6 * 3) % 251).astype(np.uint8).reshape(4, 6, 3)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format='PNG')
    np.testing.assert_array_equal(compressed_to_rgb(buf.getvalue(), 'png'), rgb)
    with pytest.raises(ValueError, match='no data'):
        compressed_to_rgb(b'', 'jpeg')
    with pytest.raises(ValueError, match='depth image'):
        compressed_to_rgb(buf.getvalue(), '16UC1; compressedDepth png')
    with pytest.raises(ValueError, match='not decodable'):
        compressed_to_rgb(b'not an image', 'jpeg')
