"""Procedural street scenes: layout, primitives with materials and labels, instances with boxes.

World frame: x along the street (the ego drives towards +x on the right-hand lane, y < 0),
y to the left, z up, ground plane at z = 0. Everything is drawn from one seeded generator,
so ``generate_scene(cfg, seed)`` is a pure function of its arguments.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import classes as C
from .config import SceneConfig
from .primitives import BOX, CYLINDER, ELLIPSOID

# Surface materials (texture programs). The ground's material follows its semantic class.
M_ASPHALT, M_SIDEWALK, M_GRASS, M_FACADE, M_LEAVES, M_BARK, M_METAL, M_SIGN = 0, 1, 2, 3, 4, 5, 6, 7
M_PAINT, M_GLASS, M_RUBBER, M_CLOTH, M_SKIN, M_FENCE, M_GRAVEL = 8, 9, 10, 11, 12, 13, 14
CROSS_STREET_LENGTH_M = 80.0  # how far the sidewalks of a cross street are built out from the main street
PARKING_SLOT_M = 6.5  # length of one parking slot along the street

FACADE_COLORS = np.array([[0.62, 0.32, 0.24], [0.78, 0.70, 0.56], [0.60, 0.60, 0.58], [0.85, 0.82, 0.74],
                          [0.55, 0.42, 0.33], [0.72, 0.58, 0.42], [0.45, 0.47, 0.52]], np.float32)
CAR_COLORS = np.array([[0.75, 0.75, 0.77], [0.10, 0.10, 0.11], [0.55, 0.05, 0.05], [0.12, 0.20, 0.45],
                       [0.92, 0.92, 0.90], [0.35, 0.37, 0.40], [0.20, 0.35, 0.22], [0.80, 0.65, 0.20]], np.float32)
CLOTH_COLORS = np.array([[0.15, 0.15, 0.18], [0.20, 0.25, 0.45], [0.55, 0.10, 0.10], [0.75, 0.75, 0.70],
                         [0.30, 0.45, 0.25], [0.60, 0.50, 0.35], [0.85, 0.55, 0.15]], np.float32)
SKIN_COLORS = np.array([[0.90, 0.72, 0.60], [0.70, 0.50, 0.38], [0.45, 0.30, 0.22]], np.float32)


@dataclass
class Scene:
    """A street scene: P primitives and I instances (index 0 of the instance arrays is 'none').

    kind: (P,) int8 BOX / ELLIPSOID / CYLINDER.
    center: (P, 3) float64 world position at time 0; velocity: (P, 3) m/s (moving things).
    size: (P, 3) float64 full extents: box l, w, h; ellipsoid 2*radii; cylinder 2r, 2r, h.
    yaw: (P,) float64 rotation about z (boxes and ellipsoids).
    label: (P,) int32 semantic class (classes.CLASS_NAMES); instance: (P,) int32, 0 = stuff.
    material: (P,) int32 texture program; albedo: (P, 3) float32 base colour in [0, 1];
    reflectivity: (P,) float32 LiDAR reflectivity in [0, 1]; tex_seed: (P,) int64.
    inst_box: (I+1, 7) float64 x y z l w h yaw at time 0 (world); inst_box_class: (I+1,) int32 (-1 = no box);
    inst_velocity: (I+1, 3) float64.
    Street layout: lane_width, parking_width, sidewalk_width (2,) and terrain_width (2,) for the sides
    (index 0: right side y < 0, index 1: left side y > 0); strip_class (2,): the class of the strip
    between sidewalk and buildings (terrain = grass, or other-ground = gravel); cross streets (K,) at
    cross_x with road width cross_width (their road runs along y, outwards from the parking strips).
    Light: sun_direction (3,) unit vector towards the sun; overcast: no direct sun (diffuse light only);
    exposure (3,) float32 per-channel camera gain.
    Ego trajectory: ego_start (x, y, yaw) and ego_speed (m/s along its heading).
    """

    seed: int
    kind: np.ndarray
    center: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    velocity: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    material: np.ndarray
    albedo: np.ndarray
    reflectivity: np.ndarray
    tex_seed: np.ndarray
    inst_box: np.ndarray
    inst_box_class: np.ndarray
    inst_velocity: np.ndarray
    lane_width: float
    parking_width: float
    sidewalk_width: np.ndarray
    sidewalk_height: float
    terrain_width: np.ndarray
    strip_class: np.ndarray
    cross_x: np.ndarray
    cross_width: np.ndarray
    sun_direction: np.ndarray
    overcast: bool
    exposure: np.ndarray
    ego_start: np.ndarray
    ego_speed: float

    @property
    def num_primitives(self) -> int:
        return int(len(self.kind))

    @property
    def road_half_width(self) -> float:
        return float(self.lane_width + self.parking_width)

    def centers_at(self, time_s: float) -> np.ndarray:
        """(P, 3) primitive centres at ``time_s`` (moving things advance linearly)."""
        return self.center + self.velocity * float(time_s)

    def aabbs_at(self, time_s: float) -> tuple[np.ndarray, np.ndarray]:
        """World axis-aligned bounds (P, 3) lo, hi of every primitive at ``time_s``."""
        c = self.centers_at(time_s)
        half = 0.5 * self.size
        ext = half.copy()
        boxes = self.kind != CYLINDER  # boxes and ellipsoids may be yawed (conservative for ellipsoids)
        cy, sy = np.abs(np.cos(self.yaw[boxes])), np.abs(np.sin(self.yaw[boxes]))
        ext[boxes, 0] = cy * half[boxes, 0] + sy * half[boxes, 1]
        ext[boxes, 1] = sy * half[boxes, 0] + cy * half[boxes, 1]
        return c - ext, c + ext

    def ground_labels(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Semantic class of the ground plane at world (x, y): road, parking, sidewalk (under the curb), terrain."""
        ay = np.abs(y)
        side = (y > 0).astype(np.int64)
        out = np.full(np.shape(y), C.TERRAIN, np.int32)
        strip = ay < self.road_half_width + self.sidewalk_width[side] + self.terrain_width[side]
        out[strip] = self.strip_class[side[strip]]
        out[ay < self.road_half_width + self.sidewalk_width[side]] = C.SIDEWALK
        out[ay < self.road_half_width] = C.PARKING
        for xc, wc in zip(self.cross_x, self.cross_width):
            out[np.abs(np.asarray(x) - xc) < wc / 2] = C.ROAD
        out[ay < self.lane_width] = C.ROAD
        return out

    def instance_boxes_at(self, time_s: float) -> np.ndarray:
        """(I+1, 7) world boxes of all instances at ``time_s``."""
        b = self.inst_box.copy()
        b[:, :3] += self.inst_velocity * float(time_s)
        return b


