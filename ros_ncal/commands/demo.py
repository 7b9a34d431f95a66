"""`ncal demo`: replay shipped bags through the calibration suite and show what a user looks at.

Scenarios (config/demo.yaml, docs/demo.md):

* ``kitti``: real KITTI frames (the largest group sharing one calibration) written into an mcap bag,
  replayed twice: with the recorded (correct) extrinsic on ``/tf_static``, and with a nominal
  perturbed by 2 deg / 10 cm, so the calibrator has something to correct.
* ``synthetic``: a synthetic drive (consecutive 10 Hz frames) whose ``/tf_static`` is wrong by
  5 deg / 30 cm; the truth lies beside the bag in ``*.truth.json`` (cached under ``--out``).
* ``perception``: the segmenter and detector nodes on a KITTI bag (labelled points + boxes saved as
  PNGs) and the measured metrics of the shipped seg.pt / det.pt (:mod:`._demo_perception`).
* ``publisher``: the stage-1 demo (the recorded extrinsic republished by extrinsic_publisher).

Each run starts the ``demo_full`` suite in-process (calibrator with the chosen backend + collector
recording the same stream), replays the bag frame by frame (lockstep: the next frame once the
calibrator answered the previous one; ``--pace realtime`` plays at the bag rate instead), listens
to ``/tf_static``, ``/calibrator/extrinsic``, ``/calibrator/overlay``, ``/diagnostics`` and the
nodes' status, then prints a table (nominal vs published vs ground truth) and saves overlays
BEFORE / AFTER, a comparison PNG, a convergence plot, diagnostics JSON and summary.json.
Network safety (ros_ncal.rosenv) is applied before rclpy is imported.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ros_ncal.config_io import dataclass_from_dict

from ._demo_perception import PerceptionConfig, print_perception, run_perception

NAME = 'demo'
HELP = 'end-to-end demo: bags (KITTI, synthetic drive with a wrong extrinsic) -> calibrator suite -> summary + overlays'

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SHARED_DATA = Path(os.environ.get('NCAL_SHARED_DATA', REPO.parent / 'shared' / 'data'))
DEFAULT_KITTI = DEFAULT_SHARED_DATA / 'kitti_object' / 'training'
NCLR_ASSET = Path(__file__).resolve().parents[1] / 'assets' / 'nclr_calib.pt'   # what the calibrator node loads
SCENARIOS = ('kitti', 'synthetic', 'perception')
DIAG_LEVELS = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}   # diagnostic_msgs/DiagnosticStatus
BACKENDS = ('auto', 'nclr/classical', 'nclr', 'nclr+classical', 'classical', 'none')


# ----------------------------------------------------------------------------------------- config
@dataclass
class KittiRunConfig:
    name: str = 'kitti_recorded'
    error_deg: float = 0.0
    error_m: float = 0.0
    error_seed: int = 0


@dataclass
class KittiScenarioConfig:
    frames: list = field(default_factory=list)
    passes: int = 3
    hz: float = 10.0
    classical: str = 'rotation_only'
    runs: list = field(default_factory=lambda: [KittiRunConfig()])


@dataclass
class SyntheticScenarioConfig:
    name: str = 'synthetic_5deg_30cm'
    config: str = ''
    drive_seed: int = 3
    n_frames: int = 30
    passes: int = 1
    error_deg: float = 5.0
    error_m: float = 0.3
    error_seed: int = 0
    classical: str = 'six_dof'


@dataclass
class DemoConfig:
    """The ``demo`` section of config/demo.yaml."""
    scenarios: list = field(default_factory=lambda: list(SCENARIOS))
    backend: str = 'auto'
    pace: str = 'lockstep'
    rate: float = 1.0
    frame_timeout_s: float = 90.0
    collector_enabled: bool = True
    collector_max_samples: int = 6
    kitti: KittiScenarioConfig = field(default_factory=KittiScenarioConfig)
    synthetic: SyntheticScenarioConfig = field(default_factory=SyntheticScenarioConfig)
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)
    calibrator_params: dict = field(default_factory=dict)
    collector_params: dict = field(default_factory=dict)
    classical_configs: dict = field(default_factory=dict)

    def validate(self) -> 'DemoConfig':
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad:
            raise ValueError(f'demo config: unknown scenario(s) {bad}; known: {list(SCENARIOS)}')
        if self.backend not in BACKENDS:
            raise ValueError(f'demo config: backend must be one of {list(BACKENDS)}, got {self.backend!r}')
        if self.pace not in ('lockstep', 'realtime'):
            raise ValueError(f"demo config: pace must be 'lockstep' or 'realtime', got {self.pace!r}")
        if self.kitti.passes < 1 or self.synthetic.passes < 1:
            raise ValueError('demo config: passes must be >= 1')
        for where, name in (('kitti', self.kitti.classical), ('synthetic', self.synthetic.classical)):
            if name not in self.classical_configs:
                raise ValueError(f'demo config: {where}.classical {name!r} is not a key of classical_configs '
                                 f'{sorted(self.classical_configs)}')
        if self.synthetic.n_frames < 1:
            raise ValueError(f'demo config: synthetic.n_frames must be >= 1, got {self.synthetic.n_frames}')
        return self


def load_demo_config(path: str | Path) -> tuple[DemoConfig, Path]:
    """config/demo.yaml -> (DemoConfig, path of the YAML)."""
    import yaml
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'demo config not found: {path}')
    data = yaml.safe_load(path.read_text()) or {}
    raw = dict(data.get('demo', {}) or {})
    raw['classical_configs'] = dict(data.get('classical_configs', {}) or {})
    kitti = dict(raw.get('kitti', {}) or {})
    runs = [dataclass_from_dict(KittiRunConfig, r, f'{path}: demo.kitti.runs[{i}]')
            for i, r in enumerate(kitti.pop('runs', [{}]) or [])]
    raw['kitti'] = kitti
    cfg = dataclass_from_dict(DemoConfig, raw, f'{path}: demo')
    cfg.kitti.runs = runs
    return cfg.validate(), path


# ---------------------------------------------------------------------------------------- options
def add_arguments(parser) -> None:
    parser.add_argument('--scenario', choices=('all', *SCENARIOS, 'publisher'), default=None,
                        help="which bags to replay (default all = the config's scenarios; publisher = the stage-1 "
                             'extrinsic_publisher demo, also selected when only its options are given)')
    parser.add_argument('--backend', choices=BACKENDS, default=None,
                        help='calibrator backend (default from the config: auto = nclr/classical when '
                             f'{_short(NCLR_ASSET)} exists, else classical)')
    parser.add_argument('--checkpoint', default=str(NCLR_ASSET),
                        help='NCLR checkpoint for the nclr backends (default: the shipped asset)')
    parser.add_argument('--config', default=None, help='demo config YAML (default: config/demo.yaml of the package)')
    parser.add_argument('--out', default='out/demo', help='output directory (bags are cached in OUT/bags)')
    parser.add_argument('--kitti-dir', default=str(DEFAULT_KITTI),
                        help='KITTI object split (velodyne/, image_2/, calib/)')
    parser.add_argument('--kitti-frames', nargs='+', default=None, help='KITTI frame ids (one calibration)')
    parser.add_argument('--kitti-passes', type=int, default=None, help='replays of the KITTI bag per run')
    parser.add_argument('--synthetic-config', default=None, help='synthetic world YAML (default config/synthetic.yaml)')
    parser.add_argument('--frames', type=int, default=None, help='frames of the synthetic drive')
    parser.add_argument('--synthetic-passes', type=int, default=None, help='replays of the synthetic bag')
    parser.add_argument('--drive-seed', type=int, default=None, help='synthetic scene seed')
    parser.add_argument('--error-deg', type=float, default=None, help='synthetic nominal rotation error (deg)')
    parser.add_argument('--error-m', type=float, default=None, help='synthetic nominal translation error (m)')
    parser.add_argument('--error-seed', type=int, default=None, help='seed of the error axis / direction')
    parser.add_argument('--pace', choices=('lockstep', 'realtime'), default=None,
                        help='lockstep: next frame once the calibrator answered; realtime: the bag rate x --rate')
    parser.add_argument('--rate', type=float, default=None,
                        help='realtime pace factor (publisher scenario: playback rate, 0 = as fast as possible)')
    parser.add_argument('--frame-timeout', type=float, default=None, help='lockstep: seconds to wait per frame')
    parser.add_argument('--no-collector', action='store_true', help='do not run the collector node')
    parser.add_argument('--rebuild', action='store_true', help='render the synthetic bag again even if cached')
    pub = parser.add_argument_group('publisher scenario (stage 1; giving one of these without --scenario selects it)')
    pub.add_argument('--repeat', type=int, default=None, help='times the KITTI frames are written into the bag (2)')
    pub.add_argument('--hz', type=float, default=None, help='frame rate of the bag (5)')
    pub.add_argument('--extrinsic-source', choices=('tf_static', 'kitti_calib'), default=None,
                     help="extrinsic_publisher source: the recorded /tf_static (default), "
                          "or the last frame's calib file")
    pub.add_argument('--keep-overlays', type=int, default=None, help='overlay PNGs to save (8)')
    pub.add_argument('--timeout', type=float, default=None, help='seconds to wait for outputs after playback (20)')


PUBLISHER_DEFAULTS = {'repeat': 2, 'hz': 5.0, 'extrinsic_source': 'tf_static', 'keep_overlays': 8, 'timeout': 20.0,
                      'rate': 1.0}


def choose_scenario(args) -> str:
    """--scenario, else 'publisher' when a publisher-only option was given, else 'all'."""
    given = [k for k in PUBLISHER_DEFAULTS if k != 'rate' and getattr(args, k) is not None]
    if args.scenario is None:
        return 'publisher' if given else 'all'
    if given and args.scenario != 'publisher':
        print(f'ncal demo: ignoring publisher-scenario option(s) {given} for --scenario {args.scenario}',
              file=sys.stderr)
    return args.scenario


def apply_overrides(cfg: DemoConfig, args) -> DemoConfig:
    if args.scenario in SCENARIOS:
        cfg.scenarios = [args.scenario]
    for attr, value in (('backend', args.backend), ('pace', args.pace), ('frame_timeout_s', args.frame_timeout)):
        if value is not None:
            setattr(cfg, attr, value)
    if args.rate is not None:
        cfg.rate = args.rate
    if args.no_collector:
        cfg.collector_enabled = False
    if args.kitti_frames:
        cfg.kitti.frames = list(args.kitti_frames)
    if args.kitti_passes is not None:
        cfg.kitti.passes = args.kitti_passes
    s = cfg.synthetic
    for attr, value in (('config', args.synthetic_config), ('n_frames', args.frames), ('passes', args.synthetic_passes),
                        ('drive_seed', args.drive_seed), ('error_deg', args.error_deg), ('error_m', args.error_m),
                        ('error_seed', args.error_seed)):
        if value is not None:
            setattr(s, attr, value)
    if args.error_deg is not None or args.error_m is not None:
        s.name = f'synthetic_{s.error_deg:g}deg_{s.error_m * 100:g}cm'
    return cfg.validate()


def _short(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def resolve_backend(requested: str, checkpoint: str | Path = NCLR_ASSET) -> tuple[str, str, str]:
    """'auto' | spec -> (calibrator 'backend' parameter, 'refine' parameter, note for the user)."""
    checkpoint = Path(checkpoint)
    have = checkpoint.is_file()
    if requested == 'auto':
        if have:
            return 'nclr/classical', 'none', (f'backend auto: NCLR checkpoint {_short(checkpoint)} found -> '
                                              'nclr/classical')
        return 'classical', 'none', (f'backend auto: NCLR checkpoint {_short(checkpoint)} not found -> '
                                     'FALLING BACK to the classical (edge alignment) backend')
    if requested.startswith('nclr') and not have:
        return requested, 'none', (f'backend {requested}: NCLR checkpoint {_short(checkpoint)} not found; '
                                   "the calibrator node falls back to 'classical' (see its backend_note)")
    return requested, 'none', f'backend {requested}' + (f' (checkpoint {_short(checkpoint)})'
                                                        if requested.startswith('nclr') else '')


# -------------------------------------------------------------------------------------- scenarios
@dataclass
class RunSpec:
    """One bag replayed through the suite."""
    name: str
    scenario: str
    bag_dir: Path
    truth: dict
    passes: int
    classical: str = 'rotation_only'
    bag_note: str = ''


def prepare_kitti(cfg: DemoConfig, args, bags: Path, log) -> list[RunSpec]:
    from ros_ncal.bag.perturbed import write_kitti_bag_with_error
    runs = []
    for r in cfg.kitti.runs:
        t = time.monotonic()
        bag_dir, counts, truth = write_kitti_bag_with_error(args.kitti_dir, bags / r.name, cfg.kitti.frames or None,
                                                            r.error_deg, r.error_m, r.error_seed, hz=cfg.kitti.hz)
        log(f'wrote {bag_dir} ({len(truth["frames"])} KITTI frames {truth["frames"]}, nominal off by '
            f'{truth["error_deg"]:.2f} deg / {truth["error_m"] * 100:.1f} cm) in {time.monotonic() - t:.1f} s')
        runs.append(RunSpec(r.name, 'kitti', bag_dir, truth, cfg.kitti.passes, cfg.kitti.classical))
    return runs


def prepare_synthetic(cfg: DemoConfig, args, bags: Path, log) -> list[RunSpec]:
    from ros_ncal.bag.synthetic import SyntheticBagSpec, write_synthetic_bag
    s = cfg.synthetic
    spec = SyntheticBagSpec(config=s.config, drive_seed=s.drive_seed, n_frames=s.n_frames, error_deg=s.error_deg,
                            error_m=s.error_m, error_seed=s.error_seed)
    t = time.monotonic()
    log(f'synthetic drive: {s.n_frames} frames, seed {s.drive_seed}, nominal off by {s.error_deg} deg / '
        f'{s.error_m * 100:.0f} cm (rendering ~1 s per frame unless cached) ...')
    bag_dir, counts, truth = write_synthetic_bag(bags, spec, name=s.name, reuse=not args.rebuild, log=log)
    note = 'reused cached bag' if truth.get('reused') else f'rendered in {time.monotonic() - t:.1f} s'
    log(f'{bag_dir}: {counts} ({note})')
    return [RunSpec(s.name, 'synthetic', bag_dir, truth, s.passes, s.classical, note)]


def last_frame_arrays(bag_dir: Path):
    """(points (N, 4), image (H, W, 3), K (3, 3)) of the bag's last frame."""
    from ros_ncal.bag import BagTopics, read_messages
    from ros_ncal.msgcodec import camera_info_to_intrinsics, cloud_to_xyzi, image_to_rgb
    tp = BagTopics()
    last = {}
    for m in read_messages(bag_dir, topics=[tp.points, tp.image, tp.camera_info]):
        last[m.topic] = m.msg
    return (cloud_to_xyzi(last[tp.points]).points, image_to_rgb(last[tp.image]),
            camera_info_to_intrinsics(last[tp.camera_info]).K)


