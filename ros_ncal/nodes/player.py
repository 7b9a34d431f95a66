"""kitti_player executable (``ros2 run ros_ncal kitti_player --ros-args -p bag:=PATH``): a bag player node.

Parameters: bag (path), rate (1.0; 0 = as fast as possible), loop (false). The same player as
``ncal play`` (ros_ncal/ros/player.py).
"""
from __future__ import annotations


def main(args=None) -> int:
    from ros_ncal.rosenv import apply_safe_ros_env
    apply_safe_ros_env()
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from ros_ncal.ros.lifecycle import InterruptWatcher
    from ros_ncal.ros.player import BagPlayer, PlayerConfig
    with InterruptWatcher(restore=False) as interrupts:      # the process ends after this
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node('kitti_player')
        bag = node.declare_parameter('bag', '').value
        rate = float(node.declare_parameter('rate', 1.0).value)
        loop = bool(node.declare_parameter('loop', False).value)
        if not bag:
            node.get_logger().error('parameter "bag" (rosbag2 directory or .mcap/.db3 file) is required')
            node.destroy_node()
            rclpy.try_shutdown()
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spin_thread = threading.Thread(target=executor.spin, name='kitti-player-executor', daemon=True)
        spin_thread.start()
        try:
            player = BagPlayer(node, bag, PlayerConfig(rate=rate, loop=loop))
            interrupts.on_interrupt = player.stop           # the player exists only now
            if interrupts.interrupted:
                player.stop()
            stats = player.play()
            node.get_logger().info(f'published {stats.published}')
        except (FileNotFoundError, ValueError) as exc:
            node.get_logger().error(str(exc))
            return 2
        finally:
            executor.shutdown(timeout_sec=2.0)
            spin_thread.join(timeout=5.0)
            node.destroy_node()
            rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
