"""`ncal eval-calib`: evaluate extrinsic calibrators on randomly decalibrated samples."""
from __future__ import annotations

NAME = 'eval-calib'
HELP = ('evaluate extrinsic calibrators (none, classical, nclr, a+b chains) on perturbed initial guesses: '
        'RRE/RTE table, JSON, markdown, plot')


def add_arguments(parser) -> None:
    parser.add_argument('--data', default='kitti',
                        help="'kitti' (shared KITTI object frames), 'kitti-raw' (the shared KITTI raw drive, or "
                             "--kitti-raw-drive), 'synthetic', a rosbag2 folder (its .truth.json beside it is the "
                             "truth), or a dataset shard directory")
    parser.add_argument('--kitti-raw-drive', default=None, help='KITTI raw drive folder for --data kitti-raw')
    parser.add_argument('--frame-range', default=None, metavar='A:B',
                        help="kitti-raw / rosbag: frames A..B-1 only (e.g. 57:77, the drive's held-out tail)")
    parser.add_argument('--frame-step', type=int, default=1, help='kitti-raw: every N-th frame of the range')
    parser.add_argument('--kitti-splits', default='training,testing',
                        help="KITTI split folders to use, comma-separated (e.g. 'testing': frames held out of "
                             "the shipped calibrator's pretraining)")
    parser.add_argument('--kitti-dir', default=None, help='KITTI object folder with training/ and testing/ '
                                                          '(default: shared/data/kitti_object)')
    parser.add_argument('--frames', type=int, default=None,
                        help='number of samples (default: all KITTI frames, 8 synthetic, all shard samples)')
    parser.add_argument('--calibrators', default='none,classical',
                        help="comma-separated names from the registry; 'a+b' refines a's result with b "
                             "(default none,classical; 'none' is always included)")
    parser.add_argument('--checkpoint', default=None, help='checkpoint for learned calibrators (nclr)')
    parser.add_argument('--device', default=None, help='torch device for learned calibrators (default: theirs)')
    parser.add_argument('--config', default=None, help='YAML with evaluation/classical/nclr/fusion sections '
                                                       '(default config/calib_eval.yaml when present)')
    parser.add_argument('--preset', default=None, help='perturbation preset: small | calib | wide (default: config)')
    parser.add_argument('--trials', type=int, default=None, help='perturbations per sample (default: config)')
    parser.add_argument('--seed', type=int, default=None, help='perturbation seed (default: config)')
    parser.add_argument('--sweep', action='store_true', help='also run the sweep of exact perturbation sizes')
    parser.add_argument('--sequence', type=int, default=0, metavar='PASSES',
                        help='also run the online sequence protocol (as the calibrator node: one perturbation per '
                             'sequence, each frame starting from the fused estimate) with PASSES passes over the '
                             'samples')
    parser.add_argument('--joint', action='store_true',
                        help="with --sequence: also refine each sequence's fused estimate by joint multi-frame edge "
                             "alignment (rows '<name>+joint'; YAML section 'joint')")
    parser.add_argument('--sequences', type=int, default=None,
                        help='number of sequences (perturbations) for --sequence (default: --trials)')
    parser.add_argument('--out', default='runs/eval_calib', help='output folder (report.json, report.md, plot PNG)')
    parser.add_argument('--progress', action='store_true', help='print a line per trial')


def _default_config_path():
    from pathlib import Path
    p = Path(__file__).resolve().parents[2] / 'config' / 'calib_eval.yaml'
    return p if p.exists() else None


