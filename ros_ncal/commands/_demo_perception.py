"""Scenario ``perception`` of ``ncal demo``: segmenter + detector nodes on the KITTI bag, and the
measured metrics of the shipped checkpoints (docs/demo.md).

1. A KITTI bag (frames of ``PerceptionConfig.frames``) is replayed frame by frame through the
   ``segmenter`` and ``detector`` nodes (their default checkpoints: ros_ncal/assets/seg.pt, det.pt);
   for each cloud the command waits for ``/segmenter/labeled_points`` and ``/detector/detections3d``.
   For the last frame it saves ``bev.png`` (labelled points in the palette + detected boxes) and
   ``camera.png`` (labelled points projected into the image with the bag's calibration).
2. Library calls, no ROS: ``seg.pt`` on the SemanticKITTI scans (mIoU, per-class IoU, points within
   ``seg_max_range`` m horizontally) and ``det.pt`` on the KITTI frames with label_2 (AP_bev / AP_3d R40
   at the KITTI IoU thresholds 0.7 / 0.5 / 0.5, boxes within the +-32 m BEV grid and whose centre projects
   into the image). The numbers are whatever they measure; they are printed as such.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ros_ncal.assets import ASSETS_DIR

LOOSE_IOU_THRESHOLDS = (0.5, 0.25, 0.25)   # second, looser reading (as in docs/downstream.md)
OLD_FIGURE = Path(__file__).resolve().parents[2] / 'docs' / 'img' / 'demo_perception_bev_synthetic_only.png'


@dataclass
class PerceptionConfig:
    """The ``demo.perception`` section of config/demo.yaml."""
    frames: list = field(default_factory=lambda: ['000001', '000002', '000003'])
    hz: float = 10.0
    frame_timeout_s: float = 120.0
    seg_checkpoint: str = ''           # '' = ros_ncal/assets/seg.pt (what the segmenter node loads by default)
    det_checkpoint: str = ''           # '' = ros_ncal/assets/det.pt
    semantickitti_sequence: str = ''   # '' = <shared data>/semantickitti/sequences/00
    seg_max_range: float = 32.0        # m, horizontal (the range seg.pt was measured with in docs/downstream.md)
    det_grid_m: float = 32.0           # boxes with |x| or |y| beyond this are outside the detector's BEV grid
    metrics: bool = True
    draw_labels: bool = True           # label_2 boxes (green) in bev.png, when the frame has them
    compare_image: str = ''            # '' = docs/img/demo_perception_bev_synthetic_only.png of a source checkout:
                                       # the synthetic-only models' figure, put beside the new bev.png


def _checkpoint(path: str, name: str) -> Path:
    return Path(path) if path else ASSETS_DIR / name


def _histogram(labels, names) -> dict:
    import numpy as np
    ids, counts = np.unique(np.asarray(labels, np.int64), return_counts=True)
    order = np.argsort(-counts)
    return {str(names[i]) if 0 <= i < len(names) else str(i): int(c) for i, c in zip(ids[order], counts[order])}


def save_bev(points, labels, boxes, classes, path: Path, title: str, extent_m: float = 40.0,
             gt_boxes=None, camera=None) -> str:
    """points (N, 3+), labels (N,) -> BEV PNG: points coloured by the SemanticKITTI palette, boxes drawn
    (white); optional ground-truth boxes (green) and the camera's horizontal field of view (grey lines,
    camera = (K, T_cam_lidar, (H, W)))."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    from ros_ncal.data.labels import SEMANTICKITTI_PALETTE, class_colors
    keep = (np.abs(points[:, 0]) <= extent_m) & (np.abs(points[:, 1]) <= extent_m)
    colors = class_colors(np.asarray(labels, np.int64)[keep], SEMANTICKITTI_PALETTE) / 255.0
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    ax.set_facecolor('black')
    ax.scatter(points[keep, 0], points[keep, 1], s=1.0, c=colors, marker='.', linewidths=0)
    for box, name in zip(boxes, classes):
        x, y, _, length, width, _, yaw = (float(v) for v in box)
        c, s = np.cos(yaw), np.sin(yaw)
        corners = np.array([[length, width], [length, -width], [-length, -width], [-length, width],
                            [length, width]]) / 2.0
        xy = corners @ np.array([[c, s], [-s, c]]) + [x, y]
        ax.plot(xy[:, 0], xy[:, 1], color='white', linewidth=1.2)
        ax.plot([x, x + c * length / 2], [y, y + s * length / 2], color='white', linewidth=1.2)
        ax.text(x, y + width, name, color='yellow', fontsize=7)
    for box in ([] if gt_boxes is None else gt_boxes):
        x, y, _, length, width, _, yaw = (float(v) for v in box)
        c, s = np.cos(yaw), np.sin(yaw)
        corners = np.array([[length, width], [length, -width], [-length, -width], [-length, width],
                            [length, width]]) / 2.0
        xy = corners @ np.array([[c, s], [-s, c]]) + [x, y]
        ax.plot(xy[:, 0], xy[:, 1], color='lime', linewidth=1.0, linestyle='--')
    if camera is not None:
        K, T, (h, w) = camera
        T_lidar_cam = np.linalg.inv(np.asarray(T, np.float64))
        for u in (0.0, float(w)):
            ray = np.linalg.solve(np.asarray(K, np.float64), [u, h / 2.0, 1.0]) * extent_m * 1.5
            a, b = T_lidar_cam[:3, 3], T_lidar_cam[:3, :3] @ ray + T_lidar_cam[:3, 3]
            ax.plot([a[0], b[0]], [a[1], b[1]], color='grey', linewidth=0.8, linestyle=':')
    ax.set_xlim(-extent_m, extent_m)
    ax.set_ylim(-extent_m, extent_m)
    ax.set_aspect('equal')
    ax.set_xlabel('x forward (m)')
    ax.set_ylabel('y left (m)')
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def save_side_by_side(left: Path, right: Path, path: Path, titles=('before', 'after')) -> str:
    """Two PNGs side by side (heights matched) with a caption strip each -> PNG."""
    from PIL import Image, ImageDraw
    with Image.open(left) as a, Image.open(right) as b:
        a, b = a.convert('RGB'), b.convert('RGB')
        h = max(a.height, b.height)
        a = a.resize((round(a.width * h / a.height), h))
        b = b.resize((round(b.width * h / b.height), h))
        out = Image.new('RGB', (a.width + b.width, h + 28), 'white')
        out.paste(a, (0, 28))
        out.paste(b, (a.width, 28))
    draw = ImageDraw.Draw(out)
    draw.text((10, 8), titles[0], fill='black')
    draw.text((a.width + 10, 8), titles[1], fill='black')
    out.save(path)
    return str(path)