class _SceneBuilder:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.prims: list[tuple] = []
        self.instances: list[tuple] = [(np.zeros(7), C.NO_BOX, np.zeros(3))]

    def new_instance(self, box: np.ndarray, box_class: int, velocity=(0.0, 0.0, 0.0)) -> int:
        self.instances.append((np.asarray(box, np.float64), box_class, np.asarray(velocity, np.float64)))
        return len(self.instances) - 1

    def add(self, kind, center, size, label, material, albedo, reflectivity, yaw=0.0, instance=0,
            velocity=(0.0, 0.0, 0.0)):
        self.prims.append((kind, np.asarray(center, np.float64), np.asarray(size, np.float64), float(yaw),
                           np.asarray(velocity, np.float64), label, instance, material,
                           np.asarray(albedo, np.float32), float(reflectivity), int(self.rng.integers(1 << 30))))

    def box(self, center, size, label, material, albedo, reflectivity, **kw):
        self.add(BOX, center, size, label, material, albedo, reflectivity, **kw)


def _u(rng: np.random.Generator, lo_hi) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _jitter(rng, color, amount=0.06):
    return np.clip(np.asarray(color) + rng.uniform(-amount, amount, 3), 0.0, 1.0)


def _add_car(b: _SceneBuilder, x, y, heading, velocity, truck=False):
    rng = b.rng
    if truck:
        length, width, height = rng.uniform(6.5, 9.0), rng.uniform(2.2, 2.5), rng.uniform(2.8, 3.5)
        label, box_class = C.TRUCK, C.NO_BOX
    else:
        length, width, height = rng.uniform(3.7, 4.9), rng.uniform(1.6, 1.9), rng.uniform(1.4, 1.65)
        label, box_class = C.CAR, C.BOX_CAR
    vel = (velocity * np.cos(heading), velocity * np.sin(heading), 0.0)
    inst = b.new_instance((x, y, height / 2, length, width, height, heading), box_class, vel)
    c, s = np.cos(heading), np.sin(heading)
    paint = _jitter(rng, CAR_COLORS[rng.integers(len(CAR_COLORS))], 0.04)
    refl = float(rng.uniform(0.25, 0.6))
    kw = dict(yaw=heading, instance=inst, velocity=vel)
    # Wheels (flattened ellipsoids), a dark undercarriage between them, body, and a glass cabin (cars)
    # or a cab plus cargo box (trucks).
    wheel_r = 0.45 if truck else rng.uniform(0.3, 0.36)
    axle = length / 2 - (1.2 if truck else rng.uniform(0.7, 0.9))
    for ax in (axle, -axle):
        for side in (1.0, -1.0):
            lx, ly = ax, side * (width / 2 - 0.13)
            b.add(ELLIPSOID, (x + c * lx - s * ly, y + s * lx + c * ly, wheel_r), (2 * wheel_r, 0.24, 2 * wheel_r),
                  label, M_RUBBER, (0.04, 0.04, 0.04), 0.05, **kw)
    b.box((x, y, 0.22 + wheel_r * 0.3), (length - 0.5, width - 0.4, 0.3), label, M_RUBBER, (0.06, 0.06, 0.06), 0.05,
          **kw)
    if truck:
        cab = 1.8
        fx = x + c * (length / 2 - cab / 2)
        fy = y + s * (length / 2 - cab / 2)
        b.box((fx, fy, 0.5 + (height - 0.9) / 2), (cab, width - 0.02, height - 0.9), label, M_PAINT, paint, refl, **kw)
        b.box((fx + c * (cab / 2 - 0.05), fy + s * (cab / 2 - 0.05), height - 0.75), (0.1, width - 0.2, 0.6),
              label, M_GLASS, (0.05, 0.07, 0.09), 0.05, **kw)
        gx = x - c * cab / 2
        gy = y - s * cab / 2
        b.box((gx, gy, 0.5 + (height - 0.5) / 2), (length - cab - 0.1, width - 0.02, height - 0.5), label, M_PAINT,
              _jitter(rng, (0.85, 0.85, 0.85)), 0.5, **kw)
        return
    body_h = 0.62 * height - 0.3
    b.box((x, y, 0.3 + body_h / 2), (length, width - 0.02, body_h), label, M_PAINT, paint, refl, **kw)
    cab_l = length * rng.uniform(0.45, 0.58)
    cab_h = height - 0.3 - body_h
    off = -length * rng.uniform(0.0, 0.08)
    b.box((x + c * off, y + s * off, 0.3 + body_h + cab_h / 2), (cab_l, width - 0.12, cab_h), label, M_GLASS,
          (0.06, 0.08, 0.10), 0.08, **kw)
    # Roof (paint) on top of the cabin.
    b.box((x + c * off, y + s * off, height - 0.03), (cab_l * 0.9, width - 0.16, 0.06), label, M_PAINT, paint,
          refl, **kw)


