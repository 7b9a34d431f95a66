"""LaunchDescription built from :mod:`.suite` (real ROS installs only: imports launch, launch_ros).

Used by ``launch/ncal.launch.py`` and the per-node launch files. The nodes, parameter files,
remaps and launch-argument parameters come from :func:`resolve_invocations`, the same
function the plain-venv runner uses.
"""
from __future__ import annotations

from pathlib import Path

from .suite import LAUNCH_ARGS, NODES, default_arg_values, resolve_invocations, suite_specs


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
        cfg_dir = _share_dir() / 'config'
        nodes = []
        for inv in resolve_invocations(specs, values, cfg_dir):
            nodes.append(Node(package='ros_ncal', executable=inv.spec.executable, name=inv.spec.name,
                              output='screen', parameters=[str(f) for f in inv.param_files] + [inv.params],
                              remappings=inv.remaps))
        if values['rviz'].lower() == 'true':
            nodes.append(Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
                              arguments=['-d', str(cfg_dir / 'ncal.rviz')]))
        return nodes

    actions.append(OpaqueFunction(function=_setup))
    return LaunchDescription(actions)


def _share_dir() -> Path:
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('ros_ncal'))