def save_camera(points, labels, image, K, T_cam_lidar, path: Path) -> str:
    """Labelled points projected into the camera image (palette colours, near points on top) -> PNG."""
    import numpy as np
    from PIL import Image

    from ros_ncal.data.labels import SEMANTICKITTI_PALETTE, class_colors
    from ros_ncal.geometry import project_lidar
    from ros_ncal.viz import draw_points
    uv, depth, mask = project_lidar(points[:, :3].astype(np.float64), T_cam_lidar, K, image.shape[:2])
    colors = class_colors(np.asarray(labels, np.int64)[mask], SEMANTICKITTI_PALETTE)
    Image.fromarray(draw_points(image.copy(), uv[mask], colors, depth[mask], radius=1)).save(path)
    return str(path)


def seg_metrics(checkpoint: Path, sequence_dir: Path, max_range: float) -> dict:
    """seg.pt on every labelled scan of a SemanticKITTI sequence -> mIoU, accuracy, per-class IoU (%)."""
    import numpy as np

    from ros_ncal.data.labels import SEMANTICKITTI_CLASSES
    from ros_ncal.data.readers.semantickitti import iter_semantickitti_scans
    from ros_ncal.eval.metrics_seg import SegmentationEvaluator
    from ros_ncal.models.inference import DownstreamPredictor
    if not sequence_dir.is_dir():
        raise FileNotFoundError(f'SemanticKITTI sequence not found: {sequence_dir}')
    pred = DownstreamPredictor.from_checkpoint(checkpoint, device='auto', max_range=max_range)
    ev = SegmentationEvaluator(len(SEMANTICKITTI_CLASSES), ignore_index=0, class_names=list(SEMANTICKITTI_CLASSES))
    ev_held = SegmentationEvaluator(len(SEMANTICKITTI_CLASSES), ignore_index=0, class_names=list(SEMANTICKITTI_CLASSES))
    real = ((pred.payload or {}).get('config') or {}).get('finetune', {}).get('real') or {}
    held_out = [str(f) for f in real.get('eval_frames', [])] if real.get('kind') == 'semantickitti' else []
    trained_on = [str(f) for f in real.get('train_frames', [])] if real.get('kind') == 'semantickitti' else []
    n_scans = n_points = 0
    for scan, points, labels, _ in iter_semantickitti_scans(sequence_dir):
        if labels is None:
            continue
        finite = np.isfinite(points).all(axis=1)
        points, labels = points[finite], labels[finite]
        near = np.hypot(points[:, 0], points[:, 1]) <= max_range
        out = pred.predict(points)
        ev.add(out.labels[near], labels[near])
        if scan in held_out:
            ev_held.add(out.labels[near], labels[near])
        n_scans += 1
        n_points += int(near.sum())
    if n_scans == 0:
        raise FileNotFoundError(f'{sequence_dir}: no scans with labels')
    res = ev.compute()
    per_class = {k: round(float(v) * 100, 2) for k, v in res['IoU'].items()
                 if v == v}   # NaN (class absent, not predicted) left out
    held = ev_held.compute() if held_out else None
    return {'held_out_scans': held_out, 'trained_on_scans': trained_on,
            'mIoU_held_out': None if held is None or held['mIoU'] != held['mIoU'] else round(float(held['mIoU']) * 100, 2),
            'checkpoint': str(checkpoint), 'sequence': str(sequence_dir), 'scans': n_scans, 'points': n_points,
            'max_range_m': max_range, 'mIoU': round(float(res['mIoU']) * 100, 2),
            'accuracy': round(float(res.get('accuracy', float('nan'))) * 100, 2), 'per_class_iou': per_class}


