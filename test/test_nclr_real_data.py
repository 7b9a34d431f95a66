"""Real-data pretraining inputs: aspect-preserving crops with matching intrinsics, LiDAR ring subsampling,
the kitti_raw / rosbag pretraining sources (real frames from ../shared/data)."""
import numpy as np
import pytest

from ros_ncal.geometry import project_lidar
from ros_ncal.nclr.config import InputConfig, NCLRConfig, PerturbationConfig
from ros_ncal.nclr.pretext import augment_points, crop_window, make_pretext, network_view, ring_index
from ros_ncal.nclr.sources import build_source

DRIVE = 'kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync'


@pytest.fixture(scope='module')
def drive_sample(shared_data):
    from ros_ncal.data.readers.kitti_raw import open_kitti_raw_drive, read_kitti_raw_frame
    return read_kitti_raw_frame(open_kitti_raw_drive(shared_data / DRIVE), 0)


def test_keep_aspect_crops_instead_of_stretching():
    cfg = InputConfig(image_hw=(96, 320), keep_aspect=True)
    x0, y0, w, h = crop_window((1200, 1920), (96, 320), cfg, None)
    assert (x0, w) == (0, 1920) and h == 576 and y0 == (1200 - 576) // 2   # centred band of the network aspect
    x0, y0, w, h = crop_window((100, 1000), (96, 320), cfg, None)       # wider than the network: crop columns
    assert (y0, h) == (0, 100) and w == 333
    assert crop_window((1200, 1920), (96, 320), InputConfig(keep_aspect=False), None) == (0, 0, 1920, 1200)


@pytest.mark.parametrize('keep_aspect', [True, False])
def test_random_crop_keeps_projection_consistent(drive_sample, keep_aspect):
    """A point's pixel in the cropped, resized network image equals its original pixel mapped by the same
    crop and scale: K follows the crop exactly."""
    s = drive_sample
    cfg = InputConfig(image_hw=(96, 320), keep_aspect=keep_aspect, crop_prob=1.0, crop_scale=(0.5, 0.9))
    rng = np.random.default_rng(3)
    for _ in range(5):
        state = rng.bit_generator.state
        x0, y0, w, h = crop_window(s.image.shape[:2], (96, 320), cfg, rng)
        rng.bit_generator.state = state
        img, K = network_view(s.image, s.K, cfg, rng)
        assert img.shape == (96, 320, 3)
        uv0, _, m0 = project_lidar(s.points, s.T_cam_lidar, s.K, s.image_hw)
        uv1, _, m1 = project_lidar(s.points, s.T_cam_lidar, K, (96, 320))
        sx, sy = 320 / w, 96 / h
        exp = np.stack([(uv0[:, 0] - x0 + 0.5) * sx - 0.5, (uv0[:, 1] - y0 + 0.5) * sy - 0.5], 1)
        both = m0 & m1
        assert both.sum() > 500
        np.testing.assert_allclose(uv1[both], exp[both], atol=1e-6)
        # the crop window's content is what the network sees (mean colour of a patch)
        if keep_aspect:
            assert abs(sx - sy) < 0.02 * sx    # square pixels stay square


def test_ring_subsampling_looks_like_a_sparser_lidar(drive_sample):
    pts = drive_sample.points
    cfg = InputConfig(beam_keep=(4,), beam_bin_deg=0.42, point_dropout=0.0)
    out = augment_points(pts, cfg, np.random.default_rng(0))
    rings_in = np.unique(ring_index(pts, 0.42))
    rings_out = np.unique(ring_index(out, 0.42))
    assert len(rings_out) <= len(rings_in) // 4 + 1
    assert 0.15 * len(pts) < len(out) < 0.4 * len(pts)
    # no-op settings return the cloud untouched and draw nothing from the generator
    rng = np.random.default_rng(1)
    before = rng.bit_generator.state
    assert augment_points(pts, InputConfig(), rng) is pts
    assert rng.bit_generator.state == before


def test_real_sources_feed_the_pretext(shared_data):
    """The kitti_raw (a frame block) and rosbag sources give Samples whose pretext items have points in view."""
    raw = build_source({'kind': 'kitti_raw', 'drive': str(shared_data / DRIVE), 'frames': [10, 13]})
    assert len(raw) == 3 and raw.get(0).meta['index'] == 10
    with pytest.raises(ValueError, match='frames must be'):
        build_source({'kind': 'kitti_raw', 'drive': str(shared_data / DRIVE), 'frames': [70, 90]})
    bag = build_source({'kind': 'rosbag', 'path': str(shared_data / 'rig_bags' / 'opencalib_ours_1')})
    assert len(bag) == 1 and bag.get(0).image.shape[:2] == (1200, 1920)
    cfg = NCLRConfig.from_dict({'input': {'keep_aspect': True, 'crop_prob': 0.5, 'crop_scale': [0.6, 1.0],
                                          'beam_keep': [1, 2, 4], 'point_dropout': 0.3, 'gamma_jitter': 0.2,
                                          'blur_prob': 0.5}})
    rng = np.random.default_rng(0)
    for src in (raw, bag):
        for _ in range(3):
            it = make_pretext(src.get(0), rng, PerturbationConfig(), cfg.input, step=0)
            assert it.image.shape == (96, 320, 3) and it.image.dtype == np.uint8
            assert it.overlap_gt.sum() > 200
            assert abs(it.K[0, 0] - it.K[1, 1]) < 0.02 * it.K[0, 0]


def test_eval_loaders_for_the_drive_and_rig_bags(shared_data):
    """eval-calib's real sources: a block of the KITTI raw drive, and a rig bag whose truth file (not the
    bag's own /tf_static) becomes the nominal the evaluation perturbs."""
    import json

    from ros_ncal.calib.eval_data import load_kitti_raw_samples, load_rosbag_samples, parse_frame_range
    samples, ids = load_kitti_raw_samples(shared_data / DRIVE, '57:61', step=2)
    assert len(samples) == 2 and ids[0].endswith('0000000057') and ids[1].endswith('0000000059')
    with pytest.raises(ValueError, match='frame range'):
        parse_frame_range('70:90', 77)
    bag = shared_data / 'rig_bags' / 'opencalib_manual_0'
    s, _ = load_rosbag_samples(bag)
    truth = np.asarray(json.loads((bag.parent / 'opencalib_manual_0.truth.json').read_text())['T_cam_lidar'])
    np.testing.assert_allclose(s[0].T_cam_lidar, truth, atol=1e-9)
