"""`ncal eval`: evaluate a fine-tuned downstream model (seg: mIoU, det: AP_R40 BEV/3D, panoptic: PQ)."""
from __future__ import annotations

import json
import sys

NAME = 'eval'
HELP = 'evaluate a fine-tuned seg | det | panoptic checkpoint on held-out samples (docs/downstream.md)'
TASKS = ('seg', 'det', 'panoptic')


def add_arguments(parser) -> None:
    parser.add_argument('task', choices=TASKS, help='task of the checkpoint')
    parser.add_argument('checkpoint', help='checkpoint written by `ncal finetune`')
    parser.add_argument('--config', default=None,
                        help='fine-tuning YAML whose data section to use (default: the one stored in the checkpoint)')
    parser.add_argument('--eval-indices', type=int, nargs=2, default=None, metavar=('START', 'STOP'),
                        help='held-out sample indices [START, STOP)')
    parser.add_argument('--shards', default=None, help='evaluate on a shard dataset directory instead')
    parser.add_argument('--eval-region', choices=('grid', 'camera_fov'), default=None,
                        help='det only: count boxes in the whole BEV grid or only those whose centre is in the '
                             'image (KITTI labels); default: the checkpoint config')
    parser.add_argument('--real-frames', nargs='+', default=None, metavar='ID',
                        help='real frames to evaluate on (KITTI training / SemanticKITTI ids); default: real.eval_frames '
                             'of the config when it has a real section (config/finetune/det_kitti.yaml, seg_semantickitti.yaml)')
    parser.add_argument('--calibrate', default=None, metavar='OUT.pt',
                        help='det only: take the decoding settings of --config (min_points_in_box, nms, '
                             'eval_score_threshold), fit the score calibration and the default threshold on its '
                             'real.calib_frames, evaluate, and write the recalibrated checkpoint here')
    parser.add_argument('--device', default='auto', help='auto | cpu | cuda | cuda:N')
    parser.add_argument('--out', default=None, help='write the metrics as JSON here')
    parser.add_argument('--per-class', action='store_true', help='print per-class values too')


def run(args) -> int:
    import torch
    from ros_ncal.models.checkpoint import CheckpointError
    from ros_ncal.train.downstream_data import load_real_samples, load_task_samples
    from ros_ncal.config_io import to_jsonable
    from ros_ncal.train.finetune import (config_from_dict, load_finetune_config, load_finetuned,
                                        resolve_device)
    try:
        device = resolve_device(args.device)
        model, task, payload = load_finetuned(args.checkpoint, map_location='cpu')
        if task.name != args.task:
            print(f'ncal eval: {args.checkpoint} holds a {task.name!r} model, not {args.task!r}', file=sys.stderr)
            return 2
        if args.eval_region:
            if task.name != 'det':
                print('ncal eval: --eval-region applies to det only', file=sys.stderr)
                return 2
            task.eval_region = args.eval_region
        cfg = (load_finetune_config(args.config) if args.config
               else config_from_dict(payload['config']['finetune'], f'{args.checkpoint} (stored config)'))
        data = cfg.data
        if args.shards:
            data.source, data.shards, data.eval_shards = 'shards', args.shards, None
        if args.eval_indices:
            data.eval_indices = tuple(args.eval_indices)
        if args.real_frames:
            if not cfg.real.kind:
                raise ValueError('--real-frames needs a config with a real section (--config config/finetune/det_kitti.yaml)')
            cfg.real.eval_frames = list(args.real_frames)
        real = bool(cfg.real.kind and cfg.real.eval_frames and not args.shards and not args.eval_indices)
        samples = load_real_samples(cfg.real, data, 'eval') if real else load_task_samples(data, 'eval')
    except (FileNotFoundError, ValueError, CheckpointError) as exc:
        print(f'ncal eval: {exc}', file=sys.stderr)
        return 2
    model.to(device)
    calibration = None
    if args.calibrate:
        if task.name != 'det' or not (cfg.real.kind == 'kitti' and cfg.real.calib_frames and args.config):
            print('ncal eval: --calibrate needs a det checkpoint and --config with real.kind kitti and '
                  'real.calib_frames (config/finetune/det_kitti.yaml)', file=sys.stderr)
            return 2
        from ros_ncal.train.finetune import calibrate_detector
        for key in ('min_points_in_box', 'nms_iou', 'top_k', 'max_detections'):
            if key in cfg.head:
                setattr(model.head.cfg, key, cfg.head[key])
        if 'eval_score_threshold' in cfg.head:
            task.eval_score_threshold = cfg.head['eval_score_threshold']
        calibration = calibrate_detector(model, task, load_real_samples(cfg.real, data, 'calib'), device, cfg,
                                         log=lambda m: print(m, flush=True))
    with torch.no_grad():
        metrics = task.evaluate(model, samples, device, cfg.eval_batch_size)
    if calibration is not None:
        import copy
        from ros_ncal.models.checkpoint import save_checkpoint
        mcfg = copy.deepcopy(payload['config'])
        for key in ('min_points_in_box', 'nms_iou', 'top_k', 'max_detections', 'score_threshold', 'score_calibration'):
            mcfg['head'][key] = getattr(model.head.cfg, key)
        if task.eval_score_threshold is not None:
            mcfg['head']['eval_score_threshold'] = task.eval_score_threshold
        mcfg['head']['eval_region'] = task.eval_region
        mcfg.setdefault('finetune', {})['real'] = to_jsonable(__import__('dataclasses').asdict(cfg.real))
        extra = dict(payload.get('extra') or {}, metrics=to_jsonable(metrics), calibration=to_jsonable(calibration),
                     recalibrated_from=str(args.checkpoint))
        print(f'recalibrated checkpoint: {save_checkpoint(args.calibrate, model.state_dict(), mcfg, extra=extra)}')
    metrics = to_jsonable(metrics)  # NaN (undefined, e.g. a class without ground truth) -> null
    shown = metrics if args.per_class else {k: v for k, v in metrics.items() if k not in ('per_class', 'IoU')}
    print(json.dumps(shown, indent=2, default=str))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'checkpoint': args.checkpoint, 'task': task.name, 'num_samples': len(samples),
                       'metrics': metrics}, f, indent=2, default=str)
    return 0
