"""Compatibility name: reading rosbag2 files lives in :mod:`ros_ncal.data.bagfile` (``data`` sits below ``bag``)."""
from ros_ncal.data.bagfile import (STORAGE_SUFFIXES, BagCountMismatchError, BagMessage, BagReadError,  # noqa: F401
                                   BagSummary, bag_summary, read_messages, resolve_storage_files, typestore,
                                   yaml_load_list)
