"""LaunchDescription built from :mod:`.suite` (imports launch / launch_ros inside its functions).

Used by ``launch/ncal.launch.py`` and the per-node launch files. The nodes, parameter files,
remaps and launch-argument parameters come from :func:`resolve_invocations`, the same
function the plain-venv runner uses.

``rviz:=true`` is checked before anything starts: without an ``rviz2`` package the launch fails with
one clear line and no node is started (all nodes come out of one ``OpaqueFunction``). RViz gets a
config generated from ``config/ncal.rviz`` for the launch arguments and the nodes that run
(:mod:`.rviz_config`).
"""
from __future__ import annotations

import os
from pathlib import Path

from .suite import LAUNCH_ARGS, NODES, default_arg_values, is_true, resolve_invocations, suite_specs


class RvizMissingError(RuntimeError):
    """``rviz:=true`` but no rviz2 package: raised before any node is started."""


def generate_suite_launch_description(suite: str = 'default', only: list[str] | None = None):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    specs = [NODES[n] for n in only] if only else suite_specs(suite)
    defaults = default_arg_values()
    if only:  # a per-node launch file starts its node unless told otherwise
        for spec in specs:
            defaults[spec.enable_arg] = 'true'
    actions = [DeclareLaunchArgument(a.name, default_value=defaults[a.name], description=a.description)
               for a in LAUNCH_ARGS]
    for spec in specs:
        actions.append(DeclareLaunchArgument(spec.enable_arg, default_value=defaults[spec.enable_arg],
                                             description=f'start the {spec.name} node'))

    def _setup(context, *args, **kwargs):
        from launch_ros.actions import Node
        names = [a.name for a in LAUNCH_ARGS] + [s.enable_arg for s in specs]
        values = {n: context.launch_configurations.get(n, defaults[n]) for n in names}
        rviz = is_true(values['rviz'])
        if rviz:
            check_rviz_available()   # before any node: nothing is started when it fails
        cfg_dir = _share_dir() / 'config'
        invocations = resolve_invocations(specs, values, cfg_dir)
        nodes = [Node(package='ros_ncal', executable=inv.spec.executable, name=inv.spec.name,
                      output='screen', parameters=[str(f) for f in inv.param_files] + [inv.params],
                      remappings=inv.remaps)
                 for inv in invocations]
        if rviz:
            rviz_file = generated_rviz_file(cfg_dir / 'ncal.rviz', values, [inv.spec.name for inv in invocations])
            nodes.insert(0, Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                                 arguments=['-d', str(rviz_file)]))
        return nodes

    actions.append(OpaqueFunction(function=_setup))
    return LaunchDescription(actions)


def check_rviz_available() -> None:
    """Raise :class:`RvizMissingError` (one clear line) unless the rviz2 package and executable exist."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        prefix = Path(get_package_prefix('rviz2'))
    except PackageNotFoundError:
        raise RvizMissingError('rviz:=true, but the rviz2 package is not installed (not in AMENT_PREFIX_PATH); '
                               'install it (e.g. apt install ros-$ROS_DISTRO-rviz2) or launch without '
                               'rviz:=true. No node was started.') from None
    if not (prefix / 'lib' / 'rviz2' / 'rviz2').exists():
        raise RvizMissingError(f'rviz:=true, but {prefix}/lib/rviz2/rviz2 does not exist. No node was started.')


def generated_rviz_file(template: Path, values: dict[str, str], running_nodes: list[str]) -> Path:
    """Write the RViz config for these launch arguments under $ROS_HOME/ros_ncal/ (default ~/.ros)."""
    from .rviz_config import write_rviz_config
    home = Path(os.environ.get('ROS_HOME') or Path.home() / '.ros').expanduser()
    return write_rviz_config(template, home / 'ros_ncal' / f'ncal_{os.getpid()}.rviz', values, running_nodes)


def _share_dir() -> Path:
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('ros_ncal'))
