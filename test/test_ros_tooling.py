"""The package as a ROS 2 user runs it: a colcon workspace (plain and --symlink-install), `ros2 pkg executables`,
`ros2 run`, `ros2 launch` with a KITTI bag played into calibrator, segmenter and detector, `rviz:=true` without
rviz2, and `ncal run` vs `ros2 launch` starting the same nodes.

Real tools, real processes: colcon, ros2 (ros2cli/ros2launch from the vendored upstream sources, see
scripts/install_ros_vendor.sh), node processes started by launch_ros; checks through rclpy and tf2_ros in this
process. Every process gets the network-safety environment (conftest / ros_ncal.rosenv) and a ROS domain id of
its own (101..200), so launches never see each other or the in-process tests of this session.
"""
from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy, HistoryPolicy

from ros_ncal.rosenv import apply_safe_ros_env
from ros_ncal.runner.rviz_config import DISPLAYS, display_topic
from ros_ncal.runner.suite import NODES, default_arg_values, resolve_invocations, suite_specs

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXECUTABLES = {'ncal', 'collector', 'calibrator', 'segmenter', 'detector', 'kitti_player', 'extrinsic_publisher'}

pytestmark = pytest.mark.timeout(600)

_domains = iter(range(100))


def fresh_domain() -> int:
    return 101 + (os.getpid() * 7 + next(_domains)) % 100


def ros_env(domain: int, ros_home: Path | None = None) -> dict:
    """The environment of a process started like a user would, on its own domain; ROS_HOME (logs, the generated
    RViz config, relative collector paths) in the test's temporary folder when given."""
    env = dict(os.environ)
    if ros_home is not None:
        env['ROS_HOME'] = str(ros_home)
    env['PATH'] = f'{BIN}{os.pathsep}{env.get("PATH", "")}'
    env['PYTHONUNBUFFERED'] = '1'
    env.setdefault('OMP_NUM_THREADS', '1')
    apply_safe_ros_env(domain_id=domain, environ=env)
    return env


def in_ws(ws: Path, cmd: str) -> list[str]:
    """A shell command run the way a user does it: after sourcing the workspace's setup.bash."""
    return ['bash', '-c', f'source "{ws}/install/setup.bash" && {cmd}']


