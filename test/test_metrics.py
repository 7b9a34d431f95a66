"""Downstream metrics against small hand-computed cases (mIoU, rotated IoU, AP_R40, PQ)."""
import math

import numpy as np
import pytest

from ros_ncal.eval.box_geometry import bev_corners, bev_iou, clip_polygon, iou_3d, polygon_area, rotated_nms
from ros_ncal.eval.metrics_det import DetectionEvaluator, average_precision_r40, match_detections
from ros_ncal.eval.metrics_panoptic import PanopticEvaluator
from ros_ncal.eval.metrics_seg import SegmentationEvaluator, confusion_matrix, iou_from_confusion


# ---------------------------------------------------------------- segmentation

def test_confusion_and_miou_hand_case():
    target = np.array([0, 1, 1, 1, 2, 2])
    pred = np.array([2, 1, 1, 2, 2, 1])
    conf = confusion_matrix(pred, target, 3)
    # The ignored first point is dropped; rows = target, cols = pred.
    assert conf.tolist() == [[0, 0, 0], [0, 2, 1], [0, 1, 1]]
    iou = iou_from_confusion(conf)
    assert math.isnan(iou[0])
    assert iou[1] == pytest.approx(2 / 4)
    assert iou[2] == pytest.approx(1 / 3)
    ev = SegmentationEvaluator(3, class_names=['unlabeled', 'car', 'road'])
    ev.add(pred[:3], target[:3])   # accumulates over two "frames"
    ev.add(pred[3:], target[3:])
    res = ev.compute()
    assert res['mIoU'] == pytest.approx((0.5 + 1 / 3) / 2)
    assert res['IoU'] == {'car': pytest.approx(0.5), 'road': pytest.approx(1 / 3)}
    assert res['accuracy'] == pytest.approx(3 / 5)
    assert res['num_points'] == 5


def test_miou_absent_class_excluded_and_predicted_ignore_is_false_negative():
    target = np.array([1, 1, 1, 1])
    pred = np.array([1, 1, 0, 3])          # class 2 never appears; class 3 predicted but absent
    ev = SegmentationEvaluator(4)
    ev.add(pred, target)
    res = ev.compute()
    assert res['IoU']['1'] == pytest.approx(2 / 4)   # predicted-0 and predicted-3 are both FN of class 1
    assert math.isnan(res['IoU']['2'])
    assert res['IoU']['3'] == 0.0
    assert res['mIoU'] == pytest.approx((0.5 + 0.0) / 2)


def test_seg_metric_rejects_bad_input():
    with pytest.raises(ValueError, match='class ids must lie'):
        confusion_matrix(np.array([5]), np.array([1]), 3)
    with pytest.raises(ValueError, match='entries'):
        confusion_matrix(np.array([1, 1]), np.array([1]), 3)
    with pytest.raises(ValueError, match='integer'):
        confusion_matrix(np.array([1.0]), np.array([1]), 3)


# ---------------------------------------------------------------- box geometry

def test_polygon_clip_and_area():
    sq = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], float)
    shifted = sq + [1, 1]
    assert polygon_area(sq) == pytest.approx(4.0)
    assert polygon_area(clip_polygon(sq, shifted)) == pytest.approx(1.0)
    assert polygon_area(clip_polygon(sq, sq + [5, 0])) == 0.0


def test_bev_corners_yaw_convention():
    c = bev_corners(np.array([[1, 2, 0, 4, 2, 1, np.pi / 2]]))[0]
    # yaw 90 deg: the length (4 m) lies along +y.
    assert np.ptp(c[:, 1]) == pytest.approx(4.0)
    assert np.ptp(c[:, 0]) == pytest.approx(2.0)
    assert c.mean(0) == pytest.approx([1, 2])


