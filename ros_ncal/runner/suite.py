"""THE single description of which nodes start, with which parameters and remaps.

Read by ``launch/*.launch.py`` (real ROS installs, through :mod:`.launch_builder`) and by the
plain-venv runner ``ncal run`` (:mod:`.suite_runner`), so the two cannot drift. No rclpy here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str


@dataclass(frozen=True)
class NodeSpec:
    """One node of a suite.

    entry: 'module:Class' of the rclpy Node subclass; the class must accept ``**kwargs`` and pass
    them to ``rclpy.node.Node.__init__`` (the runner gives ``context`` and ``cli_args``).
    executable: its console script in setup.py (what ``ros2 launch`` starts).
    param_files: YAML files in config/ (``/**: ros__parameters:`` form), applied in order.
    remaps: (topic name used in the node, launch argument giving the real topic).
    arg_params: (node parameter, launch argument) pairs, e.g. ('checkpoint', 'checkpoint').
    enable_arg: launch argument ('true'/'false') that starts this node.
    """
    name: str
    entry: str
    executable: str
    param_files: tuple[str, ...] = ()
    remaps: tuple[tuple[str, str], ...] = ()
    arg_params: tuple[tuple[str, str], ...] = ()
    enable_arg: str = ''
    enabled_by_default: bool = True

    @property
    def module(self) -> str:
        return self.entry.split(':', 1)[0]

    @property
    def class_name(self) -> str:
        return self.entry.split(':', 1)[1]


LAUNCH_ARGS: tuple[LaunchArg, ...] = (
    LaunchArg('points_topic', '/kitti/velo/points', 'PointCloud2 input topic'),
    LaunchArg('image_topic', '/kitti/camera/image_raw', 'Image input topic'),
    LaunchArg('camera_info_topic', '/kitti/camera/camera_info', 'CameraInfo input topic'),
    LaunchArg('checkpoint', '', 'model checkpoint file for the learned nodes'),
    LaunchArg('config', '', 'extra parameter YAML applied to every node after the packaged ones'),
    LaunchArg('use_sim_time', 'false', 'use /clock time'),
    LaunchArg('rviz', 'false', 'start RViz with config/ncal.rviz'),
)

SENSOR_REMAPS = (('points', 'points_topic'), ('image', 'image_topic'), ('camera_info', 'camera_info_topic'))

NODES: dict[str, NodeSpec] = {spec.name: spec for spec in (
    NodeSpec('extrinsic_publisher', 'ros_ncal.nodes.extrinsic_publisher:ExtrinsicPublisher', 'extrinsic_publisher',
             param_files=('extrinsic_publisher.yaml',), remaps=SENSOR_REMAPS,
             enable_arg='extrinsic_publisher', enabled_by_default=True),
    NodeSpec('collector', 'ros_ncal.nodes.collector:CollectorNode', 'collector',
             param_files=('collector.yaml',), remaps=SENSOR_REMAPS, enable_arg='collector', enabled_by_default=False),
    NodeSpec('calibrator', 'ros_ncal.nodes.calibrator:CalibratorNode', 'calibrator',
             param_files=('calibrator.yaml',), remaps=SENSOR_REMAPS, arg_params=(('checkpoint', 'checkpoint'),),
             enable_arg='calibrator', enabled_by_default=True),
    NodeSpec('segmenter', 'ros_ncal.nodes.segmenter:SegmenterNode', 'segmenter',
             param_files=('segmenter.yaml',), remaps=(('points', 'points_topic'),),
             arg_params=(('checkpoint', 'checkpoint'),), enable_arg='segmenter', enabled_by_default=False),
    NodeSpec('detector', 'ros_ncal.nodes.detector:DetectorNode', 'detector',
             param_files=('detector.yaml',), remaps=(('points', 'points_topic'),),
             arg_params=(('checkpoint', 'checkpoint'),), enable_arg='detector', enabled_by_default=False),
)}

SUITES: dict[str, tuple[str, ...]] = {
    'default': ('extrinsic_publisher', 'collector', 'calibrator', 'segmenter', 'detector'),
    'demo': ('extrinsic_publisher',),
    # `ncal demo`: online calibration of a replayed bag, plus a collector recording the same stream
    'demo_full': ('calibrator', 'collector'),
}


def suite_specs(name: str) -> list[NodeSpec]:
    if name not in SUITES:
        raise KeyError(f'unknown suite {name!r}; known: {sorted(SUITES)}')
    return [NODES[n] for n in SUITES[name]]


def default_arg_values() -> dict[str, str]:
    values = {a.name: a.default for a in LAUNCH_ARGS}
    for spec in NODES.values():
        values[spec.enable_arg] = 'true' if spec.enabled_by_default else 'false'
    return values


def config_dir() -> Path:
    """The packaged config/ folder: $NCAL_CONFIG_DIR, the source tree's, or the ament share's."""
    if os.environ.get('NCAL_CONFIG_DIR'):
        return Path(os.environ['NCAL_CONFIG_DIR'])
    src = Path(__file__).resolve().parents[2] / 'config'
    if src.is_dir():
        return src
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('ros_ncal')) / 'config'
    except Exception as exc:  # noqa: BLE001 - report what we tried
        raise FileNotFoundError(f'config/ not found next to the sources ({src}) nor via ament index: {exc}') from None


def is_true(value: str) -> bool:
    return str(value).strip().lower() in ('1', 'true', 'yes', 'on')


@dataclass
class NodeInvocation:
    """A NodeSpec resolved against launch-argument values: what to start and how."""
    spec: NodeSpec
    param_files: list[Path]
    params: dict[str, object] = field(default_factory=dict)
    remaps: list[tuple[str, str]] = field(default_factory=list)

    def check_files(self) -> None:
        for f in self.param_files:
            check_params_file(f)

    def ros_args(self) -> list[str]:
        """The ``--ros-args`` list rcl understands: node name, params files, remaps, params."""
        args = ['--ros-args', '-r', f'__node:={self.spec.name}']
        for f in self.param_files:
            args += ['--params-file', str(f)]
        for src, dst in self.remaps:
            args += ['-r', f'{src}:={dst}']
        for k, v in self.params.items():
            args += ['-p', f'{k}:={_param_literal(v)}']
        return args


class RawParam(str):
    """A parameter value already written as a ``-p`` literal (YAML), e.g. typed by a user after ``:=``
    (``ncal run --param overlay_every_n:=3``): passed to rcl unquoted, so it is parsed as ``ros2 run -p``
    would parse it."""


def _param_literal(v) -> str:
    """The value of a ``-p name:=value`` rule, which rcl parses as YAML: a string that YAML would read as
    something else (``''``, ``'true'``, ``'1.5'``, ``'null'``, ``'a: b'``) is double-quoted."""
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, RawParam):
        return str(v)
    if isinstance(v, str):
        import json

        import yaml
        try:
            plain = v != '' and yaml.safe_load(v) == v
        except yaml.YAMLError:
            plain = False
        return v if plain else json.dumps(v)
    if isinstance(v, (list, tuple)):
        import json
        return json.dumps([x.item() if hasattr(x, 'item') else x for x in v])
    return str(v)


def resolve_invocations(specs: list[NodeSpec], arg_values: dict[str, str] | None = None,
                        cfg_dir: Path | None = None, check_files: bool = True) -> list[NodeInvocation]:
    """Enabled specs -> NodeInvocations.

    check_files: verify each params file exists and is in ``/**: ros__parameters:`` form now
    (the runner checks later, after importing the node class, to report missing nodes first).
    """
    values = default_arg_values()
    unknown = set(arg_values or {}) - set(values)
    if unknown:
        raise KeyError(f'unknown launch argument(s) {sorted(unknown)}; known: {sorted(values)}')
    values.update(arg_values or {})
    cfg_dir = cfg_dir or config_dir()
    out = []
    for spec in specs:
        if not is_true(values.get(spec.enable_arg, 'true')):
            continue
        files = [cfg_dir / f for f in spec.param_files]
        if values.get('config'):
            files.append(Path(values['config']))
        params: dict[str, object] = {'use_sim_time': is_true(values['use_sim_time'])}
        for pname, arg in spec.arg_params:
            if values.get(arg):
                params[pname] = values[arg]
        remaps = [(src, values[arg]) for src, arg in spec.remaps if values.get(arg)]
        inv = NodeInvocation(spec=spec, param_files=files, params=params, remaps=remaps)
        if check_files:
            inv.check_files()
        out.append(inv)
    return out


def check_params_file(path: Path) -> None:
    """Raise ValueError unless ``path`` is a YAML mapping of node patterns to {ros__parameters: {...}}."""
    import yaml
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'parameter file not found: {path}')
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not data:
        raise ValueError(f'{path}: expected "/**: ros__parameters: ..." at the top level')
    for key, body in data.items():
        if not isinstance(body, dict) or 'ros__parameters' not in body:
            raise ValueError(f'{path}: entry {key!r} lacks "ros__parameters:"')