def colcon_build(ws: Path, symlink: bool) -> subprocess.CompletedProcess:
    args = [str(BIN / 'colcon'), '--log-base', str(ws / 'log'), 'build', '--paths', str(REPO),
            '--build-base', str(ws / 'build'), '--install-base', str(ws / 'install'), '--event-handlers',
            'console_direct+']
    if symlink:
        args.append('--symlink-install')
    return subprocess.run(args, cwd=ws, env=ros_env(fresh_domain()), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def symlink_ws(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp('ws_symlink')
    r = colcon_build(ws, symlink=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return ws


def check_install(ws: Path, symlink: bool, build: subprocess.CompletedProcess, domain: int) -> None:
    share = ws / 'install' / 'ros_ncal' / 'share' / 'ros_ncal'
    for rel in ('package.xml', 'launch/ncal.launch.py', 'config/calibrator.yaml', 'config/ncal.rviz',
                'config/nclr/base.yaml'):
        assert (share / rel).exists(), rel
    assert (share / 'launch' / 'ncal.launch.py').is_symlink() == symlink
    for exe in EXECUTABLES:
        assert os.access(ws / 'install' / 'ros_ncal' / 'lib' / 'ros_ncal' / exe, os.X_OK), exe
    # setup.py is clean: no setuptools warnings (tests_require, data-only package not listed)
    out = build.stdout + build.stderr
    for bad in ('tests_require', 'absent from the `packages` configuration', 'Unknown distribution option'):
        assert bad not in out, bad
    r = subprocess.run(in_ws(ws, 'ros2 pkg executables ros_ncal'), env=ros_env(domain), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split('\n')) - {''} == {f'ros_ncal {e}' for e in EXECUTABLES}
    r = subprocess.run(in_ws(ws, 'ros2 pkg prefix ros_ncal'), env=ros_env(domain), capture_output=True, text=True,
                       timeout=120)
    assert Path(r.stdout.strip()) == ws / 'install' / 'ros_ncal'


def test_colcon_symlink_install_and_ros2_pkg(symlink_ws):
    r = colcon_build(symlink_ws, symlink=True)      # a second build of the same workspace is a no-op rebuild
    assert r.returncode == 0, r.stderr[-2000:]
    check_install(symlink_ws, True, r, fresh_domain())


def test_colcon_plain_build_and_ros2_pkg(tmp_path):
    r = colcon_build(tmp_path, symlink=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    check_install(tmp_path, False, r, fresh_domain())
    # a plain install is a copy: the packaged checkpoints travel with it
    assert list((tmp_path / 'install' / 'ros_ncal' / 'lib').glob('python3*/site-packages/ros_ncal/assets/seg.pt'))


# ---------------------------------------------------------------------------------------------------------------
class Graph:
    """An rclpy node in its own context on a given domain: graph queries, subscriptions, parameters."""

    def __init__(self, domain: int):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node('ncal_tooling_probe', context=self.ctx)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)

    def spin_until(self, cond, timeout: float, step: float = 0.1, procs=()) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=step)
            if cond():
                return True
            for p in procs:
                assert p.poll() is None, f'process exited early with {p.returncode}: {read_log(p)[-3000:]}'
        return cond()

    def node_names(self) -> set[str]:
        return {n for n, ns in self.node.get_node_names_and_namespaces() if ns == '/'} - {'ncal_tooling_probe'}

    def parameters(self, name: str) -> dict:
        from rcl_interfaces.srv import GetParameters, ListParameters
        from rclpy.parameter import parameter_value_to_python
        lst = self.call(ListParameters, f'/{name}/list_parameters', ListParameters.Request())
        names = sorted(lst.result.names)
        got = self.call(GetParameters, f'/{name}/get_parameters', GetParameters.Request(names=names))
        return {n: parameter_value_to_python(v) for n, v in zip(names, got.values)}

    def call(self, srv_type, srv_name: str, request, timeout: float = 30.0):
        cli = self.node.create_client(srv_type, srv_name)
        assert self.spin_until(cli.service_is_ready, timeout), f'{srv_name} not available'
        fut = cli.call_async(request)
        assert self.spin_until(fut.done, timeout), f'{srv_name} did not answer'
        self.node.destroy_client(cli)
        return fut.result()

    def topics_of(self, name: str) -> tuple[list, list]:
        subs = sorted(t for t, _ in self.node.get_subscriber_names_and_types_by_node(name, '/'))
        pubs = sorted(t for t, _ in self.node.get_publisher_names_and_types_by_node(name, '/'))
        return subs, pubs

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


@pytest.fixture
def graph_factory():
    made = []

    def make(domain):
        made.append(Graph(domain))
        return made[-1]
    yield make
    for g in made:
        g.close()


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    fh = open(log, 'w')
    p = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    p.log_path = log
    return p


def read_log(p) -> str:
    return Path(p.log_path).read_text(errors='replace')


def interrupt(p: subprocess.Popen, timeout: float = 60.0, group: bool = True) -> int:
    """Ctrl-C as a terminal sends it (SIGINT to the process group; ``group=False``: to the process only, as
    ``kill -INT``); return the exit code.

    Fails if the process (or anything it started) is still running after ``timeout``.
    """
    if p.poll() is not None:
        return p.returncode
    try:
        family = [psutil.Process(p.pid)] + psutil.Process(p.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    try:
        if group:
            os.killpg(p.pid, signal.SIGINT)
        else:
            os.kill(p.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        pytest.fail(f'{p.args} did not stop within {timeout} s of SIGINT: {read_log(p)[-3000:]}')
    _gone, alive = psutil.wait_procs(family, timeout=15)
    for proc in alive:
        proc.kill()
    assert not alive, f'left running after SIGINT: {[a.pid for a in alive]}'
    return rc


# ---------------------------------------------------------------------------------------------------------------
def test_ros2_run_calibrator_starts_and_stops_cleanly(symlink_ws, tmp_path, graph_factory):
    domain = fresh_domain()
    g = graph_factory(domain)
    p = start(in_ws(symlink_ws, 'exec ros2 run ros_ncal calibrator --ros-args --params-file config/calibrator.yaml'),
              ros_env(domain, tmp_path), tmp_path / 'run.log')
    try:
        assert g.spin_until(lambda: 'calibrator' in g.node_names(), 120, procs=[p]), read_log(p)[-3000:]
        params = g.parameters('calibrator')
        yaml_params = yaml.safe_load((REPO / 'config' / 'calibrator.yaml').read_text())['/**']['ros__parameters']
        assert params['min_period_s'] == yaml_params['min_period_s']
        assert params['tf.min_confidence'] == yaml_params['tf']['min_confidence']
    finally:
        rc = interrupt(p)
    log = read_log(p)
    assert rc == 0, log[-3000:]
    assert 'Traceback' not in log, log[-3000:]


def test_rviz_without_rviz2_fails_before_any_node(symlink_ws, tmp_path):
    p = start(in_ws(symlink_ws, 'exec ros2 launch ros_ncal ncal.launch.py rviz:=true'),
              ros_env(fresh_domain(), tmp_path), tmp_path / 'rviz.log')
    try:
        rc = p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        interrupt(p)
        pytest.fail('ros2 launch rviz:=true did not fail: ' + read_log(p)[-3000:])
    log = read_log(p)
    assert rc != 0
    assert 'the rviz2 package is not installed' in log and 'No node was started' in log, log[-3000:]
    assert 'process started' not in log, log[-3000:]


def test_ros2_launch_suite_on_kitti_bag(symlink_ws, tmp_path, kitti_dir, graph_factory):
    """ncal.launch.py with calibrator, segmenter and detector; a KITTI bag played with `ncal play`;
    /tf_static (through tf2_ros), ~/overlay, ~/labeled_points and ~/detections3d arrive; Ctrl-C stops all."""
    from sensor_msgs.msg import Image, PointCloud2
    from tf2_ros import Buffer, TransformListener
    from vision_msgs.msg import Detection3DArray

    domain = fresh_domain()
    env = ros_env(domain, tmp_path)
    bag = tmp_path / 'kitti' / 'kitti.mcap'          # -> bag directory tmp/kitti/kitti/ holding kitti.mcap
    r = subprocess.run([str(BIN / 'ncal'), 'bag', 'write-kitti', str(kitti_dir / 'training'), str(bag),
                        '--frames', '000001', '000002', '--hz', '2'], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    # every node reads its sensors RELIABLY (1-2 MB best-effort samples are lost under SHM, docs/design.md)
    extra = tmp_path / 'reliable.yaml'
    extra.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'sensor_qos_reliable': True,
                                                                  'input': {'reliable': True}}}}))
    args = {'segmenter': 'true', 'detector': 'true', 'config': str(extra)}
    expected = {inv.spec.name for inv in resolve_invocations(suite_specs('default'), args)}
    assert expected == {'extrinsic_publisher', 'calibrator', 'segmenter', 'detector'}

    g = graph_factory(domain)
    got = {'overlay': 0, 'labeled_points': 0, 'detections3d': 0}
    q = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.VOLATILE)

    def counter(key):
        def cb(_msg):
            got[key] += 1
        return cb
    g.node.create_subscription(Image, '/calibrator/overlay', counter('overlay'), q)
    g.node.create_subscription(PointCloud2, '/segmenter/labeled_points', counter('labeled_points'), q)
    g.node.create_subscription(Detection3DArray, '/detector/detections3d', counter('detections3d'), q)
    tf_buffer = Buffer()
    TransformListener(tf_buffer, g.node, spin_thread=False)

    launch_args = ' '.join(f'{k}:={v}' for k, v in args.items())
    launch = start(in_ws(symlink_ws, f'exec ros2 launch ros_ncal ncal.launch.py {launch_args}'), env,
                   tmp_path / 'launch.log')
    player = None
    try:
        assert g.spin_until(lambda: g.node_names() >= expected, 180, procs=[launch]), \
            f'nodes {g.node_names()} != {expected}: {read_log(launch)[-3000:]}'
        assert g.node_names() == expected
        # the RViz config generated for these arguments names topics that the running nodes publish
        values = {**default_arg_values(), **args}
        want = {display_topic(d, values) for d in DISPLAYS if d.node in expected}

        def published():
            return {t for n in expected for t in g.topics_of(n)[1]}
        assert g.spin_until(lambda: want <= published(), 120, procs=[launch]), want - published()
        player = start([str(BIN / 'ncal'), 'play', str(bag.with_suffix('')), '--loop', '--rate', '1', '--wait-for-subscribers', '60'],
                       env, tmp_path / 'play.log')

        def tf_ok():
            return tf_buffer.can_transform('camera_color_left_optical_frame', 'velo_link', rclpy.time.Time())
        ok = g.spin_until(lambda: tf_ok() and all(got.values()), 240, procs=[launch, player])
        assert ok, f'received {got}, tf {tf_ok()}: {read_log(launch)[-4000:]}'
        T = tf_buffer.lookup_transform('camera_color_left_optical_frame', 'velo_link', rclpy.time.Time())
        assert T.header.frame_id == 'camera_color_left_optical_frame'
    finally:
        try:
            if player is not None:
                interrupt(player)
        finally:
            rc = interrupt(launch, timeout=150.0, group=False)   # nodes unload torch models under load
    log = read_log(launch)
    assert rc == 0, log[-3000:]
    for name in expected:   # each node process started and ended cleanly
        assert f'[{name}-' in log
    assert 'Traceback' not in log, log[-4000:]
    assert 'process has died' not in log, log[-4000:]


