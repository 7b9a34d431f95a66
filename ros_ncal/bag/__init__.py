"""rosbag2 tools without ROS: write sensor frames, read any bag, summarize (``rosbags`` based)."""
from .reader import BagCountMismatchError, BagMessage, BagReadError, BagSummary, bag_summary, read_messages, resolve_storage_files  # noqa: F401,E501
from .topics import BagTopics  # noqa: F401
from .writer import BagFrame, SensorBagWriter, resolve_bag_output  # noqa: F401