def test_bev_and_3d_iou_hand_cases():
    a = np.array([[0, 0, 0, 2, 2, 2, 0]], float)
    b = np.array([[1, 0, 0, 2, 2, 2, 0]], float)
    assert bev_iou(a, b)[0, 0] == pytest.approx(2 / 6)
    b_up = np.array([[1, 0, 1, 2, 2, 2, 0]], float)
    assert bev_iou(a, b_up)[0, 0] == pytest.approx(1 / 3)
    assert iou_3d(a, b_up)[0, 0] == pytest.approx(2 / 14)       # overlap 2 m^2 x 1 m; union 8 + 8 - 2
    # Same square rotated by 45 deg: the intersection is a regular octagon, IoU = 1 / sqrt(2).
    r = np.array([[0, 0, 0, 2, 2, 2, np.pi / 4]], float)
    assert bev_iou(a, r)[0, 0] == pytest.approx(1 / math.sqrt(2))
    # A 4x2 box at yaw 90 equals a 2x4 box at yaw 0; heading flipped by pi is the same box.
    assert bev_iou([[0, 0, 0, 4, 2, 1, np.pi / 2]], [[0, 0, 0, 2, 4, 1, 0]])[0, 0] == pytest.approx(1.0)
    assert iou_3d([[3, 1, 0, 4, 2, 1, 0.3]], [[3, 1, 0, 4, 2, 1, 0.3 + np.pi]])[0, 0] == pytest.approx(1.0)
    # Disjoint and shapes.
    assert bev_iou(a, [[10, 0, 0, 2, 2, 2, 0]])[0, 0] == 0.0
    assert bev_iou(np.zeros((0, 7)), a).shape == (0, 1)


def test_box_validation():
    with pytest.raises(ValueError, match=r'\(M, 7\)'):
        bev_iou(np.zeros((1, 6)), np.zeros((1, 6)))
    with pytest.raises(ValueError, match='positive'):
        bev_iou([[0, 0, 0, 0, 1, 1, 0]], [[0, 0, 0, 1, 1, 1, 0]])


def test_rotated_nms_keeps_best_of_overlapping():
    boxes = np.array([[0, 0, 0, 4, 2, 1.5, 0], [0.1, 0, 0, 4, 2, 1.5, 0.05], [10, 0, 0, 4, 2, 1.5, 0]], float)
    keep = rotated_nms(boxes, np.array([0.5, 0.9, 0.7]), iou_threshold=0.3)
    assert keep.tolist() == [1, 2]


# ---------------------------------------------------------------- AP

def test_match_detections_greedy_by_score():
    iou = np.array([[0.8, 0.0], [0.75, 0.1], [0.0, 0.9]])
    m = match_detections(iou, np.array([0.5, 0.9, 0.8]), threshold=0.7)
    # det 1 (best score) takes gt 0; det 0 is then a duplicate -> FP; det 2 takes gt 1.
    assert m.tolist() == [0, 1, 1]
    m = match_detections(iou, np.array([0.5, 0.9, 0.8]), threshold=0.7, gt_ignore=np.array([False, True]))
    assert m.tolist() == [0, 1, -1]


def test_ap_r40_hand_case():
    # Ranked TP, FP, TP with 3 ground-truth boxes: recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3.
    # r = 1/40..13/40 -> 1; r = 14/40..26/40 -> 2/3; r >= 27/40 -> 0.
    ap = average_precision_r40(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), num_gt=3)
    assert ap == pytest.approx((13 * 1 + 13 * 2 / 3) / 40)
    assert average_precision_r40(np.array([0.9]), np.array([True]), num_gt=1) == pytest.approx(1.0)
    assert average_precision_r40(np.zeros(0), np.zeros(0, bool), num_gt=2) == 0.0
    assert math.isnan(average_precision_r40(np.zeros(0), np.zeros(0, bool), num_gt=0))


