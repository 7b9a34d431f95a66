"""kitti_player executable (``ros2 run ros_ncal kitti_player --ros-args -p bag:=PATH``): a bag player node.

Parameters: bag (path), rate (1.0; 0 = as fast as possible), loop (false). The same player as
``ncal play`` (ros_ncal/ros/player.py).
"""
from __future__ import annotations


def main(args=None) -> None:
    from ros_ncal.rosenv import apply_safe_ros_env
    apply_safe_ros_env()
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ros_ncal.ros.player import BagPlayer, PlayerConfig
    rclpy.init(args=args)
    node = rclpy.create_node('kitti_player')
    bag = node.declare_parameter('bag', '').value
    rate = float(node.declare_parameter('rate', 1.0).value)
    loop = bool(node.declare_parameter('loop', False).value)
    if not bag:
        node.get_logger().error('parameter "bag" (rosbag2 directory or .mcap/.db3 file) is required')
        rclpy.shutdown()
        return
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    player = BagPlayer(node, bag, PlayerConfig(rate=rate, loop=loop))
    try:
        stats = player.play()
        node.get_logger().info(f'published {stats.published}')
    except KeyboardInterrupt:
        player.stop()
    finally:
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    main()