def run_one(spec: RunSpec, cfg: DemoConfig, backend: tuple[str, str, str], checkpoint: str, out: Path, log) -> dict:
    import numpy as np
    import yaml
    from PIL import Image

    from ros_ncal.geometry import invert, pose_error
    from ros_ncal.ros.demo_io import GraphRun, run_graph
    from ros_ncal.viz.demo_report import pose_entry, save_before_after, save_convergence_plot
    run_dir = out / spec.name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    T_true = np.asarray(spec.truth['T_cam_lidar_true'], dtype=np.float64)
    T_nominal = np.asarray(spec.truth['T_cam_lidar_nominal'], dtype=np.float64)
    classical_yaml = run_dir / 'classical.yaml'   # the node reads a YAML with a 'classical' section
    classical_yaml.write_text(yaml.safe_dump({'classical': cfg.classical_configs[spec.classical] or {}}))
    cal_params = {**cfg.calibrator_params, 'backend': backend[0], 'refine': backend[1], 'fallback_backend': 'classical',
                  'classical_config': str(classical_yaml.resolve())}
    if Path(checkpoint).is_file():   # else the node's default ('' = the packaged asset when present)
        cal_params['checkpoint'] = str(Path(checkpoint).resolve())
    col_params = None
    if cfg.collector_enabled:
        col_params = {**cfg.collector_params, 'output_dir': str((run_dir / 'dataset').resolve()),
                      'max_samples': int(cfg.collector_max_samples)}
    log(f'--- {spec.name}: {spec.bag_dir.name} x {spec.passes} pass(es), pace {cfg.pace}, '
        f'nominal {pose_error(T_nominal, T_true)[0]:.2f} deg / {pose_error(T_nominal, T_true)[1] * 100:.1f} cm off')
    res = run_graph(GraphRun(bag_dir=spec.bag_dir, calibrator_params=cal_params, collector_params=col_params,
                             passes=spec.passes, pace=cfg.pace, rate=cfg.rate, frame_timeout_s=cfg.frame_timeout_s,
                             wait_overlay=bool(cfg.calibrator_params.get('overlay.enabled', True))),
                    log=lambda m: log(f'{spec.name}: {m}'))
    estimates = [invert(r.T_lidar_cam) for r in res.extrinsics]
    final = estimates[-1] if estimates else None
    st = res.calibrator_status
    # The calibrator's own /tf_static publications: transforms that are not the bag's nominal.
    T_lidar_cam_nominal = invert(T_nominal)
    ours = [t for t in res.tf_static if not np.allclose(t.T_parent_child, T_lidar_cam_nominal, atol=1e-7)]
    tf_pub = invert(ours[-1].T_parent_child) if ours and st.get('tf_published', 0) > 0 else None
    errs = [pose_error(T, T_true) for T in estimates]
    images = save_before_after(*_frame_for_images(spec), T_nominal, final if final is not None else T_nominal,
                               T_true, run_dir, title=f'{spec.name}: {backend_used(st)}')
    images['convergence'] = save_convergence_plot([e[0] for e in errs], [e[1] * 100 for e in errs], res.confidences,
                                                  run_dir / 'convergence.png',
                                                  f'{spec.name}: ~/extrinsic vs ground truth ({backend_used(st)})')
    for which, item in (('node_overlay_first', res.first_overlay), ('node_overlay_last', res.last_overlay)):
        if item is not None:
            Image.fromarray(item[1]).save(run_dir / f'{which}.png')
            images[which] = str(run_dir / f'{which}.png')
    diag_path = run_dir / 'diagnostics.json'
    diag_path.write_text(json.dumps({'diagnostics': res.diagnostics, 'calibrator_status': st,
                                     'collector_status': res.collector_status}, indent=2))
    dropped = st.get('dropped', {}) or {}
    answer = np.asarray(res.answer_ms, dtype=np.float64)
    before, after = pose_entry(T_nominal, T_true), pose_entry(final, T_true)
    summary = {
        'name': spec.name, 'scenario': spec.scenario, 'bag': str(spec.bag_dir), 'bag_note': spec.bag_note,
        'truth_file': str(spec.bag_dir.parent / f'{spec.bag_dir.name}.truth.json'),
        'frames_in_bag': len(spec.truth.get('stamps_ns', [])), 'passes': spec.passes,
        'backend': backend_used(st), 'backend_note': st.get('backend_note', ''), 'classical_config': spec.classical,
        'nodes': res.started, 'truth': pose_entry(T_true, T_true), 'nominal': before, 'estimate': after,
        'tf_static_published': pose_entry(tf_pub, T_true), 'tf_static_publications': int(st.get('tf_published', 0)),
        'improved': None if after is None else {
            'rotation': after['rot_err_deg'] < before['rot_err_deg'],
            'translation': after['trans_err_cm'] < before['trans_err_cm']},
        'confidence': float(res.confidences[-1]) if res.confidences else 0.0,
        'rot_std_deg': st.get('rot_std_deg'), 'trans_std_m': st.get('trans_std_m'),
        'last_frame_message': st.get('frame_message', ''),
        'frames': {'published': res.frames_published, 'answered': res.frames_answered,
                   'received': int(st.get('pairs', 0)), 'calibrated': int(st.get('calibrated', 0)),
                   'fused': int(st.get('fused_frames', 0)), 'dropped': int(sum(dropped.values())),
                   'dropped_by_reason': dropped, 'skipped': st.get('skipped', {}), 'overlays': res.n_overlays},
        'latency_ms': {'calibration_p50': float(np.median(answer)) if answer.size else None,
                       'calibration_max': float(answer.max()) if answer.size else None,
                       'node_calibration_last': (st.get('latency_ms') or {}).get('calibration'),
                       'node_overlay_last': (st.get('latency_ms') or {}).get('overlay'),
                       'backend_processing_last': st.get('processing_time_ms')},
        'drift': st.get('drift'),
        'trajectory': [{'rot_err_deg': round(e[0], 4), 'trans_err_cm': round(e[1] * 100, 3),
                        'confidence': round(c, 4)} for e, c in zip(errs, res.confidences)],
        'collector': {'dir': str(run_dir / 'dataset') if cfg.collector_enabled else None,
                      'written': res.collector_status.get('written'), 'state': res.collector_status.get('state'),
                      'dropped': res.collector_status.get('dropped')},
        'images': images, 'diagnostics_file': str(diag_path), 'wall_s': res.wall_s,
        'diagnostics_last': {name: {'level': DIAG_LEVELS.get(d['level'], str(d['level'])), 'message': d['message']}
                             for name, d in sorted(res.diagnostics.items())},
    }
    (run_dir / 'summary.json').write_text(json.dumps(summary, indent=2))
    return summary


