"""Overlays and statistics: projection lands where the labels say on real KITTI frames; ncal inspect end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ros_ncal.cli import main as ncal
from ros_ncal.data.boxes3d import points_in_boxes
from ros_ncal.data.inspect import dataset_stats
from ros_ncal.viz.sample_overlay import draw_boxes, render_overlay
from ros_ncal.data.labels import BOX_PALETTE, SEMANTICKITTI_PALETTE
from ros_ncal.data.readers.kitti import read_kitti_frame
from ros_ncal.geometry import make_T, project_lidar, rotvec_to_matrix

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def kitti3(kitti_dir):
    return read_kitti_frame(kitti_dir / 'training', '000003')


def test_box_points_project_into_the_labelled_2d_box(kitti_dir):
    """Extrinsic, intrinsics and the camera->LiDAR box conversion agree with KITTI's own 2D labels."""
    checked = 0
    for frame in ('000000', '000001', '000002', '000003'):
        s = read_kitti_frame(kitti_dir / 'training', frame)
        inside = points_in_boxes(s.points, s.boxes)
        for m, bbox in enumerate(s.meta['kitti_box_attrs']['bbox_2d']):
            pts = s.points[inside[m]]
            if len(pts) < 20:
                continue
            uv, _, ok = project_lidar(pts, s.T_cam_lidar, s.K, s.image_hw)
            l, t, r, b = bbox
            pad = 4
            hit = ((uv[:, 0] > l - pad) & (uv[:, 0] < r + pad) & (uv[:, 1] > t - pad) & (uv[:, 1] < b + pad))[ok]
            assert hit.mean() > 0.95, (frame, m, hit.mean())
            checked += 1
    assert checked >= 3


def test_overlay_draws_points_and_box_wireframe(kitti3):
    s = kitti3
    plain = render_overlay(s, radius=0, draw_box_wireframes=False)
    uv, depth, mask = project_lidar(s.points, s.T_cam_lidar, s.K, s.image_hw)
    changed = np.any(plain != s.image, axis=2)
    px = np.zeros(s.image_hw, bool)
    px[np.round(uv[mask, 1]).astype(int).clip(0, s.image_hw[0] - 1), np.round(uv[mask, 0]).astype(int).clip(0, s.image_hw[1] - 1)] = True
    assert not (changed & ~px).any()  # nothing drawn where no point projects
    assert changed.sum() > 0.7 * px.sum()  # (a point coloured like the pixel under it leaves no change)
    boxed = render_overlay(s, radius=0)
    car_color = BOX_PALETTE[0]
    box_px = np.all(boxed == car_color, axis=2) & ~np.all(plain == car_color, axis=2)
    l, t, r, b = s.meta['kitti_box_attrs']['bbox_2d'][0]
    ys, xs = np.nonzero(box_px)
    assert len(xs) > 200
    # the projected wireframe hugs the labelled 2D box
    assert abs(xs.min() - l) < 15 and abs(xs.max() - r) < 15 and abs(ys.min() - t) < 15 and abs(ys.max() - b) < 15
    # a wrong extrinsic gives a visibly different overlay
    T_bad = make_T(rotvec_to_matrix(np.array([0, np.deg2rad(5), 0])), np.zeros(3)) @ s.T_cam_lidar
    assert (render_overlay(s, radius=0, T_cam_lidar=T_bad) != boxed).any(axis=2).sum() > 1000


def test_color_modes_and_boxes_behind_the_camera(kitti3):
    s = kitti3
    with pytest.raises(ValueError, match='point_labels'):
        render_overlay(s, color='class')
    labelled = s.replace(point_labels=np.full(s.num_points, 9))
    out = render_overlay(labelled, color='class', radius=0, draw_box_wireframes=False)
    drawn = np.any(out != s.image, axis=2)
    assert np.all(out[drawn] == SEMANTICKITTI_PALETTE[9])
    assert render_overlay(s, color='intensity').shape == s.image.shape
    with pytest.raises(ValueError, match='color mode'):
        render_overlay(s, color='rainbow')
    behind = np.array([[-10, 0, 0, 4, 2, 1.5, 0]], np.float32)  # behind the camera: nothing drawn
    np.testing.assert_array_equal(draw_boxes(s.image, behind, None, s.T_cam_lidar, s.K), s.image)
    straddling = np.array([[0.5, 0, -1, 6, 2, 1.5, 0]], np.float32)  # crosses the image plane: clipped, drawn
    assert (draw_boxes(s.image, straddling, None, s.T_cam_lidar, s.K) != s.image).any()