def _add_person(b: _SceneBuilder, x, y, heading, speed):
    rng = b.rng
    scale = rng.uniform(0.88, 1.1)
    vel = (speed * np.cos(heading), speed * np.sin(heading), 0.0)
    h = 1.75 * scale
    inst = b.new_instance((x, y, h / 2, 0.5 * scale, 0.62 * scale, h, heading), C.BOX_PEDESTRIAN, vel)
    kw = dict(yaw=heading, instance=inst, velocity=vel)
    cloth = CLOTH_COLORS
    legs = _jitter(rng, cloth[rng.integers(len(cloth))], 0.05)
    torso = _jitter(rng, cloth[rng.integers(len(cloth))], 0.05)
    skin = SKIN_COLORS[rng.integers(len(SKIN_COLORS))]
    b.box((x, y, 0.42 * scale), (0.25 * scale, 0.36 * scale, 0.84 * scale), C.PERSON, M_CLOTH, legs, 0.3, **kw)
    b.box((x, y, 1.14 * scale), (0.26 * scale, 0.46 * scale, 0.6 * scale), C.PERSON, M_CLOTH, torso, 0.35, **kw)
    b.add(ELLIPSOID, (x, y, 1.58 * scale), (0.22 * scale, 0.2 * scale, 0.3 * scale), C.PERSON, M_SKIN, skin, 0.4,
          instance=inst, velocity=vel)


