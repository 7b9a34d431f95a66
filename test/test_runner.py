"""Node suite description, launch files, and the plain-venv runner starting a real node from YAML."""
import ast
import time
from pathlib import Path

import numpy as np
import pytest

import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.executors import SingleThreadedExecutor
from tf2_msgs.msg import TFMessage

from ros_ncal.cli import main as ncal
from ros_ncal.geometry import T_from_xyz_quat, invert
from ros_ncal.msgcodec import transform_stamped_to_matrix
from ros_ncal.ros.qos import TF_STATIC_QOS, latched_qos
from ros_ncal.runner.suite import (NODES, SUITES, NodeSpec, check_params_file, config_dir, resolve_invocations,
                                   suite_specs)
from ros_ncal.ros.suite_runner import NodeMissingError, SuiteRunner

REPO = Path(__file__).resolve().parents[1]


def test_suite_resolves_to_ros_args():
    invs = resolve_invocations(suite_specs('default'), {'points_topic': '/velodyne_points', 'checkpoint': '/m.pt',
                                                        'calibrator': 'true'}, check_files=False)
    names = [i.spec.name for i in invs]
    assert names == ['extrinsic_publisher', 'calibrator']  # collector/segmenter/detector are off by default
    cal = invs[1]
    assert cal.params == {'use_sim_time': False, 'checkpoint': '/m.pt'}
    args = cal.ros_args()
    assert args[:3] == ['--ros-args', '-r', '__node:=calibrator']
    assert '-r' in args and 'points:=/velodyne_points' in args and 'checkpoint:=/m.pt' in args
    assert str(config_dir() / 'calibrator.yaml') in args
    with pytest.raises(KeyError, match='unknown launch argument'):
        resolve_invocations(suite_specs('demo'), {'nope': '1'})
    with pytest.raises(KeyError, match='unknown suite'):
        suite_specs('nope')


def test_params_file_form_is_checked(tmp_path):
    check_params_file(config_dir() / 'extrinsic_publisher.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('lidar_frame: x\n')
    with pytest.raises(ValueError, match='lacks "ros__parameters:"'):
        check_params_file(bad)


def test_launch_files_use_the_suite():
    """Launch files only run on a ROS install (no `launch` here): check they parse and name suite nodes."""
    files = sorted((REPO / 'launch').glob('*.launch.py'))
    assert {f.name for f in files} >= {'ncal.launch.py', *(f'{n}.launch.py' for n in NODES)}
    for f in files:
        tree = ast.parse(f.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description' for n in tree.body)
        assert 'ros_ncal.runner.launch_builder' in f.read_text()
    for name in SUITES['default']:
        assert NODES[name].executable and ':' in NODES[name].entry


def test_runner_starts_node_from_yaml_with_override(ros_context):
    xyz, q = [0.1, -0.2, 0.3], [0.0, 0.0, float(np.sin(0.25)), float(np.cos(0.25))]
    invs = resolve_invocations(suite_specs('demo'))
    invs[0].params.update({'extrinsic_source': 'xyz_quat', 'T_cam_lidar_xyz_quat': xyz + q,
                           'camera_frame': 'cam_test_optical'})
    listener = rclpy.create_node('runner_listener', context=ros_context)
    got, tf = [], []
    listener.create_subscription(TransformStamped, '/extrinsic_publisher/extrinsic', got.append, latched_qos(1))
    listener.create_subscription(TFMessage, '/tf_static', tf.append, TF_STATIC_QOS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(listener)
    with SuiteRunner(invs, context=ros_context) as runner:
        assert runner.report.started == ['/extrinsic_publisher']
        node = runner.nodes[0]
        # YAML value kept, override applied, remap from the suite in force.
        assert node.get_parameter('pair_tolerance_ms').value == 50.0
        assert node.get_parameter('camera_frame').value == 'cam_test_optical'
        subs = {t for t, _ in node.get_topic_names_and_types()}
        assert '/kitti/velo/points' in subs
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (got and tf):
            ex.spin_once(timeout_sec=0.05)
    assert got and tf
    T_expected = T_from_xyz_quat(np.array(xyz), np.array(q))
    st = transform_stamped_to_matrix(got[0])
    assert (st.parent_frame, st.child_frame) == ('velo_link', 'cam_test_optical')
    np.testing.assert_allclose(invert(st.T_parent_child), T_expected, atol=1e-9)
    np.testing.assert_allclose(transform_stamped_to_matrix(tf[0].transforms[0]).T_parent_child, st.T_parent_child)
    ex.shutdown()
    listener.destroy_node()


def test_string_parameters_that_yaml_would_misread_reach_the_node_as_strings(ros_context):
    """rcl parses ``-p name:=value`` as YAML: an empty string (``-p x:=``) used to abort the node's start-up
    ("Couldn't parse parameter override rule"), and 'true' / '1.5' would arrive as a bool / a double."""
    invs = resolve_invocations(suite_specs('demo'))
    invs[0].params.update({'camera_frame': '', 'lidar_frame': 'true'})
    args = invs[0].ros_args()
    assert args[args.index('camera_frame:=""') - 1] == '-p'
    with SuiteRunner(invs, context=ros_context) as runner:
        node = runner.nodes[0]
        assert node.get_parameter('camera_frame').value == ''
        assert node.get_parameter('lidar_frame').value == 'true'


def test_missing_node_is_reported(ros_context):
    spec = NodeSpec('ghost', 'ros_ncal.nodes.ghost_node:Ghost', 'ghost', enable_arg='extrinsic_publisher')
    invs = resolve_invocations([spec, NODES['extrinsic_publisher']], check_files=False)
    with pytest.raises(NodeMissingError, match="node 'ghost': module ros_ncal.nodes.ghost_node is not available"):
        SuiteRunner(invs, context=ros_context).start()
    runner = SuiteRunner(invs, context=ros_context, skip_missing=True).start()
    try:
        assert 'ghost' in runner.report.missing and runner.report.started == ['/extrinsic_publisher']
    finally:
        runner.stop()


def test_ncal_run_cli_list(capsys):
    assert ncal(['run', '--suite', 'demo', '--list', '--param', 'extrinsic_publisher:overlay_every_n:=3']) == 0
    out = capsys.readouterr().out
    assert '-p overlay_every_n:=3' in out and '--params-file' in out
    # a node that is enabled by a launch argument shows up in the resolved list
    assert ncal(['run', '--suite', 'default', '--list', '--arg', 'segmenter:=true']) == 0
    assert 'segmenter' in capsys.readouterr().out


def test_ncal_demo_end_to_end(tmp_path, kitti_dir, capsys):
    import json
    out = tmp_path / 'demo'
    rc = ncal(['demo', '--kitti-dir', str(kitti_dir / 'training'), '--out', str(out), '--repeat', '1', '--rate', '0',
               '--keep-overlays', '2'])
    assert rc == 0, capsys.readouterr()
    s = json.loads((out / 'summary.json').read_text())
    n_frames = len(list((kitti_dir / 'training' / 'velodyne').glob('*.bin')))
    assert s['overlays_received'] == s['overlays_expected'] == n_frames
    assert len(s['overlay_files']) == 2 and all(Path(f).exists() for f in s['overlay_files'])
    assert len(s['recorded_extrinsics']) == 3  # 000000 and 000006 have calibration days of their own
    assert s['published_extrinsics'] and all(c['rotation_error_deg'] < 1e-6 and c['translation_error_m'] < 1e-9
                                             for c in s['published_extrinsics'])
    from PIL import Image
    assert np.asarray(Image.open(s['overlay_files'][0])).shape[2] == 3