def test_ncal_run_and_ros2_launch_start_the_same_nodes(symlink_ws, tmp_path, graph_factory):
    """Same launch arguments -> the same node names, topics and parameters, from ros2 launch and ncal run."""
    out = tmp_path / 'dataset'
    extra = tmp_path / 'extra.yaml'
    extra.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'output_dir': str(out), 'autostart': False}}}))
    args = {'calibrator': 'false', 'collector': 'true', 'points_topic': '/velodyne_points', 'config': str(extra)}
    expected = {inv.spec.name for inv in resolve_invocations(suite_specs('default'), args)}
    assert expected == {'extrinsic_publisher', 'collector'}

    def observe(cmd: list[str], label: str) -> dict:
        domain = fresh_domain()
        g = graph_factory(domain)
        p = start(cmd, ros_env(domain, tmp_path), tmp_path / f'{label}.log')
        try:
            assert g.spin_until(lambda: g.node_names() >= expected, 180, procs=[p]), read_log(p)[-3000:]
            seen = {}
            for name in sorted(expected):
                # discovery of the endpoints settles: the same answer twice in a row
                prev = None
                for _ in range(50):
                    g.spin_until(lambda: False, 0.2)
                    cur = g.topics_of(name)
                    if cur == prev and cur[0]:
                        break
                    prev = cur
                seen[name] = {'topics': cur, 'parameters': g.parameters(name)}
        finally:
            assert interrupt(p) == 0, read_log(p)[-3000:]
        return seen

    arg_str = ' '.join(f'{k}:={v}' for k, v in args.items())
    launched = observe(in_ws(symlink_ws, f'exec ros2 launch ros_ncal ncal.launch.py {arg_str}'), 'launch')
    ran = observe([str(BIN / 'ncal'), 'run'] + [x for k, v in args.items() for x in ('--arg', f'{k}:={v}')], 'run')
    assert set(launched) == set(ran) == expected
    for name in expected:
        assert launched[name]['topics'] == ran[name]['topics'], name
        assert launched[name]['parameters'] == ran[name]['parameters'], name
    assert '/velodyne_points' in launched['collector']['topics'][0]
    assert launched['collector']['parameters']['output_dir'] == str(out)