def det_metrics(checkpoint: Path, kitti_dir: Path, grid_m: float) -> dict:
    """det.pt on the KITTI frames with label_2 -> AP_bev / AP_3d (R40, %) per class in the camera view."""
    import numpy as np

    from ros_ncal.data.readers.kitti import kitti_frames, read_kitti_frame
    from ros_ncal.eval.det_calibration import FP_IOU, fov_false_positives
    from ros_ncal.eval.metrics_det import DEFAULT_IOU_THRESHOLDS, DetectionEvaluator
    from ros_ncal.geometry import project_lidar
    from ros_ncal.models.inference import DownstreamPredictor
    from ros_ncal.train.downstream_data import kitti_ignore_boxes
    pred = DownstreamPredictor.from_checkpoint(checkpoint, device='auto')
    real = ((pred.payload or {}).get('config') or {}).get('finetune', {}).get('real') or {}
    held_out = [str(f) for f in real.get('eval_frames', [])] if real.get('kind') == 'kitti' else []
    names = tuple(pred.class_names) if getattr(pred, 'class_names', None) else ('car', 'pedestrian', 'cyclist')
    ev, ev_loose = DetectionEvaluator(), DetectionEvaluator(iou_thresholds=LOOSE_IOU_THRESHOLDS)
    frames = [f for f in kitti_frames(kitti_dir) if (Path(kitti_dir) / 'label_2' / f'{f}.txt').exists()]
    n_det = 0
    fp_per_frame = {}
    for f in frames:
        s = read_kitti_frame(kitti_dir, f)
        out = pred.predict(s.points)
        camera = (s.K, s.T_cam_lidar, s.image.shape[:2])
        fp_per_frame[f] = fov_false_positives(out.boxes, out.scores, out.box_labels, s.boxes, s.box_labels, camera,
                                              ignore_boxes=kitti_ignore_boxes(kitti_dir, f))['fp']

        def region(boxes):
            boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
            if len(boxes) == 0:
                return np.zeros(0, bool)
            inside = (np.abs(boxes[:, 0]) <= grid_m) & (np.abs(boxes[:, 1]) <= grid_m)
            return inside & project_lidar(boxes[:, :3], s.T_cam_lidar, s.K, s.image.shape[:2])[2]
        gk, pk = region(s.boxes), region(out.boxes)
        for e in (ev, ev_loose):
            e.add(out.boxes[pk], out.scores[pk], out.box_labels[pk], s.boxes[gk], s.box_labels[gk])
        n_det += int(pk.sum())
    if not frames:
        raise FileNotFoundError(f'{kitti_dir}: no frames with label_2')
    res, loose = ev.compute(), ev_loose.compute()
    pct = (lambda d: {k: (None if v != v else round(float(v) * 100, 2)) for k, v in d.items()})
    return {'checkpoint': str(checkpoint), 'kitti_dir': str(kitti_dir), 'frames': frames,
            'region': f'box centre in the camera image and within +-{grid_m:g} m', 'class_names': list(names),
            'iou_thresholds': dict(zip(('car', 'pedestrian', 'cyclist'), DEFAULT_IOU_THRESHOLDS)),
            'AP_bev': pct(res['AP_bev']), 'AP_3d': pct(res['AP_3d']),
            'mAP_bev': None if res['mAP_bev'] != res['mAP_bev'] else round(res['mAP_bev'] * 100, 2),
            'mAP_3d': None if res['mAP_3d'] != res['mAP_3d'] else round(res['mAP_3d'] * 100, 2),
            'AP_bev_loose': pct(loose['AP_bev']), 'AP_3d_loose': pct(loose['AP_3d']),
            'loose_iou_thresholds': dict(zip(('car', 'pedestrian', 'cyclist'), LOOSE_IOU_THRESHOLDS)),
            'num_gt': res['num_gt'], 'detections': n_det,
            'false_positives_in_fov': fp_per_frame,
            'fp_rule': f'detection in the camera image matching no label_2 box of its class at BEV IoU '
                       f'{dict(zip(("car", "pedestrian", "cyclist"), FP_IOU))} (Van/Truck/Tram/Misc overlaps ignored), '
                       f'at the model\'s default score threshold',
            'held_out_frames': held_out, 'score_threshold': float(pred.model.head.cfg.score_threshold)}