def _add_two_wheeler(b: _SceneBuilder, x, y, heading, speed, motor: bool = False, rider: bool = True):
    """A bicycle or motorcycle, ridden (bicyclist / motorcyclist) or parked. Only ridden bicycles get a box
    (KITTI 'Cyclist'); motorcycles and parked two-wheelers are instances without a box."""
    rng = b.rng
    vel = (speed * np.cos(heading), speed * np.sin(heading), 0.0)
    c, s = np.cos(heading), np.sin(heading)
    length, width = (2.0, 0.7) if motor else (1.8, 0.62)
    box_class = C.BOX_CYCLIST if (rider and not motor) else C.NO_BOX
    height = 1.84 if rider else (1.15 if motor else 1.0)
    inst = b.new_instance((x, y, height / 2, length, width, height, heading), box_class, vel)
    kw = dict(yaw=heading, instance=inst, velocity=vel)
    vehicle = C.MOTORCYCLE if motor else C.BICYCLE
    frame = _jitter(rng, CAR_COLORS[rng.integers(len(CAR_COLORS))], 0.05)
    wheel_r = 0.32 if motor else 0.34
    for ax in (0.62, -0.62) if not motor else (0.7, -0.7):
        b.add(ELLIPSOID, (x + c * ax, y + s * ax, wheel_r), (2 * wheel_r, 0.1 if motor else 0.05, 2 * wheel_r),
              vehicle, M_RUBBER, (0.04, 0.04, 0.04), 0.05, **kw)
    if motor:
        b.box((x, y, 0.65), (1.4, 0.36, 0.5), vehicle, M_PAINT, frame, 0.5, **kw)
        b.box((x + 0.55 * c, y + 0.55 * s, 0.98), (0.1, 0.68, 0.06), vehicle, M_METAL, (0.3, 0.3, 0.3), 0.5, **kw)
    else:
        b.box((x, y, 0.6), (1.1, 0.06, 0.32), vehicle, M_METAL, frame, 0.5, **kw)
    if not rider:
        return
    person = C.MOTORCYCLIST if motor else C.BICYCLIST
    torso = _jitter(rng, CLOTH_COLORS[rng.integers(len(CLOTH_COLORS))], 0.05)
    bx, by = x - 0.15 * c, y - 0.15 * s
    b.box((bx, by, 0.95), (0.3, 0.34, 0.3), person, M_CLOTH, (0.15, 0.15, 0.18), 0.3, **kw)
    b.box((bx + 0.05 * c, by + 0.05 * s, 1.35), (0.32, 0.44, 0.52), person, M_CLOTH, torso, 0.35, **kw)
    head = (0.08, 0.08, 0.09) if motor else SKIN_COLORS[rng.integers(len(SKIN_COLORS))]  # helmet or face
    b.add(ELLIPSOID, (bx + 0.1 * c, by + 0.1 * s, 1.7), (0.24, 0.22, 0.28), person, M_PAINT if motor else M_SKIN,
          head, 0.4, **kw)


