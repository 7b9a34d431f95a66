"""`ncal calibrate`: one camera-LiDAR extrinsic from a recording (rosbag2, dataset shards, KITTI, synthetic).

Runs a calibrator (default the ``nclr/classical`` handover with the shipped checkpoint) on the frames in
order, each starting from the fused estimate, and fuses every accepted estimate (robust SE(3) averaging
with standard errors), as the calibrator node does online; no ROS needed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ros_ncal.assets import NCLR_CALIB

NAME = 'calibrate'
HELP = ('estimate the camera-LiDAR extrinsic of a recording (bag, shards, KITTI, synthetic) with fusion over '
        'frames; writes calibration.yaml, report.json and before/after overlays')

FORMATS = ('auto', 'bag', 'shards', 'kitti', 'synthetic')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('input', help="rosbag2 (directory or .mcap/.db3), dataset shard directory, KITTI object "
                                      "split folder, or 'kitti' (the shared KITTI frames) / 'synthetic'")
    parser.add_argument('--format', choices=FORMATS, default='auto', help='input kind (default: detected)')
    parser.add_argument('--backend', default='nclr/classical',
                        help="calibrator spec (ros_ncal.calib.make_calibrator), default 'nclr/classical'")
    parser.add_argument('--checkpoint', default=None, help='NCLR checkpoint (default: ros_ncal/assets/nclr_calib.pt)')
    parser.add_argument('--config', default=None,
                        help='YAML with classical/nclr/fusion sections (default config/calib_eval.yaml)')
    parser.add_argument('--device', default=None, help='torch device for learned backends')
    parser.add_argument('--frames', type=int, default=None, help='use at most N frames (synthetic: default 8)')
    parser.add_argument('--passes', type=int, default=1, help='passes over the frames (default 1)')
    parser.add_argument('--no-joint', action='store_true',
                        help='skip the joint multi-frame edge alignment after the fusion (YAML section joint)')
    parser.add_argument('--init-from', choices=('fused', 'nominal'), default='fused',
                        help='initial guess of each frame: the fused estimate so far (default) or the nominal')
    parser.add_argument('--perturb', default=None, metavar='DEG,M',
                        help='replace the nominal by the recorded extrinsic off by exactly DEG degrees and M metres '
                             '(random axis and direction, --seed): try the calibrator on correctly calibrated data')
    parser.add_argument('--seed', type=int, default=0, help='seed of --perturb')
    parser.add_argument('--truth', default=None,
                        help='YAML/JSON with the true extrinsic (key T_cam_lidar_true or T_cam_lidar: 4x4 or 16 '
                             'numbers) to report errors against (default for a bag: <bag>.truth.json beside it, as '
                             'ncal bag write-kitti-raw and the demo write it)')
    parser.add_argument('--kitti-splits', default='testing', help="with 'kitti': split folders (default testing)")
    parser.add_argument('--points-topic', default=None, help='bag: PointCloud2 topic (default: the only one)')
    parser.add_argument('--image-topic', default=None, help='bag: Image/CompressedImage topic')
    parser.add_argument('--camera-info-topic', default=None, help='bag: CameraInfo topic')
    parser.add_argument('--override', default=None, help='bag: YAML with K and/or T_cam_lidar replacing CameraInfo/TF')
    parser.add_argument('--out', default='runs/calibrate', help='output folder')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def detect_format(path: str) -> str:
    """'bag' | 'shards' | 'kitti' | 'synthetic' for an input argument; ValueError when unknown."""
    if path in ('kitti', 'synthetic'):
        return path
    p = Path(path)
    if p.is_file() and p.suffix in ('.mcap', '.db3'):
        return 'bag'
    if p.is_dir():
        if (p / 'metadata.yaml').is_file() or any(p.glob('*.mcap')) or any(p.glob('*.db3')):
            return 'bag'
        if (p / 'manifest.json').is_file() or any(p.glob('*.tar')):
            return 'shards'
        if (p / 'velodyne').is_dir() and (p / 'image_2').is_dir():
            return 'kitti'
    raise ValueError(f'{path}: not a rosbag2, dataset shard directory or KITTI split folder (use --format)')


def load_frames(args, fmt: str):
    """(samples, frame ids, skipped count) for the input."""
    from ros_ncal.calib import eval_data
    if fmt == 'synthetic':
        samples, ids = eval_data.load_synthetic_samples(args.frames or 8)
        return samples, ids, 0
    if fmt == 'kitti':
        if args.input == 'kitti':
            splits = tuple(x for x in args.kitti_splits.split(',') if x)
            samples, ids = eval_data.load_kitti_samples(splits=splits, max_frames=args.frames)
        else:
            from ros_ncal.data.readers.kitti import kitti_frames, read_kitti_frame
            names = kitti_frames(args.input)[: args.frames]
            samples, ids = [read_kitti_frame(args.input, n) for n in names], names
        return samples, ids, 0
    if fmt == 'shards':
        samples, ids = eval_data.load_shard_samples(args.input, args.frames)
        return samples, ids, 0
    from ros_ncal.data.readers.rosbag import RosbagReaderConfig, iter_rosbag_samples
    from ros_ncal.data.sample import Sample
    cfg = RosbagReaderConfig(points_topic=args.points_topic, image_topic=args.image_topic,
                             camera_info_topic=args.camera_info_topic, override=args.override)
    samples, skipped = [], 0
    for item in iter_rosbag_samples(args.input, cfg):
        if isinstance(item, Sample):
            samples.append(item)
            if args.frames and len(samples) >= args.frames:
                break
        else:
            skipped += 1
    if not samples:
        raise ValueError(f'{args.input}: no camera-LiDAR pairs in the bag ({skipped} messages skipped)')
    return samples, [f'{s.stamp_ns}' for s in samples], skipped


def run(args) -> int:
    import numpy as np
    import yaml

    from ros_ncal.calib import CalibratorUnavailableError, FusionConfig, make_calibrator
    from ros_ncal.calib.joint import JointEdgeRefiner
    from ros_ncal.calib.evaluate import TRUE_EXTRINSIC_KEY, true_extrinsic
    from ros_ncal.calib.offline import calibrate_sequence
    from ros_ncal.geometry import pose_error, random_perturbation
    from ros_ncal.runner.suite import config_dir

    if args.passes < 1 or (args.frames is not None and args.frames < 1):
        print('error: --passes and --frames must be >= 1')
        return 2
    perturb = None
    if args.perturb:
        try:
            perturb = tuple(float(x) for x in args.perturb.split(','))
            if len(perturb) != 2:
                raise ValueError
        except ValueError:
            print(f'error: --perturb expects DEG,M (e.g. 5,0.3), got {args.perturb!r}')
            return 2
    config = args.config or str(config_dir() / 'calib_eval.yaml')
    if not Path(config).is_file():
        print(f'error: config file {config} not found')
        return 2
    checkpoint = args.checkpoint or str(NCLR_CALIB)
    try:
        fusion = FusionConfig.from_yaml(config)
        joint = None if args.no_joint else JointEdgeRefiner.from_yaml(config)
        calibrator = make_calibrator(args.backend, checkpoint=checkpoint, config_path=config, device=args.device)
    except (CalibratorUnavailableError, ValueError) as exc:
        print(f'error: {exc}')
        return 2
    try:
        fmt = detect_format(args.input) if args.format == 'auto' else args.format
        samples, ids, skipped = load_frames(args, fmt)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f'error: cannot read {args.input}: {exc}')
        return 2

    # ground truth of the first frame (errors are reported for the first frame's nominal, as the result is)
    T_truth = None
    truth_file = args.truth
    if truth_file is None and perturb is None and fmt == 'bag':     # a <bag>.truth.json beside the bag
        truth_file = truth_beside_bag(args.input)
        if truth_file is not None:
            print(f'ground truth: {truth_file} (beside the bag)')
    if truth_file:
        try:
            T_truth = read_truth_file(truth_file)
        except (OSError, ValueError) as exc:
            print(f'error: --truth {truth_file}: {exc}')
            return 2
    if perturb is not None:         # the recorded extrinsic becomes the truth, the nominal is moved off it
        D = random_perturbation(np.random.default_rng(args.seed), perturb[0], perturb[1], perturb[0], perturb[1])
        T_truth = true_extrinsic(samples[0])
        samples = [s.replace(T_cam_lidar=true_extrinsic(s) @ D) for s in samples]
    elif T_truth is None and TRUE_EXTRINSIC_KEY in samples[0].meta:     # synthetic data with a wrong nominal
        T_truth = true_extrinsic(samples[0])
    samples = [s.replace(meta={k: v for k, v in s.meta.items() if k != TRUE_EXTRINSIC_KEY}) for s in samples]

    print(f'{len(samples)} frames ({fmt}{f", {skipped} bag messages skipped" if skipped else ""}); backend '
          f'{args.backend}; {args.passes} pass(es); config {config}', flush=True)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=len(samples) * args.passes, desc='calibrate', unit='frame', dynamic_ncols=True,
                   file=sys.stdout)

    accepted = [0]

    def on_frame(rec) -> None:
        accepted[0] += int(rec.accepted)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(accepted=accepted[0], refresh=False)
    res = calibrate_sequence(samples, calibrator, passes=args.passes, fusion=fusion, init_from=args.init_from,
                             frame_ids=ids, on_frame=on_frame, joint=joint)
    if bar is not None:
        bar.close()

    summary = res.summary()
    summary.update({'input': str(args.input), 'format': fmt, 'backend': args.backend, 'checkpoint': checkpoint,
                    'config': config, 'perturb': args.perturb, 'seed': args.seed})
    if T_truth is not None:
        def error(T) -> dict:
            rot, trans = pose_error(T, T_truth)
            return {'rot_deg': rot, 'trans_cm': 100.0 * trans}
        summary['truth'] = {'T_cam_lidar': T_truth.tolist(), 'nominal_error': error(res.T_nominal),
                            'calibrated_error': error(res.T_cam_lidar)}
    summary['drop_reasons'] = drop_reasons(res.frames)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if res.accepted == 0:
        return _no_frame_accepted(res, summary, out)
    (out / 'calibration.yaml').write_text(yaml.safe_dump(_calibration_yaml(summary), sort_keys=False,
                                                         default_flow_style=None, width=120))
    (out / 'report.json').write_text(json.dumps({**summary, 'frames': [f.to_dict() for f in res.frames]}, indent=1))
    _write_overlays(samples[-1], res, out)
    _print_summary(summary)
    print(f'wrote {out}/calibration.yaml, report.json, overlay.png')
    return 0


def truth_beside_bag(path: str) -> str | None:
    """``<parent>/<bag name>.truth.json`` of a bag directory or storage file, when it exists (the layout of
    ``ncal bag write-kitti-raw``, the demo's bags and the shared rig bags)."""
    p = Path(path)
    bag_dir = p if p.is_dir() else p.parent
    cand = bag_dir.parent / f'{bag_dir.name}.truth.json'
    return str(cand) if cand.is_file() else None


EXIT_NO_RESULT = 3     # the run completed but no frame was accepted: no calibration written


def drop_reasons(frames) -> dict[str, int]:
    """{reason: frames} for the frames that did not enter the fusion; numbers in the calibrators' messages
    are replaced by '#' so that equal reasons count together."""
    import re
    counts: dict[str, int] = {}
    for f in frames:
        if f.accepted:
            continue
        if f.success:
            key = 'rejected by the fusion (outlier or inconsistent with the other frames)'
        else:
            key = re.sub(r'\([^)]*\)', '', f.message or 'failed without a message')
            key = re.sub(r'[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?', '#', key)
            key = re.sub(r'\s+([;:,])', r'\1', ' '.join(key.split())).strip(' ;:,')[:120] or 'failed without a message'
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _no_frame_accepted(res, summary: dict, out: Path) -> int:
    """No calibration: say why by reason, keep report.json for diagnosis, never leave a calibration.yaml."""
    (out / 'report.json').write_text(json.dumps({**summary, 'frames': [f.to_dict() for f in res.frames]}, indent=1))
    stale = out / 'calibration.yaml'
    removed = stale.exists()
    if removed:
        stale.unlink()      # an older result beside this run's report would look like this run's
    why = '; '.join(f'{n} x {reason}' for reason, n in summary['drop_reasons'].items())
    print(f'ncal calibrate: error: no frame was accepted ({len(res.frames)} frame(s): {why}); calibration.yaml '
          f'not written{" (the older one in " + str(out) + " was removed)" if removed else ""}; per-frame '
          f'messages in {out}/report.json', file=sys.stderr)
    return EXIT_NO_RESULT


def read_truth_file(path: str):
    """(4, 4) T_cam_lidar from a YAML/JSON file (key T_cam_lidar_true or T_cam_lidar; 4x4 or 16 numbers)."""
    import numpy as np
    import yaml

    from ros_ncal.geometry import validate_rigid
    data = yaml.safe_load(Path(path).read_text())        # JSON is YAML
    if not isinstance(data, dict):
        raise ValueError('expected a mapping')
    for key in ('T_cam_lidar_true', 'T_cam_lidar'):
        if key in data:
            T = np.asarray(data[key], dtype=np.float64).reshape(4, 4)
            return validate_rigid(T, 1e-4, name=key)
    raise ValueError('no T_cam_lidar_true or T_cam_lidar key')


def _calibration_yaml(s: dict) -> dict:
    """The part a user pastes into a launch file / the nodes' ``extrinsic.*`` parameters."""
    def r(x, n=9):
        return [round(float(v), n) for v in x]
    return {'T_cam_lidar': r(sum(s['T_cam_lidar'], [])),   # 16 numbers, row-major (the nodes' extrinsic.T_cam_lidar)
            'xyz': r(s['xyz']), 'quat_xyzw': r(s['quat_xyzw']),
            'rot_std_deg': s['rot_std_deg'], 'trans_std_cm': s['trans_std_cm'],
            'frames_accepted': s['frames_accepted'], 'frames': s['frames'],
            'change_from_nominal': {k: round(v, 4) for k, v in s['change_from_nominal'].items()},
            'backend': s['backend'], 'input': s['input']}


def _write_overlays(sample, res, out: Path) -> None:
    """overlay.png: the last frame projected with the nominal (left) and the calibrated extrinsic (right)."""
    import numpy as np
    from PIL import Image

    from ros_ncal.viz.projection_overlay import draw_projection_overlay
    before, _ = draw_projection_overlay(sample.image, sample.points, sample.T_cam_lidar, sample.K)
    after, _ = draw_projection_overlay(sample.image, sample.points, sample.T_cam_lidar @ res.correction, sample.K)
    gap = np.full((before.shape[0], 8, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([before, gap, after], axis=1)).save(out / 'overlay.png')


def _print_summary(s: dict) -> None:
    ch = s['change_from_nominal']
    std = (f"{s['rot_std_deg']:.3f} deg / {s['trans_std_cm']:.2f} cm" if s['rot_std_deg'] is not None
           else 'n/a (fewer than 2 fused frames)')
    print('\n=== ncal calibrate ===')
    print(f"frames accepted {s['frames_accepted']} / {s['frames']} (fused inliers {s['fused_inliers']})")
    print(f"change from the nominal: {ch['rot_deg']:.3f} deg / {ch['trans_cm']:.2f} cm; fusion standard error {std}")
    j = s.get('joint')
    if j is not None:
        print(('joint refinement: ' if j['success'] else 'joint refinement NOT applied: ') + j['message'])
    print('T_cam_lidar =')
    for row in s['T_cam_lidar']:
        print('  [' + ', '.join(f'{v: .6f}' for v in row) + ']')
    print(f"xyz {[round(v, 4) for v in s['xyz']]}  quat_xyzw {[round(v, 6) for v in s['quat_xyzw']]}")
    if 'truth' in s:
        a, b = s['truth']['nominal_error'], s['truth']['calibrated_error']
        print(f"vs ground truth: nominal {a['rot_deg']:.3f} deg / {a['trans_cm']:.2f} cm -> calibrated "
              f"{b['rot_deg']:.3f} deg / {b['trans_cm']:.2f} cm")
    if s['nominals_differ']:
        print('note: the frames carry different nominal extrinsics; the result is the fused correction applied '
              "to the first frame's nominal")