def run(args) -> int:
    import dataclasses
    from pathlib import Path

    from ros_ncal.calib import CalibratorUnavailableError, EvalConfig, evaluate_calibrators, make_calibrator
    from ros_ncal.calib import eval_data
    from ros_ncal.calib.plots import plot_error_vs_perturbation, plot_sequence_convergence

    config_path = args.config or _default_config_path()
    if args.config and not Path(args.config).exists():
        print(f'error: config file {args.config} not found')
        return 2
    cfg = EvalConfig.from_yaml(config_path) if config_path else EvalConfig()
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    if args.preset is not None and args.preset not in cfg.presets:
        print(f'error: unknown preset {args.preset!r}; have {sorted(cfg.presets)}')
        return 2
    if args.trials is not None and args.trials < 1:
        print('error: --trials must be >= 1')
        return 2
    if args.sequence < 0 or (args.sequences is not None and args.sequences < 1):
        print('error: --sequence must be >= 0 and --sequences >= 1')
        return 2
    from ros_ncal.calib import FusionConfig
    from ros_ncal.calib.joint import JointEdgeRefiner
    try:
        fusion = FusionConfig.from_yaml(config_path) if config_path else FusionConfig()
        joint = JointEdgeRefiner.from_yaml(config_path) if args.joint else None
    except ValueError as exc:
        print(f'error: {exc}')
        return 2

    names = [n.strip() for n in args.calibrators.split(',') if n.strip()]
    calibrators = {}
    for name in names:
        if name == 'none':
            continue
        try:
            calibrators[name] = make_calibrator(name, checkpoint=args.checkpoint, device=args.device,
                                                config_path=str(config_path) if config_path else None)
        except (CalibratorUnavailableError, ValueError) as exc:
            print(f'error: {exc}')
            return 2
        except Exception as exc:  # noqa: BLE001 - e.g. a corrupt checkpoint: one line, not a traceback
            print(f'error: cannot build calibrator {name!r}: {type(exc).__name__}: {exc}')
            return 2

    try:
        if args.data == 'kitti':
            kw = {'kitti_dir': args.kitti_dir} if args.kitti_dir else {}
            splits = tuple(x for x in args.kitti_splits.split(',') if x)
            samples, ids = eval_data.load_kitti_samples(splits=splits, max_frames=args.frames, **kw)
        elif args.data == 'kitti-raw':
            kw = {'drive_dir': args.kitti_raw_drive} if args.kitti_raw_drive else {}
            samples, ids = eval_data.load_kitti_raw_samples(frames=args.frame_range, step=args.frame_step, **kw)
        elif Path(args.data).is_dir() and (Path(args.data) / 'metadata.yaml').is_file():
            samples, ids = eval_data.load_rosbag_samples(args.data, args.frame_range)
        elif args.data == 'synthetic':
            samples, ids = eval_data.load_synthetic_samples(args.frames or 8)
        elif Path(args.data).is_dir():
            samples, ids = eval_data.load_shard_samples(args.data, args.frames)
        else:
            print(f"error: --data must be 'kitti', 'synthetic' or an existing shard directory, got {args.data!r}")
            return 2
    except (OSError, RuntimeError, ValueError) as exc:
        print(f'error: cannot load samples: {exc}')
        return 2

    print(f'{len(samples)} samples ({args.data}); calibrators: none, {", ".join(calibrators) or "-"}; '
          f'preset {args.preset or cfg.preset}', flush=True)
    report = evaluate_calibrators(samples, calibrators, cfg, preset=args.preset, trials=args.trials,
                                  sweep=args.sweep, sample_ids=ids, progress=args.progress,
                                  sequence_passes=args.sequence, sequences=args.sequences, fusion=fusion,
                                  joint=joint)
    report.info = {'data': args.data, 'calibrators': ['none', *calibrators], 'checkpoint': args.checkpoint,
                   'config': str(config_path) if config_path else None}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(out / 'report.json')
    (out / 'report.md').write_text(report.to_markdown())
    plot_error_vs_perturbation(report, out / 'error_vs_perturbation.png')
    plots = 'error_vs_perturbation.png'
    if report.sequence:
        plot_sequence_convergence(report, out / 'sequence_convergence.png')
        plots += ', sequence_convergence.png'
    print(report.format_table())
    if report.sweep:
        print()
        print(report.to_markdown().split('Sweep', 1)[1].split('\n', 2)[2].split('\nOnline sequences')[0])
    print(f'wrote {out}/report.json, report.md, {plots}')
    return 0