def _add_trailer(b: _SceneBuilder, x, y, heading):
    """A parked caravan / trailer (other-vehicle, no box)."""
    rng = b.rng
    length, width, height = rng.uniform(4.0, 6.5), rng.uniform(2.0, 2.4), rng.uniform(2.2, 2.8)
    inst = b.new_instance((x, y, height / 2, length, width, height, heading), C.NO_BOX)
    c, s = np.cos(heading), np.sin(heading)
    kw = dict(yaw=heading, instance=inst)
    for side in (1.0, -1.0):
        ly = side * (width / 2 - 0.15)
        b.add(ELLIPSOID, (x - s * ly, y + c * ly, 0.35), (0.7, 0.24, 0.7), C.OTHER_VEHICLE, M_RUBBER,
              (0.04, 0.04, 0.04), 0.05, **kw)
    b.box((x, y, 0.45 + (height - 0.45) / 2), (length, width, height - 0.45), C.OTHER_VEHICLE, M_PAINT,
          _jitter(rng, (0.9, 0.9, 0.86), 0.05), 0.55, **kw)
    b.box((x + c * (length / 2 + 0.6), y + s * (length / 2 + 0.6), 0.45), (1.2, 0.1, 0.1), C.OTHER_VEHICLE,
          M_METAL, (0.3, 0.3, 0.3), 0.5, **kw)


def _add_tree(b: _SceneBuilder, x, y):
    rng = b.rng
    trunk_h = rng.uniform(1.8, 4.0)
    r = rng.uniform(0.12, 0.3)
    b.add(CYLINDER, (x, y, trunk_h / 2 + 0.3), (2 * r, 2 * r, trunk_h + 0.6), C.TRUNK, M_BARK,
          _jitter(rng, (0.33, 0.24, 0.16), 0.05), 0.3)
    rxy = rng.uniform(1.4, 3.2)
    rz = rxy * rng.uniform(0.8, 1.4)
    green = _jitter(rng, (0.22, 0.42, 0.16), 0.07)
    b.add(ELLIPSOID, (x, y, trunk_h + rz * 0.8), (2 * rxy, 2 * rxy * rng.uniform(0.85, 1.15), 2 * rz), C.VEGETATION,
          M_LEAVES, green, 0.45)


def _near_ego_x(rng: np.random.Generator, cfg: SceneConfig, ego_x: float) -> float:
    """x of a dynamic thing: with probability ``near_ego_fraction`` within the ego's view ahead, else anywhere."""
    x0, x1 = cfg.x_range_m
    if rng.random() < cfg.near_ego_fraction:
        return float(np.clip(ego_x + rng.uniform(-20.0, 70.0), x0 + 10, x1 - 10))
    return float(rng.uniform(x0 + 10, x1 - 10))


@dataclass
class _Layout:
    """Street cross-section and cross streets of one scene (see Scene for the fields' meaning)."""
    x0: float
    x1: float
    lane: float
    parking: float
    sidewalk: np.ndarray
    terrain: np.ndarray
    strip_class: np.ndarray
    cross_x: np.ndarray
    cross_w: np.ndarray
    spans: list[tuple[float, float]]  # x spans of the street sides taken by cross streets and their sidewalks
    cross_sidewalk: list[float]

    @property
    def road_half(self) -> float:
        return self.lane + self.parking

    def free(self, x: float, margin: float = 1.0) -> bool:
        """True when x is at least ``margin`` away from every cross street span."""
        return all(not (xa - margin < x < xb + margin) for xa, xb in self.spans)


def _draw_layout(rng: np.random.Generator, cfg: SceneConfig) -> _Layout:
    x0, x1 = cfg.x_range_m
    lane = _u(rng, cfg.lane_width_m)
    parking = _u(rng, cfg.parking_width_m)
    sidewalk = np.array([_u(rng, cfg.sidewalk_width_m) for _ in range(2)])
    terrain = np.array([_u(rng, cfg.terrain_width_m) for _ in range(2)])
    strip_class = np.where(rng.random(2) < cfg.gravel_strip_prob, C.OTHER_GROUND, C.TERRAIN).astype(np.int32)
    cross_x, cross_w = [], []
    x = x0 + rng.uniform(20.0, 80.0)
    while cfg.cross_streets_per_100m > 0 and x < x1 - 30.0:
        x += rng.exponential(100.0 / cfg.cross_streets_per_100m)
        if x > x1 - 30.0:
            break
        wc = _u(rng, cfg.cross_street_width_m)
        cross_x.append(x)
        cross_w.append(wc)
        x += wc + 30.0
    cross_sw = [_u(rng, cfg.sidewalk_width_m) for _ in cross_x]
    spans = [(xc - wc / 2 - sw_c, xc + wc / 2 + sw_c) for xc, wc, sw_c in zip(cross_x, cross_w, cross_sw)]
    return _Layout(x0, x1, lane, parking, sidewalk, terrain, strip_class, np.array(cross_x), np.array(cross_w),
                   spans, cross_sw)