def test_detection_evaluator_same_case_through_boxes():
    car = lambda x, y: [x, y, 0.0, 4.0, 1.8, 1.5, 0.2]  # noqa: E731
    ev = DetectionEvaluator()
    # Frame 1: two cars; a good detection of one (TP), a detection off by 1.5 m (FP at 0.7).
    ev.add(pred_boxes=[car(0, 0), car(11.5, 0)], pred_scores=[0.9, 0.8], pred_labels=[0, 0],
           gt_boxes=[car(0, 0), car(10, 0)], gt_labels=[0, 0])
    # Frame 2: one car found with 0.05 m error (TP); a pedestrian gt with a perfect detection.
    ped = [5, 5, 0.0, 0.8, 0.6, 1.7, 0.0]
    ev.add(pred_boxes=[car(20.05, 0), ped], pred_scores=[0.7, 0.6], pred_labels=[0, 1],
           gt_boxes=[car(20, 0), ped], gt_labels=[0, 1])
    res = ev.compute()
    expected = (13 + 13 * 2 / 3) / 40
    assert res['AP_bev']['car'] == pytest.approx(expected)
    assert res['AP_3d']['car'] == pytest.approx(expected)
    assert res['AP_bev']['pedestrian'] == pytest.approx(1.0)
    assert math.isnan(res['AP_bev']['cyclist'])
    assert res['mAP_bev'] == pytest.approx((expected + 1.0) / 2)
    assert res['num_gt'] == {'car': 3, 'pedestrian': 1, 'cyclist': 0}


def test_ap_3d_penalises_height_error_but_bev_does_not():
    gt = [[0, 0, 0, 4, 1.8, 1.5, 0]]
    pred = [[0, 0, 0.6, 4, 1.8, 1.5, 0]]      # vertical overlap 0.9 of 1.5 -> 3D IoU 0.9/2.1 < 0.7
    ev = DetectionEvaluator()
    ev.add(pred, [0.9], [0], gt, [0])
    res = ev.compute()
    assert res['AP_bev']['car'] == pytest.approx(1.0)
    assert res['AP_3d']['car'] == 0.0


# ---------------------------------------------------------------- panoptic

def _panoptic_case():
    gt_sem = np.array([1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0])
    gt_inst = np.array([1, 1, 1, 1, 2, 2, 0, 0, 0, 0, 0])
    pred_sem = np.array([1, 1, 1, 2, 1, 1, 2, 2, 2, 1, 2])
    pred_inst = np.array([5, 5, 5, 0, 6, 7, 0, 0, 0, 9, 0])
    return pred_sem, pred_inst, gt_sem, gt_inst


def test_pq_hand_case():
    ev = PanopticEvaluator(3, thing_classes=[1], class_names=['unlabeled', 'car', 'road'])
    ev.add(*_panoptic_case())
    res = ev.compute()
    # car: gt #1 (4 pts) vs pred #5 (3 pts): IoU 3/4 -> TP; gt #2 (2 pts) vs #6 or #7: IoU 1/2, not > 1/2 -> FN;
    # preds #6, #7, #9 -> 3 FP. PQ = 0.75 / (1 + 1.5 + 0.5).
    car = res['per_class']['car']
    assert (car['TP'], car['FP'], car['FN']) == (1, 3, 1)
    assert car['PQ'] == pytest.approx(0.25)
    assert car['SQ'] == pytest.approx(0.75)
    assert car['RQ'] == pytest.approx(1 / 3)
    # road (stuff): IoU 3/5 -> TP, no FP/FN.
    road = res['per_class']['road']
    assert road['PQ'] == pytest.approx(0.6) and road['RQ'] == pytest.approx(1.0)
    assert res['PQ'] == pytest.approx((0.25 + 0.6) / 2)
    assert res['PQ_things'] == pytest.approx(0.25)
    assert res['PQ_stuff'] == pytest.approx(0.6)
    assert res['SQ'] == pytest.approx((0.75 + 0.6) / 2)
    assert res['RQ'] == pytest.approx((1 / 3 + 1) / 2)
    # Semantic IoU over the 10 valid points: car 5/7, road 3/5.
    assert res['mIoU'] == pytest.approx((5 / 7 + 3 / 5) / 2)
    assert res['PQ_dagger'] == pytest.approx((0.25 + 3 / 5) / 2)


