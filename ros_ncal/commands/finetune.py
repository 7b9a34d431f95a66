"""`ncal finetune`: fine-tune or linear-probe a downstream task (seg, det, panoptic) on a (pretrained) backbone."""
from __future__ import annotations

import json
import sys

NAME = 'finetune'
HELP = 'downstream fine-tuning / linear probing: seg | det | panoptic (docs/downstream.md)'
TASKS = ('seg', 'det', 'panoptic')


def add_arguments(parser) -> None:
    parser.add_argument('task', choices=TASKS, help='downstream task (must match the config)')
    parser.add_argument('config', help='config/finetune/*.yaml (e.g. config/finetune/seg_1pct.yaml)')
    parser.add_argument('--pretrained', default=None, metavar='PATH',
                        help='backbone checkpoint (from `ncal pretrain`); weights only, missing/unexpected keys '
                             'reported. Omit to train from scratch')
    parser.add_argument('--label-fraction', type=float, default=None, metavar='F',
                        help='fraction of training scenes with labels, in (0, 1] (e.g. 0.01)')
    parser.add_argument('--linear-probe', action='store_true', help='freeze the backbone; train only the head')
    parser.add_argument('--seed', type=int, default=None, help='training seed (init, batch order, augmentation)')
    parser.add_argument('--label-seed', type=int, default=None, help='seed choosing the labelled scenes')
    parser.add_argument('--steps', type=int, default=None, help='optimisation steps (the budget)')
    parser.add_argument('--device', default=None, help='auto | cpu | cuda | cuda:N')
    parser.add_argument('--output-dir', default=None, help='where the checkpoint and JSON summary go')
    parser.add_argument('--run-name', default=None, help='file stem of the outputs')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='override any config key, e.g. --set data.max_points=5000 (repeatable)')
    parser.add_argument('--json', action='store_true', help='print the final summary as JSON')


def run(args) -> int:
    from ros_ncal.train.finetune import finetune, load_finetune_config, parse_set_options
    try:
        overrides = parse_set_options(args.set)
        for key, value in (('pretrained', args.pretrained), ('label_fraction', args.label_fraction),
                           ('seed', args.seed), ('label_seed', args.label_seed), ('device', args.device),
                           ('output_dir', args.output_dir), ('run_name', args.run_name)):
            if value is not None:
                overrides[key] = value
        if args.linear_probe:
            overrides['linear_probe'] = True
        if args.steps is not None:
            overrides.setdefault('optim', {})['steps'] = args.steps
        cfg = load_finetune_config(args.config, overrides)
        if cfg.task != args.task:
            print(f'ncal finetune: the config {args.config} is for task {cfg.task!r}, not {args.task!r}',
                  file=sys.stderr)
            return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f'ncal finetune: {exc}', file=sys.stderr)
        return 2
    from ros_ncal.cli_errors import ensure_writable
    ensure_writable(cfg.output_dir, 'output_dir')      # before any work (the checkpoint is written at the end)
    result = finetune(cfg, log=lambda m: print(m, flush=True))
    summary = {'run': result.run_name, 'checkpoint': result.checkpoint, 'summary': result.summary_path,
               'labelled_samples': result.num_labelled_samples, 'seconds': round(result.seconds, 1),
               'first_loss': result.losses[0], 'final_loss': result.losses[-1],
               'metrics': {k: v for k, v in result.metrics.items() if k not in ('per_class', 'IoU')}}
    print(json.dumps(summary, indent=2, default=str) if args.json else
          f"done: {summary['run']} -> {summary['checkpoint']} metrics {summary['metrics']}")
    return 0