def _build_side(b: _SceneBuilder, cfg: SceneConfig, L: _Layout, side_index: int) -> None:
    """Sidewalks, buildings, open lots, trees, hedges, poles and parked vehicles of one street side."""
    rng = b.rng
    side = (-1.0, 1.0)[side_index]
    sw, tw = L.sidewalk[side_index], L.terrain[side_index]
    swh = cfg.sidewalk_height_m
    curb = L.road_half
    facade = curb + sw + tw
    length = L.x1 - L.x0
    # Raised sidewalks along the street, interrupted by the cross streets, which get their own.
    sidewalk_color = _jitter(rng, (0.62, 0.61, 0.58), 0.04)
    edges = [L.x0] + [e for span in L.spans for e in span] + [L.x1]
    for xa, xb in zip(edges[0::2], edges[1::2]):
        if xb > xa:
            b.box(((xa + xb) / 2, side * (curb + sw / 2), swh / 2), (xb - xa, sw, swh), C.SIDEWALK, M_SIDEWALK,
                  sidewalk_color, 0.35)
    for xc, wc, sw_c in zip(L.cross_x, L.cross_w, L.cross_sidewalk):
        for sx in (-1.0, 1.0):
            b.box((xc + sx * (wc / 2 + sw_c / 2), side * (curb + CROSS_STREET_LENGTH_M / 2), swh / 2),
                  (sw_c, CROSS_STREET_LENGTH_M, swh), C.SIDEWALK, M_SIDEWALK, sidewalk_color, 0.35)
    # Buildings with occasional open lots (fenced or not), none across a cross street.
    x = L.x0
    while x < L.x1:
        blocked = [(xa, xb) for xa, xb in L.spans if xa < x + 4.0 and x < xb]
        if blocked:
            x = blocked[0][1] + 0.5
            continue
        bl = _u(rng, cfg.building_length_m)
        ahead = [xa for xa, _ in L.spans if xa > x]
        if ahead and x + bl > ahead[0] - 0.5:
            bl = ahead[0] - 0.5 - x
        depth = _u(rng, cfg.building_depth_m)
        height = _u(rng, cfg.building_height_m)
        setback = rng.uniform(0.0, 1.5)
        yc = side * (facade + setback + depth / 2)
        b.box((x + bl / 2, yc, height / 2), (bl, depth, height), C.BUILDING, M_FACADE,
              _jitter(rng, FACADE_COLORS[rng.integers(len(FACADE_COLORS))], 0.04), float(rng.uniform(0.2, 0.4)))
        x += bl
        if rng.random() < cfg.building_gap_prob:
            gap = _u(rng, cfg.building_gap_m)
            ahead = [xa for xa, _ in L.spans if xa >= x]
            if ahead:
                gap = min(gap, ahead[0] - x)
            if gap < 1.0:
                continue
            if rng.random() < cfg.fence_prob:
                fh = rng.uniform(1.0, 2.0)
                b.box((x + gap / 2, side * (facade + 0.1), fh / 2), (gap, 0.08, fh), C.FENCE, M_FENCE,
                      _jitter(rng, (0.45, 0.42, 0.38), 0.08), 0.35)
            if rng.random() < 0.6:
                _add_tree(b, x + gap / 2, side * (facade + rng.uniform(2.0, 5.0)))
            x += gap
    # Trees: on the grass strip when there is one, otherwise in sidewalk pits near the curb.
    for _ in range(rng.poisson(cfg.trees_per_100m * length / 100)):
        tx = rng.uniform(L.x0, L.x1)
        if not L.free(tx, 3.0):
            continue
        ty = curb + sw + tw / 2 if tw > 2.0 else curb + 0.9
        _add_tree(b, tx, side * ty)
    if tw >= 1.2:
        for _ in range(rng.poisson(cfg.hedges_per_100m * length / 100)):
            hl = rng.uniform(3.0, 12.0)
            hh = rng.uniform(0.7, 1.6)
            hw = min(rng.uniform(0.6, 1.2), tw - 0.2)
            hx = rng.uniform(L.x0, L.x1)
            if not L.free(hx, hl / 2):
                continue
            b.box((hx, side * (curb + sw + tw / 2), hh / 2), (hl, hw, hh), C.VEGETATION,
                  M_LEAVES, _jitter(rng, (0.18, 0.36, 0.14), 0.05), 0.45)
    # Poles near the curb, some with a traffic sign facing the traffic.
    for _ in range(rng.poisson(cfg.poles_per_100m * length / 100)):
        px = rng.uniform(L.x0, L.x1)
        if not L.free(px):
            continue
        py = side * (curb + 0.45)
        ph = rng.uniform(3.5, 8.0)
        pr = rng.uniform(0.05, 0.11)
        b.add(CYLINDER, (px, py, ph / 2), (2 * pr, 2 * pr, ph), C.POLE, M_METAL,
              _jitter(rng, (0.5, 0.5, 0.52), 0.08), 0.5)
        if rng.random() < cfg.sign_prob:
            sz = rng.uniform(0.5, 0.8)
            sc = [(0.8, 0.1, 0.1), (0.1, 0.25, 0.7), (0.95, 0.8, 0.1), (0.95, 0.95, 0.95)][rng.integers(4)]
            b.box((px + side * (pr + 0.03), py, min(ph - 0.3, rng.uniform(2.2, 3.0))),
                  (0.04, sz, sz), C.TRAFFIC_SIGN, M_SIGN, sc, 0.95)
    # Parking slots: cars (some trucks), rows of two-wheelers or caravans, nose with the traffic.
    for sx in np.arange(L.x0 + 5, L.x1 - 5, PARKING_SLOT_M):
        if not (rng.random() < cfg.parked_car_prob and L.free(sx, 3.5)):
            continue
        heading = (0.0 if side < 0 else np.pi) + rng.normal(0, 0.03)
        py = side * (L.lane + L.parking / 2 + rng.uniform(-0.15, 0.15))
        what = rng.random()
        if what < cfg.parked_two_wheeler_prob:  # a row of two-wheelers across the slot
            for k in range(int(rng.integers(1, 4))):
                _add_two_wheeler(b, sx - 1.5 + 1.1 * k, py, side * np.pi / 2 + rng.normal(0, 0.15), 0.0,
                                 motor=bool(rng.random() < 0.6), rider=False)
        elif what < cfg.parked_two_wheeler_prob + cfg.other_vehicle_prob:
            _add_trailer(b, sx + rng.uniform(-0.5, 0.5), py, heading)
        else:
            _add_car(b, sx + rng.uniform(-0.5, 0.5), py, heading, 0.0, truck=rng.random() < cfg.truck_prob)