def test_stats_on_kitti(kitti_dir):
    samples = [read_kitti_frame(kitti_dir / 'training', f) for f in ('000000', '000001')]
    d = dataset_stats(samples).as_dict({'boxes': ['Car', 'Pedestrian', 'Cyclist']})
    assert d['samples'] == 2 and d['box_class_histogram'] == {'Car': 1, 'Pedestrian': 1, 'Cyclist': 1}
    assert d['image_sizes_wxh'] == {'1224x370': 1, '1242x375': 1}
    assert 0.1 < d['fraction_of_points_in_image']['mean'] < 0.3  # KITTI's ~90 deg camera sees about a sixth


def test_inspect_cli_on_prepared_datasets(kitti_dir, tmp_path):
    ds = tmp_path / 'kitti'
    assert ncal(['prepare', 'kitti', str(kitti_dir), '--out', str(ds), '--no-progress', '--max', '2']) == 0
    out = tmp_path / 'look'
    assert ncal(['inspect', str(ds), '--out', str(out), '--max', '1']) == 0
    pngs = sorted(out.glob('overlay_*.png'))
    assert len(pngs) == 1 and Image.open(pngs[0]).size == (1224, 370)
    stats = json.loads((out / 'stats.json').read_text())
    assert stats['samples'] == 2 and stats['box_class_histogram'] == {'Car': 1, 'Pedestrian': 1, 'Cyclist': 1}
    assert stats['skipped'] == []
    # synthetic world through prepare and inspect with class colours
    syn = tmp_path / 'syn'
    assert ncal(['prepare', 'synthetic', '--frames', '1', '--seed', '3', '--synthetic-config',
                 str(REPO / 'config' / 'synthetic_small.yaml'), '--out', str(syn), '--no-progress']) == 0
    assert ncal(['inspect', str(syn), '--out', str(out / 'syn'), '--color', 'class']) == 0
    stats = json.loads((out / 'syn' / 'stats.json').read_text())
    assert stats['samples'] == 1 and sum(stats['point_class_histogram'].values()) > 1000
    assert 'road' in stats['point_class_histogram']
    assert ncal(['inspect', str(tmp_path / 'missing')]) == 2


def test_every_overlay_colours_depth_alike():
    """One depth ramp (viz/colors.py): the calibrator node's ~/overlay, the overlays of ncal calibrate / the demo
    (viz.draw_projection_overlay), ncal inspect and ncal synth's previews draw the same point in the same colour;
    near = red."""
    from ros_ncal.data.sample import Sample
    from ros_ncal.nodes.calibrator import render_overlay as node_overlay
    from ros_ncal.viz import depth_colors, draw_projection_overlay
    from ros_ncal.viz.synthetic_preview import overlay_points
    K = np.array([[100.0, 0, 64], [0, 100, 48], [0, 0, 1]])
    T = np.eye(4)
    pts = np.array([[0.0, 0.0, 10.0, 0.5]], dtype=np.float32)     # camera frame = LiDAR frame here
    img = np.zeros((96, 128, 3), np.uint8)
    a, _ = node_overlay(img, pts, T, K, scale=1.0, radius=0)
    b, _ = draw_projection_overlay(img, pts, T, K, radius=0)
    c = render_overlay(Sample(points=pts, image=img, K=K, T_cam_lidar=T), radius=0, draw_box_wireframes=False)
    d = overlay_points(Sample(points=pts, image=img, K=K, T_cam_lidar=T), by='depth', radius=0)
    want = depth_colors(np.array([10.0]))[0]
    for out in (a, b, c, d):
        np.testing.assert_array_equal(out[48, 64], want)
    near, far = depth_colors(np.array([1.0, 59.0]))
    assert near[0] > near[2] and far[2] > far[0]