def backend_used(status: dict) -> str:
    return str(status.get('backend') or '?')


def _frame_for_images(spec: RunSpec):
    points, image, K = last_frame_arrays(spec.bag_dir)
    return image, points, K


def change_text(run: dict) -> str:
    """'rotation 2.00 -> 0.46 deg (-77%), translation 10.0 -> 9.4 cm (-6%)' (no verdict words: numbers only)."""
    b, a = run['nominal'], run['estimate']
    if a is None:
        return 'no estimate received'

    def one(what, x0, x1, unit, fmt):
        rel = f' ({(x1 - x0) / x0 * 100:+.0f}%)' if x0 > 1e-9 else ''
        return f'{what} {x0:{fmt}} -> {x1:{fmt}} {unit}{rel}'
    return (one('rotation error', b['rot_err_deg'], a['rot_err_deg'], 'deg', '.2f') + ', '
            + one('translation error', b['trans_err_cm'], a['trans_err_cm'], 'cm', '.1f'))


def print_report(summary: dict) -> None:
    from ros_ncal.viz.demo_report import format_summary_table
    print('\n=== ncal demo summary ===')
    if not summary['runs'] and summary.get('perception'):   # perception only: no calibration runs to tabulate
        print_perception(summary['perception'])
        print(f'timings (s): {summary["timings_s"]}')
        return
    print(summary['backend_note'])
    for r in summary['runs']:
        if r['backend_note']:
            print(f'{r["name"]}: calibrator note: {r["backend_note"]}')
    print('errors vs ground truth (rotation deg, translation cm); before = nominal on /tf_static of the bag,\n'
          'after = last ~/extrinsic of the calibrator, calibrator /tf_static = its last gated publication')
    print(format_summary_table(summary['runs']))
    for r in summary['runs']:
        print(f'{r["name"]}: backend {r["backend"]} (classical config {r["classical_config"]}): {change_text(r)}; '
              f'/tf_static publications {r["tf_static_publications"]}; drift state {(r["drift"] or {}).get("state")}; '
              f'collector wrote {r["collector"]["written"]}; {r["wall_s"]} s')
        if r.get('last_frame_message'):
            print(f'  last frame: {r["last_frame_message"]}')
        for name, d in r['diagnostics_last'].items():
            print(f'  /diagnostics {name}: {d["level"]} {d["message"]}')
        print(f'  images: {Path(r["images"]["comparison"]).parent}/ (before.png after.png truth.png comparison.png '
              f'convergence.png node_overlay_*.png)')
    if summary.get('perception'):
        print_perception(summary['perception'])
    for name, why in summary.get('skipped_scenarios', {}).items():
        print(f'scenario {name} SKIPPED: {why}')
    print(f'timings (s): {summary["timings_s"]}')