def _add_traffic(b: _SceneBuilder, cfg: SceneConfig, L: _Layout, ego_x: float, ego_speed: float) -> None:
    """Moving cars and riders in both lanes, pedestrians on the sidewalks.

    Every vehicle of a lane drives at that lane's speed (the ego lane at the ego's), so nothing ever
    drives through anything else, the ego included. Riders keep near the lane edge.
    """
    rng = b.rng
    lane_speed = {False: ego_speed, True: _u(rng, cfg.oncoming_speed_mps)}
    n_cars = int(rng.integers(cfg.moving_cars[0], cfg.moving_cars[1] + 1))
    n_cyclists = int(rng.integers(cfg.cyclists[0], cfg.cyclists[1] + 1))
    placed: list[tuple[float, bool]] = []
    for k in range(n_cars + n_cyclists):
        for _try in range(20):
            left = bool(rng.random() < 0.5)
            cx = _near_ego_x(rng, cfg, ego_x)
            if not left and abs(cx - ego_x) < cfg.ego_clearance_m:
                continue
            if any(abs(cx - px) < 8.0 and pl == left for px, pl in placed):
                continue
            break
        else:
            continue
        placed.append((cx, left))
        side = 1.0 if left else -1.0
        heading = np.pi if left else 0.0
        if k >= n_cars:
            _add_two_wheeler(b, cx, side * (L.lane - 0.6), heading, lane_speed[left],
                             motor=bool(rng.random() < cfg.motorcyclist_fraction))
        else:
            _add_car(b, cx, side * L.lane / 2 + rng.normal(0, 0.1), heading + rng.normal(0, 0.01), lane_speed[left])
    for _ in range(int(rng.integers(cfg.pedestrians[0], cfg.pedestrians[1] + 1))):
        side_index = int(rng.integers(2))
        side = (-1.0, 1.0)[side_index]
        py = side * (L.road_half + rng.uniform(0.6, L.sidewalk[side_index] - 0.4))
        walking = rng.random() < 0.7
        heading = (0.0 if rng.random() < 0.5 else np.pi) if walking else rng.uniform(-np.pi, np.pi)
        _add_person(b, _near_ego_x(rng, cfg, ego_x), py, heading, rng.uniform(0.8, 1.6) if walking else 0.0)


