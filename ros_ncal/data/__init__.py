"""Data: the Sample contract, batching, dataset shards, readers, synthetic world (no ROS)."""
from .collate import Batch, collate_samples  # noqa: F401
from .sample import InvalidSampleError, Sample  # noqa: F401