def run(args) -> int:
    from ros_ncal.rosenv import apply_safe_ros_env
    apply_safe_ros_env(isolate=True)  # before any rclpy import; its own domain unless ROS_DOMAIN_ID is exported
    args.scenario = choose_scenario(args)
    if args.scenario == 'publisher':
        from ._demo_publisher import run_publisher_demo
        for k, v in PUBLISHER_DEFAULTS.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
        return run_publisher_demo(args)
    t_start = time.monotonic()
    try:
        from ros_ncal.runner.suite import config_dir
        cfg, cfg_path = load_demo_config(args.config or config_dir() / 'demo.yaml')
        cfg = apply_overrides(cfg, args)
    except (FileNotFoundError, ValueError) as exc:
        print(f'ncal demo: {exc}', file=sys.stderr)
        return 2
    out = Path(args.out)
    bags = out / 'bags'
    bags.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f'[demo {time.monotonic() - t_start:6.1f}s] {msg}', flush=True)
    backend = resolve_backend(cfg.backend, args.checkpoint)
    log(backend[2])
    timings, runs, perception = {}, [], None
    try:
        specs, skipped = [], {}
        for scenario in cfg.scenarios:
            if scenario == 'perception':
                continue
            t = time.monotonic()
            try:
                specs += (prepare_kitti(cfg, args, bags, log) if scenario == 'kitti'
                          else prepare_synthetic(cfg, args, bags, log))
            except FileNotFoundError as exc:
                if len(cfg.scenarios) == 1:
                    raise
                skipped[scenario] = str(exc)
                log(f'SKIPPING scenario {scenario}: {exc}')
            timings[f'bags_{scenario}'] = round(time.monotonic() - t, 2)
        for spec in specs:
            t = time.monotonic()
            runs.append(run_one(spec, cfg, backend, args.checkpoint, out, log))
            timings[f'run_{spec.name}'] = round(time.monotonic() - t, 2)
        if 'perception' in cfg.scenarios:
            t = time.monotonic()
            try:
                perception = run_perception(cfg.perception, args.kitti_dir, DEFAULT_SHARED_DATA, out, log)
            except FileNotFoundError as exc:
                if len(cfg.scenarios) == 1:
                    raise
                skipped['perception'] = str(exc)
                log(f'SKIPPING scenario perception: {exc}')
            timings['run_perception'] = round(time.monotonic() - t, 2)
    except (FileNotFoundError, ValueError) as exc:
        print(f'ncal demo: {exc}', file=sys.stderr)
        return 2
    timings['total'] = round(time.monotonic() - t_start, 2)
    load = os.getloadavg() if hasattr(os, 'getloadavg') else None
    summary = {'backend_requested': cfg.backend, 'backend_note': backend[2], 'nclr_checkpoint': str(args.checkpoint),
               'nclr_checkpoint_present': Path(args.checkpoint).is_file(), 'config': str(cfg_path),
               'demo_config': asdict(cfg),
               'runs': runs, 'perception': perception, 'skipped_scenarios': skipped, 'timings_s': timings,
               'machine': {'cpus': os.cpu_count(), 'loadavg': [round(x, 2) for x in load] if load else None}}
    (out / 'summary.json').write_text(json.dumps(summary, indent=2))
    print_report(summary)
    print(f'summary JSON: {out / "summary.json"}')
    ok = (bool(runs) or perception is not None) and not skipped and all(
        r['estimate'] is not None and r['frames']['overlays'] > 0 for r in runs)
    if perception is not None:
        ok = ok and perception['frames']['labeled_points'] == perception['frames']['published'] \
            and perception['frames']['detections'] == perception['frames']['published']
    return 0 if ok else 1