def generate_scene(cfg: SceneConfig, seed: int) -> Scene:
    """A new street scene drawn from ``cfg`` with ``seed`` (pure function: same inputs, same scene)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5CE1E]))
    b = _SceneBuilder(rng)
    L = _draw_layout(rng, cfg)
    for side_index in (0, 1):
        _build_side(b, cfg, L, side_index)
    ego_x = _u(rng, cfg.ego_start_x_m)
    ego_speed = _u(rng, cfg.ego_speed_mps)
    ego = np.array([ego_x, -L.lane / 2 + rng.uniform(-1, 1) * cfg.ego_lateral_jitter_m,
                    np.deg2rad(rng.uniform(-1, 1) * cfg.ego_yaw_jitter_deg)])
    _add_traffic(b, cfg, L, ego_x, ego_speed)

    elev = np.deg2rad(_u(rng, cfg.sun_elevation_deg))
    azim = np.deg2rad(_u(rng, cfg.sun_azimuth_deg))
    sun = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    overcast = bool(rng.random() < cfg.overcast_prob)
    exposure = _u(rng, cfg.exposure_gain) * (1.0 + rng.uniform(-1, 1, 3) * cfg.white_balance_jitter)

    P = b.prims
    inst = b.instances
    return Scene(
        seed=int(seed),
        kind=np.array([p[0] for p in P], np.int8),
        center=np.array([p[1] for p in P], np.float64).reshape(-1, 3),
        size=np.array([p[2] for p in P], np.float64).reshape(-1, 3),
        yaw=np.array([p[3] for p in P], np.float64),
        velocity=np.array([p[4] for p in P], np.float64).reshape(-1, 3),
        label=np.array([p[5] for p in P], np.int32),
        instance=np.array([p[6] for p in P], np.int32),
        material=np.array([p[7] for p in P], np.int32),
        albedo=np.array([p[8] for p in P], np.float32).reshape(-1, 3),
        reflectivity=np.array([p[9] for p in P], np.float32),
        tex_seed=np.array([p[10] for p in P], np.int64),
        inst_box=np.array([i[0] for i in inst], np.float64).reshape(-1, 7),
        inst_box_class=np.array([i[1] for i in inst], np.int32),
        inst_velocity=np.array([i[2] for i in inst], np.float64).reshape(-1, 3),
        lane_width=L.lane, parking_width=L.parking, sidewalk_width=L.sidewalk, sidewalk_height=cfg.sidewalk_height_m,
        terrain_width=L.terrain, strip_class=L.strip_class, cross_x=L.cross_x, cross_width=L.cross_w,
        sun_direction=sun, overcast=overcast, exposure=exposure.astype(np.float32),
        ego_start=ego, ego_speed=ego_speed,
    )
