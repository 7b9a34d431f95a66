"""Label sets of the synthetic world.

Semantic classes follow the SemanticKITTI 19-class training set (ids 1..19, 0 = unlabeled / ignore),
so a model fine-tuned on synthetic labels transfers its label space to SemanticKITTI as is.
Box classes follow KITTI object detection (Car, Pedestrian, Cyclist).
"""
from __future__ import annotations

import numpy as np

from ros_ncal.data.labels import SEMANTICKITTI_CLASSES, SEMANTICKITTI_PALETTE
from ros_ncal.data.labels import THING_CLASSES as _SEMANTICKITTI_THINGS

CLASS_NAMES: tuple[str, ...] = SEMANTICKITTI_CLASSES  # one label space with the real-data readers
NUM_CLASSES = len(CLASS_NAMES)  # 20 including 0 = unlabeled

UNLABELED, CAR, BICYCLE, MOTORCYCLE, TRUCK, OTHER_VEHICLE, PERSON, BICYCLIST = 0, 1, 2, 3, 4, 5, 6, 7
MOTORCYCLIST, ROAD, PARKING, SIDEWALK, OTHER_GROUND, BUILDING, FENCE, VEGETATION = 8, 9, 10, 11, 12, 13, 14, 15
TRUNK, TERRAIN, POLE, TRAFFIC_SIGN = 16, 17, 18, 19

#: Classes whose points carry an instance id (countable things); all others are stuff (instance 0).
THING_CLASSES: tuple[int, ...] = _SEMANTICKITTI_THINGS
assert THING_CLASSES == (CAR, BICYCLE, MOTORCYCLE, TRUCK, OTHER_VEHICLE, PERSON, BICYCLIST, MOTORCYCLIST)

BOX_CLASS_NAMES: tuple[str, ...] = ('car', 'pedestrian', 'cyclist')
BOX_CAR, BOX_PEDESTRIAN, BOX_CYCLIST = 0, 1, 2
NO_BOX = -1

#: (20, 3) uint8 display colours per semantic class: the SemanticKITTI palette of ros_ncal.data.labels (one label
#: space, one palette: previews, overlays and the segmenter's ``rgb`` field colour a class alike).
CLASS_COLORS: np.ndarray = SEMANTICKITTI_PALETTE