def test_collector_relative_output_dir_is_under_ros_home(monkeypatch, tmp_path):
    from ros_ncal.nodes.collector import CollectorConfig
    monkeypatch.setenv('ROS_HOME', str(tmp_path / 'roshome'))
    cfg = CollectorConfig(output_dir='ncal_dataset')
    cfg.validate()
    assert cfg.output_dir == str(tmp_path / 'roshome' / 'ncal_dataset')
    monkeypatch.delenv('ROS_HOME')
    cfg = CollectorConfig(output_dir='ncal_dataset')
    cfg.validate()
    assert cfg.output_dir == str(Path.home() / '.ros' / 'ncal_dataset')
    cfg = CollectorConfig(output_dir=str(tmp_path / 'abs'))
    cfg.validate()
    assert cfg.output_dir == str(tmp_path / 'abs')


def test_rviz_config_follows_arguments_and_nodes():
    from ros_ncal.runner.rviz_config import render_rviz_config
    template = (REPO / 'config' / 'ncal.rviz').read_text()
    values = {**default_arg_values(), 'points_topic': '/velodyne_points', 'image_topic': '/cam/image'}
    cfg = yaml.safe_load(render_rviz_config(template, values, ['calibrator', 'segmenter']))
    shown = {d['Name']: (d['Topic']['Value'], d['Enabled']) for d in cfg['Visualization Manager']['Displays']
             if 'Topic' in d}
    assert shown == {'Points': ('/velodyne_points', True), 'Camera image': ('/cam/image', True),
                     'Extrinsic overlay': ('/extrinsic_publisher/overlay', False),
                     'Calibration overlay': ('/calibrator/overlay', True),
                     'Labeled points (segmenter)': ('/segmenter/labeled_points', True),
                     'Detections': ('/detector/detections', False)}
    # the launch builder really uses it (and checks rviz2 before creating any node)
    src = (REPO / 'ros_ncal' / 'runner' / 'launch_builder.py').read_text()
    tree = ast.parse(src)
    assert 'check_rviz_available' in src and 'generated_rviz_file' in src and tree
    assert set(NODES) >= {d.node for d in DISPLAYS if d.node}
