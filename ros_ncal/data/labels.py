"""Class vocabularies: SemanticKITTI (19 training classes), KITTI / nuScenes box classes, colour palettes.

Point labels in Samples use the 19-class SemanticKITTI training ids 1..19 with 0 = ignore (unlabelled,
outlier, other-structure, other-object), as in the SemanticKITTI benchmark.
"""
from __future__ import annotations

import numpy as np

IGNORE_INDEX = 0

# SemanticKITTI raw id -> training id (the benchmark's learning map; moving-* folded into the static class).
SEMANTICKITTI_LEARNING_MAP: dict[int, int] = {
    0: 0, 1: 0,                      # unlabeled, outlier
    10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5,  # car, bicycle, bus->other-vehicle, motorcycle, on-rails, truck, other-vehicle
    30: 6, 31: 7, 32: 8,             # person, bicyclist, motorcyclist
    40: 9, 44: 10, 48: 11, 49: 12,   # road, parking, sidewalk, other-ground
    50: 13, 51: 14, 52: 0,           # building, fence, other-structure->ignore
    60: 9,                           # lane-marking -> road
    70: 15, 71: 16, 72: 17,          # vegetation, trunk, terrain
    80: 18, 81: 19,                  # pole, traffic-sign
    99: 0,                           # other-object -> ignore
    252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,  # moving-*
}

# Training id -> name (index 0 is the ignore class).
SEMANTICKITTI_CLASSES: tuple[str, ...] = (
    'unlabeled', 'car', 'bicycle', 'motorcycle', 'truck', 'other-vehicle', 'person', 'bicyclist', 'motorcyclist',
    'road', 'parking', 'sidewalk', 'other-ground', 'building', 'fence', 'vegetation', 'trunk', 'terrain', 'pole',
    'traffic-sign',
)
NUM_SEMANTICKITTI_CLASSES = len(SEMANTICKITTI_CLASSES) - 1  # 19, excluding ignore
THING_CLASSES: tuple[int, ...] = tuple(range(1, 9))  # car .. motorcyclist: the classes with instances

# Training id -> colour, as the SemanticKITTI benchmark's config/semantic-kitti.yaml `color_map` gives it for the
# raw id of each class (car = raw 10, ...). That file lists **BGR** (it is marked `# bgr`; the API's visualiser
# flips it to RGB), so the table keeps the file's numbers and SEMANTICKITTI_PALETTE below is its RGB flip.
_SEMANTICKITTI_COLOR_MAP_BGR = np.array([
    (0, 0, 0),        # unlabeled      (raw 0)
    (245, 150, 100),  # car            (raw 10)
    (245, 230, 100),  # bicycle        (raw 11)
    (150, 60, 30),    # motorcycle     (raw 15)
    (180, 30, 80),    # truck          (raw 18)
    (255, 0, 0),      # other-vehicle  (raw 20)
    (30, 30, 255),    # person         (raw 30)
    (200, 40, 255),   # bicyclist      (raw 31)
    (90, 30, 150),    # motorcyclist   (raw 32)
    (255, 0, 255),    # road           (raw 40)
    (255, 150, 255),  # parking        (raw 44)
    (75, 0, 75),      # sidewalk       (raw 48)
    (75, 0, 175),     # other-ground   (raw 49)
    (0, 200, 255),    # building       (raw 50)
    (50, 120, 255),   # fence          (raw 51)
    (0, 175, 0),      # vegetation     (raw 70)
    (0, 60, 135),     # trunk          (raw 71)
    (80, 240, 150),   # terrain        (raw 72)
    (150, 240, 255),  # pole           (raw 80)
    (0, 0, 255),      # traffic-sign   (raw 81)
], dtype=np.uint8)

# Training id -> RGB (uint8), the standard SemanticKITTI display colours (car blue, vegetation green, road magenta,
# building orange): the one palette of point and pixel labels (look colours up with class_colors).
SEMANTICKITTI_PALETTE = np.ascontiguousarray(_SEMANTICKITTI_COLOR_MAP_BGR[:, ::-1])

_LUT_SIZE = 1 << 16
SEMANTICKITTI_LUT = np.zeros(_LUT_SIZE, dtype=np.int32)  # unknown raw ids map to ignore
for _raw, _train in SEMANTICKITTI_LEARNING_MAP.items():
    SEMANTICKITTI_LUT[_raw] = _train


def remap_semantickitti(raw_semantic: np.ndarray) -> np.ndarray:
    """raw_semantic: (N,) SemanticKITTI ids (lower 16 bits of a .label) -> (N,) int32 training ids 0..19."""
    raw = np.asarray(raw_semantic)
    if raw.size and (raw.min() < 0 or raw.max() >= _LUT_SIZE):
        raise ValueError(f'SemanticKITTI semantic ids must be in [0, {_LUT_SIZE}), got [{raw.min()}, {raw.max()}]')
    return SEMANTICKITTI_LUT[raw.astype(np.int64)]


# KITTI object benchmark: the three evaluated classes. Everything else is dropped (documented in docs/data.md).
KITTI_BOX_CLASSES: tuple[str, ...] = ('Car', 'Pedestrian', 'Cyclist')
KITTI_BOX_CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(KITTI_BOX_CLASSES)}

# nuScenes detection classes in the order of the mmdetection3d info files (bbox_label_3d).
NUSCENES_BOX_CLASSES: tuple[str, ...] = ('car', 'truck', 'trailer', 'bus', 'construction_vehicle', 'bicycle',
                                         'motorcycle', 'pedestrian', 'traffic_cone', 'barrier')

BOX_PALETTE = np.array([(255, 60, 60), (60, 200, 255), (255, 220, 0), (160, 255, 60), (255, 120, 255),
                        (0, 255, 200), (255, 160, 60), (120, 120, 255), (255, 255, 255), (180, 180, 180)], np.uint8)


def class_colors(labels: np.ndarray, palette: np.ndarray = SEMANTICKITTI_PALETTE) -> np.ndarray:
    """labels: int ids of any shape (a scalar too) -> (..., 3) uint8 colours (ids outside the palette wrap around).

    The one lookup of a label colour: point and pixel labels in SEMANTICKITTI_PALETTE (the segmenter's ``rgb``
    field, ``ncal inspect``, ``ncal synth``'s previews, the demo), box classes in BOX_PALETTE."""
    labels = np.asarray(labels, dtype=np.int64)
    return palette[np.mod(labels, len(palette))]
