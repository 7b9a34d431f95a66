"""Imports only point down (docs/design.md, "Layers"): every module of ros_ncal is parsed with ``ast``
(module-level and function-level imports alike) and checked against the layer order below.

A static check: nothing is imported, so it runs in well under a second.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'ros_ncal'

# Lowest first. A module may import its own unit and any unit of a lower (or equal) rank, never a higher one.
# A unit is the first name under ros_ncal (a subpackage or a top-level module); ros_ncal.ros.harness is a unit of its
# own (SUB_UNITS), so that rclpy stays under ros/ and nodes/ while no node or adapter can depend on a harness.
LAYERS: list[tuple[str, ...]] = [
    # foundation: typed config and node-parameter fields (config_io), drops and the health verdict, the nodes'
    # worker thread, ...; they import only each other
    ('__init__', 'config_io', 'nativelib', 'health', 'worker', 'rosenv', 'assets',
     'blas_threads'),
    ('geometry',),      # SE(3), cameras, boxes
    ('msgcodec',),      # ROS message fields <-> numpy, without ROS
    ('data',),          # Samples, dataset and rosbag2 readers, shards
    ('bag',),           # writing rosbag2 files, dataset -> bag exporters
    ('viz',),           # overlays and figures
    ('models',),        # sparse engine, backbones, heads, checkpoints, inference
    ('calib',),         # calibration results, fusion, classical, joint, evaluation, registry
    ('nclr',),          # the learned calibrator (returns calib.CalibResult)
    ('eval',),          # task metrics
    ('train',),         # pretraining, fine-tuning
    # ---- above this line: the library; no ROS imports ----
    ('runner',),        # the suite's description and the launch description; no rclpy, launch imported only inside
                        # functions (test_runner_imports_ros_only_in_functions)
    ('ros',),           # rclpy adapters the nodes and commands use: TF, QoS, conversions, image decoding, bag player,
                        # the plain-venv suite runner
    ('nodes',),         # the ROS 2 nodes
    ('ros.harness',),   # drive a suite on a live graph and record its outputs (ncal demo, tests); above nodes, so
                        # that no node depends on a demo or test harness
    ('commands', 'cli_errors', 'cli'),  # the ncal command line
]
FIRST_ROS_LAYER = 'runner'

# Packages the library must not import: the ROS client library, launch, tf and the message packages.
ROS_PACKAGES = {'rclpy', 'launch', 'launch_ros', 'launch_testing', 'tf2_ros', 'tf2_py', 'message_filters',
                'rosbag2_py', 'rosidl_runtime_py', 'cv_bridge', 'sensor_msgs', 'geometry_msgs', 'std_msgs',
                'std_srvs', 'tf2_msgs', 'builtin_interfaces', 'diagnostic_msgs', 'visualization_msgs',
                'vision_msgs', 'lifecycle_msgs', 'rcl_interfaces'}

# The only upward imports allowed: registries that find implementations living in a higher layer. Each must
# be inside a function (imported on first use), never at module level.
#   (importing module, imported module): why
ALLOWED_UPWARD = {
    ('ros_ncal.calib.registry', 'ros_ncal.nclr.calibrator'): 'factory of the "nclr" calibrator',
    ('ros_ncal.calib.registry', 'ros_ncal.nclr.multistart'): 'factory of the "nclr_wide" calibrator',
    ('ros_ncal.nativelib', 'ros_ncal.models.sparse.engines.native'): 'build_all(): modules that register a library',
    ('ros_ncal.nativelib', 'ros_ncal.msgcodec._native'): 'build_all(): modules that register a library',
}

RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


SUB_UNITS = ('ros.harness',)


def _unit(module: str) -> str:
    parts = module.split('.')
    sub = next((u for u in SUB_UNITS if ('.'.join(parts[1:]) + '.').startswith(u + '.')), None)
    return sub or (parts[1] if len(parts) > 1 else '__init__')


def _imports(path: Path):
    """-> [(imported module, line, at module level?)] for every import statement in the file."""
    module = _module_name(path)
    package = module if path.name == '__init__.py' else module.rpartition('.')[0]
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(n) for n in tree.body}
    # statements under a module-level if/try (e.g. optional imports) count as module level too
    for n in tree.body:
        if isinstance(n, (ast.If, ast.Try)):
            top_level.update(id(c) for c in ast.walk(n))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - (node.level - 1)]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            # 'from pkg import mod' imports pkg.mod when mod is a submodule
            names = [target] + [f'{target}.{a.name}' for a in node.names if _is_module(f'{target}.{a.name}')]
        else:
            continue
        out += [(name, node.lineno, id(node) in top_level) for name in names]
    return out


def _is_module(name: str) -> bool:
    if not name.startswith('ros_ncal.'):
        return False
    p = PACKAGE.parent.joinpath(*name.split('.'))
    return p.with_suffix('.py').is_file() or (p / '__init__.py').is_file()


def _modules():
    return sorted(p for p in PACKAGE.rglob('*.py') if '__pycache__' not in p.parts)


def test_every_unit_has_a_layer():
    units = {_unit(_module_name(p)) for p in _modules()}
    missing = sorted(units - set(RANK))
    assert not missing, f'place these in LAYERS (test/test_layering.py) and docs/design.md: {missing}'


def test_imports_point_down():
    bad = []
    for path in _modules():
        module = _module_name(path)
        src = _unit(module)
        for target, line, top in _imports(path):
            if not target.startswith('ros_ncal.') or _unit(target) == src:
                continue
            dst = _unit(target)
            if RANK.get(dst, -1) <= RANK.get(src, len(LAYERS)):
                continue
            allowed = next((k for k in ALLOWED_UPWARD if module == k[0] and (target + '.').startswith(k[1] + '.')),
                           None)
            if allowed and not top:
                continue
            why = ' (allowed only inside a function)' if allowed else ''
            bad.append(f'{path.relative_to(PACKAGE.parent)}:{line}: {src} imports {target} ({dst} is above {src}){why}')
    assert not bad, 'upward imports:\n' + '\n'.join(bad)


def test_no_ros_in_the_library():
    limit = RANK[FIRST_ROS_LAYER]
    bad = []
    for path in _modules():
        module = _module_name(path)
        if RANK.get(_unit(module), len(LAYERS)) >= limit:
            continue
        for target, line, _ in _imports(path):
            if target.split('.')[0] in ROS_PACKAGES:
                bad.append(f'{path.relative_to(PACKAGE.parent)}:{line}: imports {target}')
    assert not bad, 'ROS imports below ros_ncal/runner, ros_ncal/ros and ros_ncal/nodes:\n' + '\n'.join(bad)


def test_rclpy_only_in_ros_and_nodes():
    """The ROS client library is imported by ros_ncal/ros (adapters, suite runner, harnesses) and ros_ncal/nodes
    only, at module level or in a function alike."""
    bad = []
    for path in _modules():
        if _module_name(path).split('.')[1:2] in (['ros'], ['nodes']):
            continue
        bad += [f'{path.relative_to(PACKAGE.parent)}:{line}: imports {target}'
                for target, line, _ in _imports(path) if target.split('.')[0] == 'rclpy']
    assert not bad, 'rclpy outside ros_ncal/ros and ros_ncal/nodes:\n' + '\n'.join(bad)


def test_runner_imports_ros_only_in_functions():
    """ros_ncal.runner is read without ROS (``ncal run --list``, the launch files before launch starts anything):
    rclpy, launch and the other ROS packages only inside the functions that start nodes or build the launch
    description."""
    bad = []
    for path in _modules():
        if _unit(_module_name(path)) != 'runner':
            continue
        for target, line, top in _imports(path):
            if top and target.split('.')[0] in ROS_PACKAGES | {'ament_index_python'}:
                bad.append(f'{path.relative_to(PACKAGE.parent)}:{line}: imports {target} at module level')
    assert not bad, 'ROS imports at module level in ros_ncal/runner:\n' + '\n'.join(bad)


def test_the_checker_sees_function_level_and_relative_imports():
    """The parser must not miss the imports this test exists for."""
    pkg = PACKAGE / 'calib'
    found = {t for t, _, top in _imports(pkg / 'registry.py') if not top}
    assert 'ros_ncal.nclr.calibrator' in found
    found = {t for t, _, _ in _imports(PACKAGE / 'bag' / 'writer.py')}
    assert 'ros_ncal.bag.rosbags_msgs' in found            # 'from . import rosbags_msgs as rm'
    assert all(_unit(k[0]) in RANK and _unit(k[1]) in RANK for k in ALLOWED_UPWARD)
    for mod, target in ALLOWED_UPWARD:       # an exception that is no longer needed must go
        path = PACKAGE.parent.joinpath(*mod.split('.'))
        path = path.with_suffix('.py') if path.with_suffix('.py').is_file() else path / '__init__.py'
        if not path.is_file():
            continue
        assert any((t + '.').startswith(target + '.') for t, _, _ in _imports(path)), f'unused exception {mod} -> {target}'