def run_perception(pcfg: PerceptionConfig, kitti_dir: str | Path, shared_data: Path, out: Path, log) -> dict:
    """The whole scenario -> summary dict (also written to OUT/perception/summary.json)."""
    import numpy as np

    from ros_ncal.bag.kitti import write_kitti_bag
    from ros_ncal.data.labels import SEMANTICKITTI_CLASSES
    from ros_ncal.ros.harness.perception_io import run_perception_graph
    run_dir = out / 'perception'
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    bags = out / 'bags'
    bags.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(bags / 'perception_kitti', ignore_errors=True)   # rewritten each run (0.2 s)
    t = time.monotonic()
    bag_dir, counts = write_kitti_bag(kitti_dir, bags / 'perception_kitti.mcap', list(pcfg.frames) or None,
                                      hz=pcfg.hz)
    log(f'perception: wrote {bag_dir} ({counts}) in {time.monotonic() - t:.1f} s')
    seg_ckpt, det_ckpt = _checkpoint(pcfg.seg_checkpoint, 'seg.pt'), _checkpoint(pcfg.det_checkpoint, 'det.pt')
    params = {name: {'input.reliable': True, 'input.qos_depth': 10, 'checkpoint': str(ck.resolve())}
              for name, ck in (('segmenter', seg_ckpt), ('detector', det_ckpt))}
    res = run_perception_graph(bag_dir, params, pcfg.frame_timeout_s, log=lambda m: log(f'perception: {m}'))
    frames = res.frames
    seg_ms = [f.seg_ms for f in frames if f.seg_ms is not None]
    det_ms = [f.det_ms for f in frames if f.det_ms is not None]
    summary = {'name': 'perception', 'bag': str(bag_dir), 'kitti_frames': list(pcfg.frames), 'nodes': res.started,
               'checkpoints': {'segmenter': str(seg_ckpt), 'detector': str(det_ckpt)},
               'frames': {'published': len(frames), 'labeled_points': len(seg_ms), 'detections': len(det_ms)},
               'latency_ms': {'segmenter_p50': float(np.median(seg_ms)) if seg_ms else None,
                              'segmenter_max': float(np.max(seg_ms)) if seg_ms else None,
                              'detector_p50': float(np.median(det_ms)) if det_ms else None,
                              'detector_max': float(np.max(det_ms)) if det_ms else None},
               'wall_s': res.wall_s, 'images': {}, 'last_frame': None, 'metrics': {}}
    last = next((f for f in reversed(frames) if f.labels is not None), None)
    if last is not None:
        hist = _histogram(last.labels, SEMANTICKITTI_CLASSES)
        names, n_boxes = np.unique(np.asarray(last.classes, str), return_counts=True)
        boxes_by_class = {str(c): int(n) for c, n in zip(names, n_boxes)}
        frame_id = str(pcfg.frames[-1]) if pcfg.frames and last is frames[-1] else ''
        summary['last_frame'] = {'stamp_ns': last.stamp_ns, 'points': int(len(last.labels)),
                                 'points_labelled': int((last.labels > 0).sum()), 'label_histogram': hist,
                                 'boxes': int(len(last.boxes)), 'boxes_by_class': boxes_by_class}
        s = None
        try:
            from ros_ncal.data.readers.kitti import read_kitti_frame
            s = read_kitti_frame(kitti_dir, frame_id) if frame_id else None
        except (FileNotFoundError, ValueError) as exc:
            log(f'perception: frame {frame_id} not readable for the figure ({exc})')
        gt = s.boxes if (s is not None and pcfg.draw_labels and s.boxes is not None) else None
        cam = (s.K, s.T_cam_lidar, s.image.shape[:2]) if s is not None else None
        summary['images']['bev'] = save_bev(
            last.points, last.labels, last.boxes, last.classes, run_dir / 'bev.png',
            f'segmenter labels + detector boxes (white), KITTI {frame_id}'
            + (' label_2 (green dashed), camera view (dotted)' if gt is not None else ''), gt_boxes=gt, camera=cam)
        old_fig = Path(pcfg.compare_image) if pcfg.compare_image else OLD_FIGURE
        if old_fig.is_file():
            summary['images']['bev_comparison'] = save_side_by_side(
                old_fig, run_dir / 'bev.png', run_dir / 'bev_comparison.png',
                ('before: models fine-tuned on synthetic scenes only', 'now: the shipped seg.pt / det.pt'))
        try:
            if s is not None:
                summary['images']['camera'] = save_camera(last.points, last.labels, s.image, s.K, s.T_cam_lidar,
                                                          run_dir / 'camera.png')
        except (FileNotFoundError, ValueError) as exc:
            log(f'perception: no camera image ({exc})')
    if pcfg.metrics:
        seq = Path(pcfg.semantickitti_sequence) if pcfg.semantickitti_sequence else \
            shared_data / 'semantickitti' / 'sequences' / '00'
        for key, fn in (('seg', lambda: seg_metrics(seg_ckpt, seq, pcfg.seg_max_range)),
                        ('det', lambda: det_metrics(det_ckpt, Path(kitti_dir), pcfg.det_grid_m))):
            t = time.monotonic()
            try:
                summary['metrics'][key] = fn()
                summary['metrics'][key]['wall_s'] = round(time.monotonic() - t, 2)
            except FileNotFoundError as exc:
                summary['metrics'][key] = {'error': str(exc)}
                log(f'perception: {key} metrics SKIPPED: {exc}')
    (run_dir / 'summary.json').write_text(json.dumps(summary, indent=2))
    return summary


