"""Synthetic driving world: determinism, label consistency across sensors, boxes, drives, ray casting."""
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ros_ncal.data.sample import Sample
from ros_ncal.data.synthetic import (BOX_CLASS_NAMES, CLASS_NAMES, SyntheticWorld, camera_extrinsic, ego_pose,
                                     generate_scene, load_synthetic_config)
from ros_ncal.data.synthetic import classes as C
from ros_ncal.data.synthetic.lidar import beam_elevations_deg
from ros_ncal.data.synthetic.primitives import (intersect_box, intersect_cylinder, intersect_ellipsoid,
                                                intersect_ground)
from ros_ncal.data.synthetic.raycast import (GROUND, MISS, PinholeGrid, SpinningGrid, cast, intersect_primitive,
                                             surface_normals)
from ros_ncal.geometry import invert, make_T, project_lidar, random_perturbation, transform_points

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / 'config' / 'synthetic_small.yaml'
DEFAULT = REPO / 'config' / 'synthetic.yaml'


@pytest.fixture(scope='module')
def small_world():
    return SyntheticWorld(load_synthetic_config(SMALL))


@pytest.fixture(scope='module')
def small_sample(small_world):
    return small_world.sample(0)


def _label_agreement(sample: Sample) -> tuple[float, int]:
    uv, depth, mask = project_lidar(sample.points, sample.T_cam_lidar, sample.K, sample.image_hw)
    H, W = sample.image_hw
    u = np.clip(np.round(uv[mask, 0]).astype(int), 0, W - 1)
    v = np.clip(np.round(uv[mask, 1]).astype(int), 0, H - 1)
    return float(np.mean(sample.pixel_labels[v, u] == sample.point_labels[mask])), int(mask.sum())


def test_every_class_occurs(small_world):
    counts = np.zeros(len(CLASS_NAMES), np.int64)
    for i in range(6):  # scene content only: no rendering needed
        counts[np.unique(small_world.scene(i).label)] += 1
    assert np.all(counts[[C.CAR, C.TRUCK, C.PERSON, C.BUILDING, C.SIDEWALK, C.POLE, C.VEGETATION, C.TRUNK]] == 6)
    scenes = [generate_scene(small_world.cfg.scene, seed) for seed in range(40)]
    present = set(np.concatenate([sc.label for sc in scenes]).tolist())
    present |= {int(c) for sc in scenes for c in sc.strip_class} | {C.ROAD, C.PARKING}  # ground classes
    assert present >= set(range(1, 20)) - {C.TERRAIN}  # terrain: the ground beyond the buildings
    assert all(sc.label.min() >= 1 and sc.label.max() <= 19 for sc in scenes)


def test_class_tables():
    assert len(CLASS_NAMES) == 20 and CLASS_NAMES[0] == 'unlabeled' and CLASS_NAMES[19] == 'traffic-sign'
    assert CLASS_NAMES[C.CAR] == 'car' and CLASS_NAMES[C.ROAD] == 'road' and CLASS_NAMES[C.POLE] == 'pole'
    assert BOX_CLASS_NAMES == ('car', 'pedestrian', 'cyclist')


