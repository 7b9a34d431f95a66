"""Compatibility name: inference with a fine-tuned model lives in :mod:`ros_ncal.models.inference`
(the runtime nodes use it without importing the training code)."""
from ros_ncal.models.inference import DownstreamPredictor, Prediction  # noqa: F401
