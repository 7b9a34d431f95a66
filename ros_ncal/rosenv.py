"""Network safety and transport settings for every rclpy process this project starts (docs/design.md,
"Network safety"; docs/reliability.md).

Call :func:`apply_safe_ros_env` before ``import rclpy``. With Fast DDS (the default RMW here) it points
``FASTDDS_DEFAULT_PROFILES_FILE`` at the project's participant profile (:data:`FASTDDS_PROFILE`, written
once per user to a temporary directory):

* every socket on the loopback interface only: a UDPv4 transport white-listed to 127.0.0.1, discovery by
  unicast to 127.0.0.1 (finds other processes on this machine, also ones with ROS's default settings),
  no multicast, nothing bound on an external interface;
* a shared-memory transport with a 32 MiB segment (Fast DDS's default is 512 KiB: 2 MB clouds and
  1.4 MB images from a best-effort publisher were mostly lost; with this segment all arrive at 10 Hz,
  measured in bench/bench_qos.py).

``ROS_AUTOMATIC_DISCOVERY_RANGE`` is set to ``SYSTEM_DEFAULT`` with that profile, because ``LOCALHOST``
makes rmw_fastrtps replace the transports by its own (the small SHM segment plus a UDP transport bound on
all interfaces). With another RMW the range is ``LOCALHOST``. ``FASTDDS_BUILTIN_TRANSPORTS=SHM`` stays as
the fallback should the profile not load (then there is no UDP at all). ``NCAL_ALLOW_NETWORK=1`` lifts all
of this for real robots. It never invents a ROS domain id for a node: unset means ROS's default (0);
tests, the demo and benchmarks ask for an isolated one explicitly. No rclpy import here.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

SAFE_DEFAULTS = {
    'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
    'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SYSTEM_DEFAULT',   # LOCALHOST with an RMW other than Fast DDS
    'FASTDDS_BUILTIN_TRANSPORTS': 'SHM',
    'FASTDDS_DEFAULT_PROFILES_FILE': '',                 # fastdds_profile_path()
}

SHM_SEGMENT_BYTES = 32 * 1024 * 1024
SHM_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

FASTDDS_PROFILE = f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- ros_ncal (ros_ncal/rosenv.py): localhost-only participant with a large shared-memory segment -->
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>ncal_shm</transport_id>
        <type>SHM</type>
        <segment_size>{SHM_SEGMENT_BYTES}</segment_size>
        <maxMessageSize>{SHM_MAX_MESSAGE_BYTES}</maxMessageSize>
      </transport_descriptor>
      <transport_descriptor>
        <transport_id>ncal_udp_loopback</transport_id>
        <type>UDPv4</type>
        <interfaceWhiteList>
          <address>127.0.0.1</address>
        </interfaceWhiteList>
        <maxInitialPeersRange>32</maxInitialPeersRange>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="ros_ncal_localhost" is_default_profile="true">
      <rtps>
        <builtin>
          <initialPeersList>
            <locator><udpv4><address>127.0.0.1</address></udpv4></locator>
          </initialPeersList>
          <metatrafficUnicastLocatorList>
            <locator><udpv4><address>127.0.0.1</address></udpv4></locator>
          </metatrafficUnicastLocatorList>
        </builtin>
        <userTransports>
          <transport_id>ncal_shm</transport_id>
          <transport_id>ncal_udp_loopback</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def fastdds_profile_path() -> Path:
    """The project's Fast DDS profile as a file (written atomically when missing or different)."""
    d = Path(tempfile.gettempdir()) / f'ros_ncal-{os.getuid()}'
    path = d / 'fastdds_localhost.xml'
    try:
        if path.read_text() == FASTDDS_PROFILE:
            return path
    except OSError:
        pass
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = d / f'.fastdds_localhost.{os.getpid()}.tmp'
    tmp.write_text(FASTDDS_PROFILE)
    os.replace(tmp, path)
    return path


def apply_safe_ros_env(domain_id: int | None = None, environ: dict | None = None) -> dict:
    """Set the ROS network-safety variables in ``environ`` (default ``os.environ``).

    domain_id: explicit ROS_DOMAIN_ID. When None, an exported ROS_DOMAIN_ID is kept; otherwise the variable
    stays unset, so a node started by ``ros2 launch`` or ``ros2 run`` is on ROS's default domain (0) like
    the drivers it listens to (still on localhost only: the discovery range and transports are forced).
    Tools that start their own graph pass an explicit id (ros_ncal.commands._domain.isolated_domain_id).
    Returns the dict of variables now in force.
    """
    env = os.environ if environ is None else environ
    if env.get('NCAL_ALLOW_NETWORK') != '1':
        env.setdefault('RMW_IMPLEMENTATION', SAFE_DEFAULTS['RMW_IMPLEMENTATION'])
        fastdds = env['RMW_IMPLEMENTATION'] in ('rmw_fastrtps_cpp', 'rmw_fastrtps_dynamic_cpp')
        if fastdds:
            env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'SYSTEM_DEFAULT'
            env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(fastdds_profile_path())
        else:
            env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
            env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
        env['FASTDDS_BUILTIN_TRANSPORTS'] = SAFE_DEFAULTS['FASTDDS_BUILTIN_TRANSPORTS']
    else:
        env.setdefault('RMW_IMPLEMENTATION', SAFE_DEFAULTS['RMW_IMPLEMENTATION'])
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(int(domain_id))
    return {k: env[k] for k in (*SAFE_DEFAULTS, 'ROS_DOMAIN_ID') if k in env}