def test_config_rejects_unknown_and_inconsistent_keys(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('lidar:\n  n_beam: 64\n')
    with pytest.raises(ValueError, match='n_beam'):
        load_synthetic_config(bad)
    bad.write_text('scene:\n  lane_width_m: [4.0, 3.0]\n')
    with pytest.raises(ValueError, match='lane_width_m'):
        load_synthetic_config(bad)
    with pytest.raises(FileNotFoundError):
        load_synthetic_config(tmp_path / 'missing.yaml')
    cfg = load_synthetic_config(SMALL)
    assert cfg.lidar.n_beams == 32 and cfg.camera.width == 320 and cfg.lidar.mount_height_m == 1.73


def test_primitive_intersections_known_distances():
    O = np.zeros(3)
    D = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
    # Box 2 m long centred 10 m ahead, rotated 90 deg: its 4 m width now spans x.
    t = intersect_box(O, D, np.array([10.0, 0.0, 0.0]), np.array([2.0, 4.0, 2.0]), np.pi / 2)
    assert t[0] == pytest.approx(8.0) and np.isinf(t[1]) and np.isinf(t[2])
    t = intersect_ellipsoid(O, D, np.array([0.0, 5.0, 0.0]), np.array([1.0, 2.0, 1.0]))
    assert np.isinf(t[0]) and t[1] == pytest.approx(3.0)
    t = intersect_ellipsoid(O, D, np.array([0.0, 5.0, 0.0]), np.array([1.0, 2.0, 1.0]), yaw=np.pi / 2)
    assert t[1] == pytest.approx(4.0)  # the 2 m semi-axis now lies along world x
    t = intersect_cylinder(O + [0, 0, 3.0], D, np.array([6.0, 0.0, 1.0]), 0.5, 2.0)
    assert np.isinf(t[0])  # passes above the 2 m tall cylinder
    t = intersect_cylinder(O, D, np.array([6.0, 0.0, 0.0]), 0.5, 2.0)
    assert t[0] == pytest.approx(5.5)
    t = intersect_ground(np.array([0.0, 0.0, 1.73]), D)
    assert t[2] == pytest.approx(1.73) and np.isinf(t[0])


def _brute_force(grid, scene):
    O = getattr(grid, 'origins', grid.origin)
    best = intersect_ground(O, grid.directions)
    hit = np.where(np.isfinite(best), GROUND, MISS)
    for p in range(scene.num_primitives):
        t = intersect_primitive(scene, p, scene.center[p], O, grid.directions)
        better = t < best
        best[better] = t[better]
        hit[better] = p
    return best, hit


@pytest.mark.parametrize('tilt_deg', [0.0, 7.0])
def test_culled_ray_casting_matches_brute_force(tilt_deg):
    """Culling never loses a hit, also for a pitched and rolled sensor; normals face the rays."""
    cfg = load_synthetic_config(SMALL)
    scene = generate_scene(cfg.scene, 5)
    tilt = make_T(Rotation.from_euler('xy', [tilt_deg, -tilt_deg], degrees=True).as_matrix(), (0, 0, 0))
    T_world_lidar = ego_pose(*scene.ego_start) @ make_T(np.eye(3), (0, 0, 1.73)) @ tilt
    T_world_cam = T_world_lidar @ invert(camera_extrinsic(cfg.camera))
    K = np.array([[40.0, 0, 40], [0, 40, 12], [0, 0, 1]])
    cam = PinholeGrid(origin=T_world_cam[:3, 3], R_world_cam=T_world_cam[:3, :3], K=K, height=24, width=80)
    lid = SpinningGrid(origin=T_world_lidar[:3, 3], R_world_lidar=T_world_lidar[:3, :3],
                       elevations_rad=np.deg2rad(np.linspace(2, -24.8, 8)), n_azimuth=256)
    for grid in (cam, lid):
        t, hit = cast(grid, scene, 0.0)
        tb, hb = _brute_force(grid, scene)
        assert (hit >= 0).sum() > 100  # the test looks at real geometry
        assert np.array_equal(hit, hb)
        assert np.allclose(t[np.isfinite(t)], tb[np.isfinite(tb)])
        ok = hit != MISS
        P = grid.origin + t[ok, None] * grid.directions[ok]
        N = surface_normals(P, hit[ok], scene, 0.0)
        assert np.allclose(np.linalg.norm(N, axis=1), 1.0)
        assert np.all(np.einsum('ij,ij->i', N, grid.directions[ok]) < 1e-9)


def test_beam_table_is_hdl64_like():
    cfg = load_synthetic_config(DEFAULT)
    el = beam_elevations_deg(cfg.lidar)
    assert len(el) == 64 and el[0] == pytest.approx(2.0) and el[-1] == pytest.approx(-24.8)
    assert np.all(np.diff(el) < 0)
    assert np.diff(el)[:31].mean() > np.diff(el)[32:].mean()  # finer spacing in the upper block


def test_sample_contract_and_ranges(small_sample):
    s = small_sample
    assert isinstance(s, Sample)
    assert s.image.shape == (96, 320, 3) and s.pixel_labels.shape == (96, 320)
    n = s.num_points
    assert 8_000 < n < 33_000  # 32 x 1024 rays, sky and dropout removed
    assert s.point_labels.shape == (n,) and s.instance_ids.shape == (n,)
    assert s.points[:, 3].min() >= 0.0 and s.points[:, 3].max() <= 1.0 and s.points[:, 3].std() > 0.05
    r = np.linalg.norm(s.points[:, :3], axis=1)
    assert r.min() >= 2.4 and r.max() <= 80.2
    assert s.image.std() > 20
    assert set(np.unique(s.point_labels)) >= {C.ROAD, C.SIDEWALK, C.BUILDING, C.CAR}
    assert 0 not in set(np.unique(s.point_labels))  # every return hits a labelled surface
    # Stuff carries no instance, things do.
    things = np.isin(s.point_labels, C.THING_CLASSES)
    assert np.all(s.instance_ids[~things] == 0) and np.all(s.instance_ids[things] > 0)
    assert s.frame_ids == ('lidar', 'camera_optical_frame')
    assert np.allclose(s.T_cam_lidar, camera_extrinsic(load_synthetic_config(SMALL).camera))
    # LiDAR in the KITTI orientation: the road is below the sensor, 1.73 m down.
    road = s.points[s.point_labels == C.ROAD]
    assert np.median(road[:, 2]) == pytest.approx(-1.73, abs=0.05)


def test_same_index_same_sample_other_index_differs(small_world, small_sample):
    again = small_world.sample(0)
    for name in ('points', 'image', 'point_labels', 'instance_ids', 'boxes', 'box_labels', 'pixel_labels'):
        assert np.array_equal(getattr(again, name), getattr(small_sample, name)), name
    other = small_world.sample(1)
    assert other.num_points != small_sample.num_points or not np.array_equal(other.points, small_sample.points)
    assert not np.array_equal(other.image, small_sample.image)


def test_point_classes_agree_with_pixel_classes(small_sample):
    agreement, n_visible = _label_agreement(small_sample)
    assert n_visible > 1000
    assert agreement > 0.8, agreement
    # A wrong extrinsic breaks the agreement: the check is sensitive to the geometry.
    wrong = small_sample.replace(T_cam_lidar=random_perturbation(np.random.default_rng(0), 15.0, 1.0)
                                 @ small_sample.T_cam_lidar)
    assert _label_agreement(wrong)[0] < agreement - 0.1


def test_boxes_contain_their_instance_points(small_sample):
    s = small_sample
    ids = s.meta['box_instance_ids']
    assert len(ids) == len(s.boxes) > 0 and set(s.box_labels.tolist()) <= {0, 1, 2}
    for box, inst in zip(s.boxes, ids):
        pts = s.points[s.instance_ids == inst, :3]
        assert len(pts) >= 5
        c, yaw = box[:3], box[6]
        d = pts - c
        local = np.stack([np.cos(yaw) * d[:, 0] + np.sin(yaw) * d[:, 1],
                          -np.sin(yaw) * d[:, 0] + np.cos(yaw) * d[:, 1], d[:, 2]], axis=1)
        assert np.all(np.abs(local) <= box[3:6] / 2 + 0.1), inst


def test_wrong_nominal_extrinsic_keeps_truth(small_world, small_sample):
    cfg = small_world.cfg
    true = camera_extrinsic(cfg.camera)
    wrong = make_T(np.eye(3), (0.1, 0, 0)) @ true
    s = SyntheticWorld(cfg, T_cam_lidar=wrong).sample(0)
    assert np.allclose(s.T_cam_lidar, wrong)
    assert np.allclose(np.asarray(s.meta['T_cam_lidar_true']), true)
    assert np.array_equal(s.points, small_sample.points)  # the data itself is unchanged
    assert 'T_cam_lidar_true' not in small_sample.meta


def test_camera_time_offset_moves_only_the_camera(small_world, small_sample):
    from dataclasses import replace
    cfg = small_world.cfg
    late = SyntheticWorld(replace(cfg, camera=replace(cfg.camera, time_offset_s=0.05))).sample(0)
    assert late.image_stamp_ns - late.stamp_ns == 50_000_000
    assert np.array_equal(late.points, small_sample.points)
    assert not np.array_equal(late.image, small_sample.image)


def test_motion_distortion_blocks():
    from dataclasses import replace
    from ros_ncal.data.synthetic import render_frame
    from ros_ncal.data.synthetic.lidar import sweep_blocks
    cfg = load_synthetic_config(SMALL)
    dist = replace(cfg, lidar=replace(cfg.lidar, motion_distortion=True, distortion_blocks=16))
    blocks = sweep_blocks(dist.lidar)
    assert [b[0] for b in blocks] == list(np.cumsum([0] + [b[1] for b in blocks[:-1]]))
    assert sum(b[1] for b in blocks) == cfg.lidar.n_azimuth
    dts = np.array([b[2] for b in blocks])
    assert np.all(np.abs(dts) <= 0.05) and abs(dts[0]) < 0.005  # forward fires at the stamp
    assert dts[len(dts) // 4] < -0.02  # the left side fires earlier (clockwise head)
    # A still world seen by a still sensor: block-wise casting equals the one-shot sweep exactly.
    scene = generate_scene(cfg.scene, 2)
    still = replace(scene, velocity=np.zeros_like(scene.velocity), inst_velocity=np.zeros_like(scene.inst_velocity))
    pose = ego_pose(*scene.ego_start)
    a = render_frame(still, pose, cfg, noise_seed=1)
    b = render_frame(still, pose, dist, noise_seed=1)
    assert np.array_equal(a.points, b.points) and np.array_equal(a.point_labels, b.point_labels)
    # A moving sensor: the sweep is distorted, the image is not.
    v = np.array([10.0, 0.0, 0.0])
    c = render_frame(still, pose, dist, noise_seed=1, ego_velocity=v)
    assert not np.array_equal(c.points, a.points) and np.array_equal(c.image, a.image)


def test_drive_moves_ego_and_traffic(small_world):
    frames = list(small_world.drive(seed=4, n_frames=3))
    assert [f.stamp_ns for f in frames] == [0, 100_000_000, 200_000_000]
    poses = [np.asarray(f.meta['T_world_lidar']) for f in frames]
    scene = generate_scene(small_world.cfg.scene, frames[0].meta['scene_seed'])
    step = poses[1][:3, 3] - poses[0][:3, 3]
    assert np.linalg.norm(step) == pytest.approx(scene.ego_speed * 0.1, rel=1e-6)
    assert step[0] > 0.5  # forward along the street
    # World-frame boxes move exactly with their instance's velocity.
    moved = 0
    for a, b, Ta, Tb in ((frames[0], frames[2], poses[0], poses[2]),):
        for box_a, inst in zip(a.boxes, a.meta['box_instance_ids']):
            if inst not in b.meta['box_instance_ids']:
                continue
            box_b = b.boxes[b.meta['box_instance_ids'].index(inst)]
            wa = transform_points(Ta, box_a[None, :3])[0]
            wb = transform_points(Tb, box_b[None, :3])[0]
            assert np.allclose(wb - wa, scene.inst_velocity[inst] * 0.2, atol=1e-3)
            moved += np.linalg.norm(scene.inst_velocity[inst]) > 0
    assert moved > 0


def test_default_config_frame():
    world = SyntheticWorld(load_synthetic_config(DEFAULT))
    s = world.sample(3)
    assert s.image.shape == (375, 1242, 3)
    assert 50_000 < s.num_points < 130_000
    assert np.allclose(s.K[0, 0], 721.5) and len(s.boxes) > 0
    agreement, n_visible = _label_agreement(s)
    assert n_visible > 10_000 and agreement > 0.8, agreement


def test_synth_command_writes_previews_and_readable_shards(tmp_path, small_world):
    from ros_ncal.cli import main
    from ros_ncal.data.shards import ShardDataset

    rc = main(['synth', '--out', str(tmp_path / 'png'), '--shards', str(tmp_path / 'ds'), '--frames', '1',
               '--start-index', '2', '--config', str(SMALL), '--seed', '0'])
    assert rc == 0
    names = sorted(p.name for p in (tmp_path / 'png').iterdir())
    assert names == [f'frame_000002_{k}.png' for k in ('bev', 'image', 'labels', 'points')]
    ds = ShardDataset(tmp_path / 'ds')
    assert len(ds) == 1 and ds.class_names['points'][9] == 'road'
    back, direct = ds[0], small_world.sample(2)
    for name in ('points', 'image', 'point_labels', 'instance_ids', 'boxes', 'pixel_labels'):
        assert np.array_equal(getattr(back, name), getattr(direct, name)), name
    assert main(['synth', '--frames', '1']) == 2  # nothing to write