def test_pq_min_points_and_unassigned_thing_points():
    ev = PanopticEvaluator(3, thing_classes=[1], min_points=2)
    ev.add(*_panoptic_case())
    car = ev.compute()['per_class']['1']
    # The three 1-point predictions are too small to be FP; the 2-point gt car is still a FN.
    assert (car['TP'], car['FP'], car['FN']) == (1, 0, 1)
    assert car['PQ'] == pytest.approx(0.75 / 1.5)
    # Thing points with gt instance 0 are dropped: a prediction over them is no FP.
    ev = PanopticEvaluator(3, thing_classes=[1])
    ev.add(pred_sem=[1, 1, 1], pred_inst=[3, 3, 4], gt_sem=[1, 1, 1], gt_inst=[1, 1, 0])
    car = ev.compute()['per_class']['1']
    assert (car['TP'], car['FP'], car['FN']) == (1, 0, 0)


def test_pq_perfect_prediction_is_one_and_bad_input_rejected():
    ps, pi, gs, gi = _panoptic_case()
    ev = PanopticEvaluator(3, thing_classes=[1])
    ev.add(gs, gi * 7, gs, gi)      # instance ids need not agree in value, only in grouping
    res = ev.compute()
    assert res['PQ'] == pytest.approx(1.0) and res['mIoU'] == pytest.approx(1.0)
    with pytest.raises(ValueError, match='sizes differ'):
        ev.add(gs[:3], gi, gs, gi)
    with pytest.raises(ValueError, match='thing class'):
        PanopticEvaluator(3, thing_classes=[0])


# ---------------------------------------------------------------- real labels (KITTI object, SemanticKITTI)

def test_ap_on_real_kitti_labels(kitti_dir):
    """Real KITTI boxes (camera labels converted to the LiDAR frame) scored against themselves and shifted."""
    from ros_ncal.data.readers.kitti import kitti_frames, read_kitti_frame
    split = kitti_dir / 'training'
    frames = [read_kitti_frame(split, f) for f in kitti_frames(split)]
    boxes = [f.boxes for f in frames]
    labels = [f.box_labels for f in frames]
    assert sum(len(b) for b in boxes) > 0
    perfect, shifted = DetectionEvaluator(), DetectionEvaluator()
    for b, lab in zip(boxes, labels):
        scores = np.linspace(1.0, 0.5, len(b))
        perfect.add(b, scores, lab, b, lab)
        # along the heading by a fraction f of the length: BEV IoU (1 - f) / (1 + f): cars f = 0.1 (0.82 > 0.7,
        # whatever the length: KITTI 000008 has a 2.47 m car), pedestrians / cyclists f = 0.4 (0.43 < 0.5)
        shift = np.where(lab == 0, 0.1, 0.4) * b[:, 3]
        moved = b.copy()
        moved[:, 0] += shift * np.cos(b[:, 6])
        moved[:, 1] += shift * np.sin(b[:, 6])
        shifted.add(moved, scores, lab, b, lab)
    res = perfect.compute()
    for name, n in res['num_gt'].items():
        if n:
            assert res['AP_bev'][name] == pytest.approx(1.0) and res['AP_3d'][name] == pytest.approx(1.0)
    res = shifted.compute()
    if res['num_gt']['car']:
        assert res['AP_bev']['car'] == pytest.approx(1.0)
    if res['num_gt']['pedestrian']:
        assert res['AP_bev']['pedestrian'] == 0.0


