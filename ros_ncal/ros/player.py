"""Replay a rosbag2 onto a live rclpy graph (``ncal play``).

Messages are read with :mod:`ros_ncal.bag` (rosbags), converted to rclpy objects by field name
and published with their original header stamps, paced by the bag's log times divided by
``rate`` (rate 0 = as fast as possible). Latched topics (/tf_static, or any topic recorded with
TRANSIENT_LOCAL offered QoS) are published TRANSIENT_LOCAL depth 1; topics recorded BEST_EFFORT (a driver's
SensorDataQoS, e.g. ``ncal bag write-kitti-raw``) are published BEST_EFFORT, as ``ros2 bag play`` re-offers them.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ros_ncal.bag import bag_summary, read_messages

from .generic import rclpy_message_class, to_rclpy
from .qos import latched_qos, reliable_qos, sensor_qos


@dataclass
class PlayerConfig:
    rate: float = 1.0
    loop: bool = False
    topics: list[str] | None = None
    start_paused: bool = False
    wait_for_subscribers_s: float = 0.0  # wait this long for >= 1 subscriber on every data topic
    queue_depth: int = 10


@dataclass
class PlayStats:
    published: dict[str, int] = field(default_factory=dict)
    loops: int = 0
    wall_s: float = 0.0
    skipped_types: dict[str, str] = field(default_factory=dict)


class BagPlayer:
    """Publishes a bag through ``node``; call :meth:`play` from a thread that is not spinning the node."""

    def __init__(self, node, bag_path: str | Path, config: PlayerConfig | None = None):
        self.node = node
        self.bag_path = Path(bag_path)
        self.cfg = config or PlayerConfig()
        if self.cfg.rate < 0:
            raise ValueError(f'rate must be >= 0, got {self.cfg.rate}')
        self.summary = bag_summary(self.bag_path)
        if self.summary.message_count == 0:
            raise ValueError(f'{self.bag_path}: bag has no messages')
        wanted = self.cfg.topics or sorted(self.summary.topics)
        absent = sorted(set(wanted) - set(self.summary.topics))
        if absent:
            raise ValueError(f'topic(s) {absent} not in bag; has {sorted(self.summary.topics)}')
        self.stats = PlayStats()
        self._pubs = {}
        for topic in wanted:
            msgtype = self.summary.topics[topic]
            try:
                cls = rclpy_message_class(msgtype)
            except ImportError as exc:
                self.stats.skipped_types[topic] = str(exc)
                node.get_logger().warning(f'not playing {topic}: {exc}')
                continue
            offered = self.summary.offered_qos.get(topic, [])
            latched = topic == '/tf_static' or any('transient_local' in q for q in offered)
            best_effort = bool(offered) and all(q.startswith('best_effort') for q in offered)
            qos = (latched_qos(1) if latched else
                   sensor_qos(self.cfg.queue_depth) if best_effort else reliable_qos(self.cfg.queue_depth))
            self._pubs[topic] = (node.create_publisher(cls, topic, qos), latched)
        self._resume = threading.Event()
        self._stop = threading.Event()
        if not self.cfg.start_paused:
            self._resume.set()
        else:
            from std_srvs.srv import Trigger
            self._srv = node.create_service(Trigger, '~/resume', self._on_resume)

    def _on_resume(self, request, response):
        self._resume.set()
        response.success = True
        response.message = 'playing'
        return response

    def resume(self) -> None:
        self._resume.set()

    def stop(self) -> None:
        self._stop.set()
        self._resume.set()

    def wait_for_subscribers(self, timeout_s: float) -> bool:
        """True once every non-latched publisher has a subscriber (or False at timeout)."""
        deadline = time.monotonic() + timeout_s
        data_pubs = [p for p, latched in self._pubs.values() if not latched]
        while time.monotonic() < deadline and not self._stop.is_set():
            if all(p.get_subscription_count() > 0 for p in data_pubs):
                return True
            time.sleep(0.02)
        return all(p.get_subscription_count() > 0 for p in data_pubs)

    def play(self) -> PlayStats:
        """Blocking playback (loops until :meth:`stop` when config.loop)."""
        if self.cfg.wait_for_subscribers_s > 0:
            self.wait_for_subscribers(self.cfg.wait_for_subscribers_s)
        self._resume.wait()
        t_start = time.monotonic()
        while not self._stop.is_set():
            self._play_once()
            self.stats.loops += 1
            if not self.cfg.loop:
                break
        self.stats.wall_s = time.monotonic() - t_start
        return self.stats

    def _play_once(self) -> None:
        t0_bag = None
        t0_wall = time.monotonic()
        for m in read_messages(self.bag_path, topics=list(self._pubs)):
            if self._stop.is_set():
                return
            if t0_bag is None:
                t0_bag = m.stamp_ns
            if self.cfg.rate > 0:
                target = t0_wall + (m.stamp_ns - t0_bag) / 1e9 / self.cfg.rate
                delay = target - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
            pub, _ = self._pubs[m.topic]
            pub.publish(to_rclpy(m.msg, m.msgtype))
            self.stats.published[m.topic] = self.stats.published.get(m.topic, 0) + 1


def create_player(context, bag, cfg: PlayerConfig, node_name: str = 'ncal_player'):
    """A player node on an existing rclpy context -> (node, BagPlayer); the caller spins and destroys the node."""
    import rclpy
    node = rclpy.create_node(node_name, context=context)
    try:
        return node, BagPlayer(node, bag, cfg)
    except Exception:
        node.destroy_node()
        raise


def play_bag(bag, cfg: PlayerConfig, linger_s: float = 0.5, on_ready=None) -> PlayStats:
    """Play a bag in its own rclpy context (what ``ncal play`` runs). Call
    ``ros_ncal.rosenv.apply_safe_ros_env()`` before importing this module.

    Raises FileNotFoundError / ValueError for a missing or unreadable bag (before anything is published).
    on_ready(node): called once the node spins (e.g. to print the resume service of a paused player).
    SIGINT / SIGTERM stop the playback (main thread only); the executor thread is always joined before
    the context is shut down, so the process exits cleanly after the last message.
    """
    import threading
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from .lifecycle import InterruptWatcher

    watch = threading.current_thread() is threading.main_thread()
    context = rclpy.Context()
    rclpy.init(args=['ncal'], context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node, player = create_player(context, bag, cfg)
    except Exception:
        rclpy.shutdown(context=context)
        raise
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spin_thread = threading.Thread(target=executor.spin, name='ncal-player-executor', daemon=True)
    watcher = InterruptWatcher(on_interrupt=player.stop) if watch else None
    if watcher is not None:
        watcher.__enter__()
    spin_thread.start()
    try:
        if on_ready is not None:
            on_ready(node)
        stats = player.play()
        if watcher is None or not watcher.interrupted:
            time.sleep(max(0.0, linger_s))
    except KeyboardInterrupt:       # without a watcher (not the main thread)
        player.stop()
        stats = player.stats
    finally:
        executor.shutdown(timeout_sec=2.0)
        spin_thread.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        if watcher is not None:
            watcher.__exit__(None, None, None)
    return stats