def test_every_class_overlay_colours_a_class_alike(tmp_path):
    """One palette per label set: ncal inspect, ncal synth's previews (point overlay, label image, bird's-eye view)
    and the segmenter's rgb field colour a SemanticKITTI class (the synthetic world's label set too) alike."""
    from ros_ncal.data.sample import Sample
    from ros_ncal.data.synthetic import CLASS_COLORS, CLASS_NAMES
    from ros_ncal.msgcodec import unpack_rgb_float
    from ros_ncal.nodes.segmenter import labeled_cloud_extras
    from ros_ncal.viz.sample_overlay import point_colors
    from ros_ncal.viz.synthetic_preview import bev_image, overlay_points, save_previews
    assert CLASS_COLORS is SEMANTICKITTI_PALETTE and len(CLASS_NAMES) == len(SEMANTICKITTI_PALETTE)
    K = np.array([[100.0, 0, 64], [0, 100, 48], [0, 0, 1]])
    pts = np.array([[0.0, 0.0, 10.0, 0.5]], dtype=np.float32)     # camera frame = LiDAR frame here
    img = np.zeros((96, 128, 3), np.uint8)
    for label in (1, 6, 13):                                        # car, person, building
        want = SEMANTICKITTI_PALETTE[label]
        s = Sample(points=pts, image=img, K=K, T_cam_lidar=np.eye(4), point_labels=np.array([label]),
                   pixel_labels=np.full((96, 128), label, np.int32))
        np.testing.assert_array_equal(point_colors(s, 'class', np.array([10.0]))[0], want)
        np.testing.assert_array_equal(overlay_points(s, radius=0)[48, 64], want)
        np.testing.assert_array_equal(unpack_rgb_float(labeled_cloud_extras(np.array([label]))['rgb'])[0], want)
        bev = bev_image(Sample(points=np.array([[1.05, 0.05, 0.0, 0.5]], np.float32), image=img, K=K,
                               T_cam_lidar=np.eye(4), point_labels=np.array([label])), extent_m=2.0)
        np.testing.assert_array_equal(bev[9, 19], want)
    out = save_previews(s, tmp_path, 'p')
    labels_png = np.asarray(Image.open(next(p for p in out if p.name == 'p_labels.png')))
    np.testing.assert_array_equal(labels_png[0, 0], SEMANTICKITTI_PALETTE[13])


def test_semantickitti_palette_is_the_standard_rgb():
    """semantic-kitti.yaml's color_map is BGR: the palette is its RGB flip (car blue, vegetation green, road
    magenta, building orange), and the segmenter's packed rgb field carries it as 0x00RRGGBB."""
    from ros_ncal.data.labels import SEMANTICKITTI_CLASSES, class_colors
    from ros_ncal.nodes.segmenter import labeled_cloud_extras
    standard = {'car': (100, 150, 245), 'vegetation': (0, 175, 0), 'road': (255, 0, 255),
                'building': (255, 200, 0), 'person': (255, 30, 30), 'traffic-sign': (255, 0, 0)}
    ids = [SEMANTICKITTI_CLASSES.index(name) for name in standard]
    assert [tuple(int(v) for v in c) for c in class_colors(np.array(ids))] == list(standard.values())
    packed = labeled_cloud_extras(np.array(ids))['rgb'].view(np.uint32)
    assert [int(u) for u in packed] == [(r << 16) | (g << 8) | b for r, g, b in standard.values()]


def test_one_point_splat_rounds_clips_and_keeps_near_points_on_top():
    """viz.draw_points, the splat of every overlay: float pixels go to the nearest pixel, squares are clipped at
    the border, and with depths the nearer of two overlapping squares wins wherever they overlap."""
    from ros_ncal.viz import draw_points
    img = np.zeros((8, 8, 3), np.uint8)
    red, blue = np.array([255, 0, 0], np.uint8), np.array([0, 0, 255], np.uint8)
    uv = np.array([[3.4, 3.6], [4.0, 4.0], [7.0, 0.0]])
    out = draw_points(img.copy(), uv, np.stack([red, blue, blue]), depth=np.array([1.0, 5.0, 9.0]), radius=1)
    np.testing.assert_array_equal(out[3:6, 2:5].reshape(-1, 3), np.tile(red, (9, 1)))  # near square, (3, 4) centre
    np.testing.assert_array_equal(out[3:6, 5], np.tile(blue, (3, 1)))  # the far square shows only where the near one is not
    assert (out[0:2, 6:8] == blue).all() and out.shape == img.shape  # clipped at the corner
    assert not out[7, 0].any()
    swapped = draw_points(img.copy(), uv, np.stack([red, blue, blue]), depth=np.array([5.0, 1.0, 9.0]), radius=1)
    np.testing.assert_array_equal(swapped[4, 4], blue)
    ints = draw_points(img.copy(), np.array([[2, 5]]), red[None], radius=0)  # integer pixels as they are
    assert ints[5, 2].tolist() == [255, 0, 0] and ints.any(axis=2).sum() == 1