def test_miou_and_pq_on_a_real_semantickitti_scan(shared_data):
    from ros_ncal.data.readers.semantickitti import read_semantickitti_scan
    seq = shared_data / 'semantickitti' / 'sequences' / '00'
    _, sem, inst = read_semantickitti_scan(seq / 'velodyne' / '000000.bin', seq / 'labels' / '000000.label')
    valid = sem != 0
    present = np.unique(sem[valid])
    ev = SegmentationEvaluator(20)
    ev.add(np.full_like(sem, 9), sem)      # everything predicted as road
    res = ev.compute()
    iou_road = (sem == 9).sum() / valid.sum()
    assert res['mIoU'] == pytest.approx(iou_road / len(present))
    pq = PanopticEvaluator(20, thing_classes=range(1, 9))
    pq.add(sem, inst, sem, inst)
    res = pq.compute()
    assert res['PQ'] == pytest.approx(1.0) and res['mIoU'] == pytest.approx(1.0)
    # All cars predicted as one instance: at most one car can still match.
    n_cars = len(np.unique(inst[(sem == 1) & (inst > 0)]))
    merged = np.where(sem == 1, 1, inst)
    pq = PanopticEvaluator(20, thing_classes=range(1, 9))
    pq.add(sem, merged, sem, inst)
    car = pq.compute()['per_class']['1']
    assert n_cars > 1 and car['TP'] <= 1 and car['FN'] >= n_cars - 1


# ------------------------------------------------------------------ points in boxes, FP counting, calibration

def test_points_in_boxes_hand_case():
    from ros_ncal.eval.box_geometry import points_in_boxes
    pts = np.array([[0.0, 0.0, 0.0], [1.9, 0.0, 0.0], [0.0, 0.9, 0.0], [2.1, 0.0, 0.0], [0.0, 0.0, 1.1],
                    [10.0, 10.0, 0.0]])
    box = np.array([[0.0, 0.0, 0.0, 4.0, 2.0, 2.0, 0.0]])
    assert points_in_boxes(pts, box)[0].tolist() == [True, True, True, False, False, False]
    # turned by 90 degrees: length along y now
    turned = box.copy()
    turned[0, 6] = math.pi / 2
    assert points_in_boxes(pts, turned)[0].tolist() == [True, False, True, False, False, False]
    assert points_in_boxes(pts, box, margin=0.2)[0].tolist() == [True, True, True, True, True, False]
    assert points_in_boxes(np.zeros((0, 3)), box).shape == (1, 0)


def _camera_ahead():
    """A pinhole looking along LiDAR +x (KITTI-like axes): 90 deg horizontal field of view."""
    K = np.array([[500.0, 0, 500.0], [0, 500.0, 200.0], [0, 0, 1]])
    T = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)   # x fwd -> z optical
    return K, T, (400, 1000)


def test_fov_false_positives_hand_case():
    from ros_ncal.eval.det_calibration import fov_false_positives, in_camera
    cam = _camera_ahead()
    gt = np.array([[10.0, 0.0, -1.0, 4.0, 1.8, 1.5, 0.0], [20.0, 5.0, -1.0, 0.8, 0.6, 1.7, 0.0]])
    gt_lab = np.array([0, 1])
    dets = np.array([[10.2, 0.1, -1.0, 4.0, 1.8, 1.5, 0.0],    # TP car
                     [10.0, 0.0, -1.0, 4.0, 1.8, 1.5, 0.05],   # duplicate of the same car: FP
                     [15.0, -6.0, -1.0, 4.0, 1.8, 1.5, 0.0],   # car where nothing is labelled: FP
                     [-12.0, 3.0, -1.0, 4.0, 1.8, 1.5, 0.0],   # behind the sensor: not counted
                     [20.1, 5.0, -1.0, 0.8, 0.6, 1.7, 0.0],    # pedestrian TP
                     [20.0, 5.0, -1.0, 4.0, 1.8, 1.5, 0.0],    # a car on the pedestrian: FP (class-aware)
                     [30.0, -2.0, -1.0, 5.0, 2.0, 2.5, 0.0]])  # on a labelled van: ignored
    scores = np.array([0.9, 0.8, 0.7, 0.9, 0.6, 0.5, 0.9])
    labels = np.array([0, 0, 0, 0, 1, 0, 0])
    van = np.array([[30.0, -2.0, -1.0, 5.2, 2.0, 2.5, 0.0]])
    assert in_camera(dets, cam).tolist() == [True, True, True, False, True, True, True]
    r = fov_false_positives(dets, scores, labels, gt, gt_lab, cam, ignore_boxes=van)
    assert r == {'fp': 3, 'tp': 2, 'in_fov': 6, 'fp_by_class': {0: 3}}
    r = fov_false_positives(dets, scores, labels, gt, gt_lab, cam)   # without the ignore box the van counts
    assert r['fp'] == 4
    r = fov_false_positives(dets, scores, labels, gt, gt_lab, cam, ignore_boxes=van, score_threshold=0.75)
    assert r == {'fp': 1, 'tp': 1, 'in_fov': 3, 'fp_by_class': {0: 1}}


