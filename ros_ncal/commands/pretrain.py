"""`ncal pretrain CONFIG`: NCLR self-supervised pretraining (1 CPU, 1 GPU, or torchrun DDP)."""
NAME = 'pretrain'
HELP = 'NCLR pretraining on the 2D-3D calibration pretext task (use torchrun for multi-GPU)'


def add_arguments(p):
    p.add_argument('config', help='YAML config (see config/nclr/)')
    p.add_argument('--steps', type=int, help='override train.steps')
    p.add_argument('--out', help='override train.out_dir')
    p.add_argument('--device', default='auto', help='auto | cpu | cuda')
    p.add_argument('--threads', type=int, help='override train.num_threads (torch intra-op CPU threads; 0 = default)')
    p.add_argument('--no-resume', action='store_true', help='start fresh even if OUT/last.pt exists')
    p.add_argument('--set', action='append', default=[], metavar='SECTION.KEY=YAML',
                   help='override any config value, e.g. --set train.batch_size=4')


def parse_overrides(args) -> dict:
    from ros_ncal.config_io import deep_merge, parse_set_options
    over: dict = {}
    if args.steps is not None:
        over.setdefault('train', {})['steps'] = args.steps
    if args.out:
        over.setdefault('train', {})['out_dir'] = args.out
    if getattr(args, 'threads', None) is not None:
        over.setdefault('train', {})['num_threads'] = args.threads
    return deep_merge(over, parse_set_options(args.set))


def run(args) -> int:
    import json

    from ros_ncal.nclr.config import NCLRConfig
    from ros_ncal.train.pretrain import pretrain
    from ros_ncal.cli_errors import UserError, ensure_writable
    from ros_ncal.train.pretrain import check_train_config
    try:
        cfg = NCLRConfig.from_yaml(args.config, parse_overrides(args))
        check_train_config(cfg.train)
    except ValueError as exc:           # unknown key, wrong type, batch_size 0: name the file
        raise UserError(exc if args.config in str(exc) else f'{args.config}: {exc}') from exc
    ensure_writable(cfg.train.out_dir, 'train.out_dir')     # before any work
    res = pretrain(cfg, device=args.device, resume=not args.no_resume)
    if 'nclr' in res:
        print(json.dumps(res, indent=2))
    return 0