def print_perception(p: dict) -> None:
    """Human-readable block of the perception summary."""
    print(f'\n--- perception: nodes {p["nodes"]} on {p["bag"]} ({p["frames"]})')
    lat = p['latency_ms']
    fmt = (lambda v: 'n/a' if v is None else f'{v:.0f}')
    print(f'latency publish -> output (ms): segmenter p50 {fmt(lat["segmenter_p50"])} max {fmt(lat["segmenter_max"])}, '
          f'detector p50 {fmt(lat["detector_p50"])} max {fmt(lat["detector_max"])}')
    lf = p.get('last_frame')
    if lf:
        top = ', '.join(f'{k} {v}' for k, v in list(lf['label_histogram'].items())[:6])
        print(f'last frame: {lf["points_labelled"]}/{lf["points"]} points labelled; top classes: {top}')
        print(f'last frame: {lf["boxes"]} boxes {lf["boxes_by_class"]}')
    for k, v in p['images'].items():
        print(f'  {k}: {v}')
    seg, det = p['metrics'].get('seg'), p['metrics'].get('det')
    if seg and 'error' not in seg:
        top = sorted(seg['per_class_iou'].items(), key=lambda kv: -kv[1])[:5]
        print(f'seg.pt on {seg["scans"]} SemanticKITTI scan(s) (points within {seg["max_range_m"]:g} m): '
              f'mIoU {seg["mIoU"]:.1f} %, accuracy {seg["accuracy"]:.1f} %; best IoU: '
              + ', '.join(f'{k} {v:.1f}' for k, v in top))
        if seg.get('held_out_scans'):
            print(f'  held-out scan(s) {seg["held_out_scans"]}: mIoU {seg["mIoU_held_out"]} % '
                  f'(trained on {seg["trained_on_scans"]})')
    elif seg:
        print(f'seg metrics: {seg["error"]}')
    if det and 'error' not in det:
        pr = (lambda d: ', '.join(f'{k} {"n/a" if v is None else f"{v:.1f}"}' for k, v in d.items()))
        print(f'det.pt on {len(det["frames"])} KITTI frame(s) ({det["region"]}; IoU {det["iou_thresholds"]}; '
              f'gt boxes {det["num_gt"]}): AP_bev % {pr(det["AP_bev"])}; AP_3d % {pr(det["AP_3d"])}; '
              f'at IoU {det["loose_iou_thresholds"]}: AP_bev % {pr(det["AP_bev_loose"])}, '
              f'AP_3d % {pr(det["AP_3d_loose"])}')
        print(f'  false positives in the camera view per frame at score >= {det["score_threshold"]:.2f}: '
              + ', '.join(f'{k} {v}{"*" if k in det["held_out_frames"] else ""}'
                          for k, v in det['false_positives_in_fov'].items())
              + (' (* held out from fine-tuning)' if det['held_out_frames'] else ''))
    elif det:
        print(f'det metrics: {det["error"]}')