def test_fov_false_positives_on_real_kitti_labels(kitti_dir):
    """label_2 scored against itself: no FP; every box moved 4 m sideways: each one in view is an FP."""
    from ros_ncal.data.readers.kitti import read_kitti_frame
    from ros_ncal.eval.det_calibration import fov_false_positives, in_camera
    from ros_ncal.train.downstream_data import kitti_ignore_boxes
    s = read_kitti_frame(kitti_dir / 'training', '000010')
    cam = (s.K, s.T_cam_lidar, s.image.shape[:2])
    ign = kitti_ignore_boxes(kitti_dir / 'training', '000010')
    scores = np.linspace(0.9, 0.5, len(s.boxes))
    r = fov_false_positives(s.boxes, scores, s.box_labels, s.boxes, s.box_labels, cam, ignore_boxes=ign)
    assert r['fp'] == 0 and r['tp'] == int(in_camera(s.boxes, cam).sum()) == 9
    moved = s.boxes.copy()
    moved[:, 1] += 4.0
    r = fov_false_positives(moved, scores, s.box_labels, s.boxes, s.box_labels, cam, ignore_boxes=ign)
    assert r['tp'] == 0 and r['fp'] == int(in_camera(moved, cam).sum()) > 0


def test_platt_fit_and_threshold_choice():
    from ros_ncal.eval.det_calibration import choose_threshold, fit_platt
    rng = np.random.default_rng(0)
    # raw scores overconfident: true probability = sigmoid(0.5 * logit(p) - 1)
    p = rng.uniform(0.05, 0.95, 4000)
    true = 1 / (1 + np.exp(-(0.5 * np.log(p / (1 - p)) - 1.0)))
    y = rng.random(4000) < true
    a, b = fit_platt(p, y, prior=0.0)
    assert abs(a - 0.5) < 0.1 and abs(b + 1.0) < 0.15
    assert fit_platt(p[:4], y[:4], prior=100.0) == pytest.approx((1.0, 0.0), abs=0.05)   # prior dominates
    # 2 frames, 3 labelled boxes: TP at 0.9, 0.8, 0.4; FP at 0.7, 0.6, 0.3, 0.2
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.6, 0.3, 0.2])
    outcome = np.array([1, 1, 1, 0, 0, 0, 0])
    r = choose_threshold(scores, outcome, ['a'] * 7, num_gt=3, num_frames=2, max_fp_per_frame=1.0,
                         candidates=[0.25, 0.35, 0.5, 0.65, 0.75])
    # 0.35: 3 TP 2 FP (1 per frame, F1 0.75); 0.25: 3 FP, too many; 0.75: F1 0.8 with 0 FP
    assert r['threshold'] == 0.75 and r['fp'] == 0 and r['recall'] == pytest.approx(2 / 3)
    r = choose_threshold(scores, outcome, ['a'] * 7, 3, 2, 1.0, candidates=[0.25, 0.35, 0.5])
    assert r['threshold'] == 0.35 and r['fp_per_frame'] == 1.0
    # only false positives: the lowest threshold that removes them all
    r = choose_threshold(np.array([0.7, 0.3]), np.array([0, 0]), ['a', 'b'], 2, 2, 1.0, candidates=[0.2, 0.5, 0.8])
    assert r['threshold'] == 0.8 and r['fp'] == 0
