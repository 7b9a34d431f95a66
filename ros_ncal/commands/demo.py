"""`ncal demo`: replay shipped bags through the calibration suite and show what a user looks at.

Scenarios (config/demo.yaml, docs/demo.md):

* ``drive`` (the main one): the real KITTI raw drive (77 frames, 10 Hz) written as a robot's recording
  (:mod:`ros_ncal.bag.kitti_raw`: best-effort sensor topics, the nominal on ``/tf_static`` off by e.g.
  10 deg / 0.5 m, the truth only beside the bag), replayed at real time like a driver (best effort, 10 Hz,
  two passes) through the calibrator with the configured backend; a second run starts from the correct
  extrinsic. Shows the convergence over time, before/after overlays and an animated overlay (GIF).
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

from ros_ncal.assets import NCLR_CALIB
from ros_ncal.config_io import dataclass_from_dict, dataclass_list

from ._demo_perception import PerceptionConfig, print_perception, run_perception

NAME = 'demo'
HELP = 'end-to-end demo: bags (KITTI, synthetic drive with a wrong extrinsic) -> calibrator suite -> summary + overlays'

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SHARED_DATA = Path(os.environ.get('NCAL_SHARED_DATA', REPO.parent / 'shared' / 'data'))
DEFAULT_KITTI = DEFAULT_SHARED_DATA / 'kitti_object' / 'training'
SCENARIOS = ('drive', 'kitti', 'synthetic', 'perception')
DEFAULT_DRIVE = DEFAULT_SHARED_DATA / 'kitti_raw' / '2011_09_26' / '2011_09_26_drive_sfnd_sync'
DIAG_LEVELS = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}   # diagnostic_msgs/DiagnosticStatus
BACKENDS = ('config', 'auto', 'nclr/classical', 'nclr', 'nclr+classical', 'classical', 'none')


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
class DriveRunConfig:
    name: str = 'drive_10deg_50cm'
    error_deg: float = 10.0
    error_m: float = 0.5
    error_seed: int = 0


@dataclass
class DriveScenarioConfig:
    """The real drive replayed like a robot's sensors (docs/demo.md). joint: 'config' (config/calibrator.yaml's
    joint.enabled) | 'on' | 'off'. classical: '' = the node's own classical settings, else a key of
    classical_configs. targets_*: the issue's targets, printed beside the measured figures."""
    drive_dir: str = ''
    frames: str = ''
    passes: int = 2
    pace: str = 'realtime'
    rate: float = 1.0
    best_effort: bool = True
    node_processes: bool = True     # each node in its own process, as ros2 launch starts them
    joint: str = 'config'
    classical: str = ''
    calibrator_params: dict = field(default_factory=dict)
    gif_frames: int = 40
    gif_scale: float = 0.5
    gif_frame_ms: int = 200
    target_deg: float = 0.2
    target_cm: float = 3.0
    correct_max_deg: float = 0.2
    correct_max_cm: float = 2.0
    runs: list = field(default_factory=lambda: [DriveRunConfig(), DriveRunConfig('drive_correct', 0.0, 0.0, 0)])


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
    drive: DriveScenarioConfig = field(default_factory=DriveScenarioConfig)
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
        if self.kitti.passes < 1 or self.synthetic.passes < 1 or self.drive.passes < 1:
            raise ValueError('demo config: passes must be >= 1')
        d = self.drive
        if d.pace not in ('lockstep', 'realtime') or d.rate <= 0:
            raise ValueError(f"demo config: drive.pace must be 'lockstep' or 'realtime' and drive.rate > 0, got "
                             f'{d.pace!r}, {d.rate}')
        if d.joint not in ('config', 'on', 'off'):
            raise ValueError(f"demo config: drive.joint must be 'config', 'on' or 'off', got {d.joint!r}")
        if not d.runs or len({r.name for r in d.runs}) != len(d.runs):
            raise ValueError('demo config: drive.runs needs at least one run, with distinct names')
        if d.gif_frames < 0 or not 0 < d.gif_scale <= 1:
            raise ValueError('demo config: drive.gif_frames must be >= 0 and drive.gif_scale in (0, 1]')
        for where, name in (('kitti', self.kitti.classical), ('synthetic', self.synthetic.classical),
                            ('drive', self.drive.classical or None)):
            if name is not None and name not in self.classical_configs:
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
    drive = dict(raw.get('drive', {}) or {})
    drive_runs = dataclass_list(DriveRunConfig, drive.pop('runs', None), f'{path}: demo.drive.runs')
    raw['drive'] = drive
    cfg = dataclass_from_dict(DemoConfig, raw, f'{path}: demo')
    cfg.kitti.runs = runs
    if drive_runs:
        cfg.drive.runs = drive_runs
    return cfg.validate(), path


# ---------------------------------------------------------------------------------------- options
def add_arguments(parser) -> None:
    parser.add_argument('--scenario', choices=('all', *SCENARIOS, 'publisher'), default=None,
                        help="which bags to replay (default all = the config's scenarios; publisher = the stage-1 "
                             'extrinsic_publisher demo, also selected when only its options are given)')
    parser.add_argument('--backend', choices=BACKENDS, default=None,
                        help='calibrator backend (default from the config: auto = nclr/classical when '
                             f'{_short(NCLR_CALIB)} exists, else classical)')
    parser.add_argument('--checkpoint', default=str(NCLR_CALIB),
                        help='NCLR checkpoint for the nclr backends (default: the shipped asset)')
    parser.add_argument('--config', default=None, help='demo config YAML (default: config/demo.yaml of the package)')
    parser.add_argument('--out', default='out/demo', help='output directory (bags are cached in OUT/bags)')
    drv = parser.add_argument_group('drive scenario (the real KITTI raw drive, replayed at real time)')
    drv.add_argument('--drive-dir', default=None, help=f'KITTI raw drive folder (default {_short(DEFAULT_DRIVE)})')
    drv.add_argument('--drive-frames', default=None, metavar='A:B', help="slice of the drive's frames (default all)")
    drv.add_argument('--drive-passes', type=int, default=None, help='real-time passes over the drive (default 2)')
    drv.add_argument('--drive-rate', type=float, default=None,
                     help='replay speed factor (default 1 = real time; e.g. 0.2 on a machine too loaded to keep up)')
    drv.add_argument('--drive-error', default=None, metavar='DEG,M',
                     help='nominal error of the drive runs that start off (default 10,0.5)')
    drv.add_argument('--drive-runs', default=None, metavar='NAME[,NAME]',
                     help='run only these drive runs (config names, e.g. drive_correct)')
    drv.add_argument('--joint', choices=('config', 'on', 'off'), default=None,
                     help="drive: the calibrator's joint multi-frame stage (default: config/calibrator.yaml)")
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
    d = cfg.drive
    for attr, value in (('drive_dir', args.drive_dir), ('frames', args.drive_frames), ('passes', args.drive_passes),
                        ('joint', args.joint), ('rate', args.drive_rate)):
        if value is not None:
            setattr(d, attr, value)
    if args.drive_error is not None:
        try:
            deg, m = (float(x) for x in args.drive_error.split(','))
        except ValueError:
            raise ValueError(f'--drive-error expects DEG,M (e.g. 10,0.5), got {args.drive_error!r}') from None
        for r in d.runs:
            if r.error_deg > 0 or r.error_m > 0:
                r.error_deg, r.error_m = deg, m
                r.name = f'drive_{deg:g}deg_{m * 100:g}cm'
    if args.drive_runs is not None:
        wanted = [x for x in args.drive_runs.split(',') if x]
        names = [r.name for r in d.runs]
        if not wanted or set(wanted) - set(names):
            raise ValueError(f'--drive-runs {args.drive_runs!r}: choose from {names}')
        d.runs = [r for r in d.runs if r.name in wanted]
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


def resolve_backend(requested: str, checkpoint: str | Path = NCLR_CALIB) -> tuple[str, str, str]:
    """'auto' | spec -> (calibrator 'backend' parameter, 'refine' parameter, note for the user)."""
    checkpoint = Path(checkpoint)
    have = checkpoint.is_file()
    if requested == 'config':
        return '', '', f'backend: as configured for the calibrator node ({configured_backend()})'
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


def configured_backend() -> str:
    """'backend X, refine Y, joint.enabled Z' of config/calibrator.yaml (what the node runs by default)."""
    from ros_ncal.config_io import read_yaml_mapping
    from ros_ncal.runner.suite import config_dir
    try:
        p = read_yaml_mapping(config_dir() / 'calibrator.yaml').get('/**', {}).get('ros__parameters', {})
    except (OSError, ValueError) as exc:
        return f'config/calibrator.yaml unreadable: {exc}'
    return (f"config/calibrator.yaml: backend {p.get('backend')}, refine {p.get('refine')}, "
            f"joint.enabled {(p.get('joint') or {}).get('enabled')}")


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
    pace: str | None = None            # None: the demo's pace / rate
    rate: float | None = None
    best_effort: bool = False          # sensor topics published BEST_EFFORT (a driver)
    calibrator_params: dict = field(default_factory=dict)    # extra node parameters of this run
    node_processes: bool = False       # each node in its own process (the drive: as a robot runs them)


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


def prepare_drive(cfg: DemoConfig, args, bags: Path, log) -> list[RunSpec]:
    """One bag per drive run (cached under OUT/bags while drive, frames and error are unchanged)."""
    from ros_ncal.bag.kitti_raw import parse_frame_range, write_kitti_raw_bag
    from ros_ncal.bag.perturbed import truth_path
    from ros_ncal.data.readers.kitti_raw import open_kitti_raw_drive
    d = cfg.drive
    drive = open_kitti_raw_drive(d.drive_dir or DEFAULT_DRIVE)
    frames = parse_frame_range(d.frames or None, len(drive.frames))
    wanted = drive.frames[frames]
    params = dict(d.calibrator_params)
    if d.joint != 'config':
        params['joint.enabled'] = d.joint == 'on'
        log(f"drive: the calibrator's joint multi-frame stage {d.joint} (demo override of joint.enabled)")
    runs = []
    for r in d.runs:
        t = time.monotonic()
        bag_dir = bags / r.name
        truth = None
        if truth_path(bag_dir).is_file() and not args.rebuild:
            old = json.loads(truth_path(bag_dir).read_text())
            same = (old.get('source', {}).get('drive_dir') == str(drive.drive_dir)
                    and [f['frame'] for f in old.get('frames', [])] == wanted and old.get('error_seed') == r.error_seed
                    and abs(old.get('error_deg', -1) - r.error_deg) < 1e-6 and abs(old.get('error_m', -1) - r.error_m) < 1e-9)
            truth = old if same and any(bag_dir.glob('*.mcap')) else None
        note = 'reused cached bag'
        if truth is None:
            bag_dir, _, truth = write_kitti_raw_bag(drive.drive_dir, bag_dir, r.error_deg, r.error_m, r.error_seed,
                                                    frames, overwrite=True)
            note = f'written in {time.monotonic() - t:.1f} s'
        log(f'{bag_dir}: {len(truth["frames"])} frames of {drive.name} ({truth["stamps"]}), nominal off by '
            f'{truth["error_deg"]:.2f} deg / {truth["error_m"] * 100:.1f} cm ({note})')
        runs.append(RunSpec(r.name, 'drive', bag_dir, truth, d.passes, d.classical, note, pace=d.pace, rate=d.rate,
                            best_effort=d.best_effort, calibrator_params=params,
                            node_processes=d.node_processes))
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
    from ros_ncal.ros.harness.demo_io import GraphRun, run_graph
    from ros_ncal.viz.demo_report import pose_entry, save_before_after, save_convergence_plot
    run_dir = out / spec.name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    T_true = np.asarray(spec.truth['T_cam_lidar_true'], dtype=np.float64)
    T_nominal = np.asarray(spec.truth['T_cam_lidar_nominal'], dtype=np.float64)
    # a drive run is a robot's: the node's shipped settings plus the drive's own overrides (not the lockstep ones)
    cal_params = dict(spec.calibrator_params) if spec.scenario == 'drive' else {**cfg.calibrator_params,
                                                                              **spec.calibrator_params}
    if spec.classical:
        classical_yaml = run_dir / 'classical.yaml'   # the node reads a YAML with a 'classical' section
        classical_yaml.write_text(yaml.safe_dump({'classical': cfg.classical_configs[spec.classical] or {}}))
        cal_params['classical_config'] = str(classical_yaml.resolve())
    if backend[0]:       # else ('config') the node's configured backend, refine and checkpoint
        cal_params.update({'backend': backend[0], 'refine': backend[1], 'fallback_backend': 'classical'})
        if Path(checkpoint).is_file():   # else the node's default ('' = the packaged asset when present)
            cal_params['checkpoint'] = str(Path(checkpoint).resolve())
    col_params = None
    if cfg.collector_enabled:
        col_params = {**cfg.collector_params, 'output_dir': str((run_dir / 'dataset').resolve()),
                      'max_samples': int(cfg.collector_max_samples)}
        if spec.best_effort:     # a RELIABLE reader would not match the best-effort sensor publishers
            col_params['input.reliable'] = False
    pace, rate = spec.pace or cfg.pace, spec.rate or cfg.rate
    log(f'--- {spec.name}: {spec.bag_dir.name} x {spec.passes} pass(es), pace {pace}'
        f'{" x%g" % rate if pace == "realtime" else ""}{", best-effort sensor QoS" if spec.best_effort else ""}, '
        f'nominal {pose_error(T_nominal, T_true)[0]:.2f} deg / {pose_error(T_nominal, T_true)[1] * 100:.1f} cm off')
    res = run_graph(GraphRun(bag_dir=spec.bag_dir, calibrator_params=cal_params, collector_params=col_params,
                             passes=spec.passes, pace=pace, rate=rate, frame_timeout_s=cfg.frame_timeout_s,
                             best_effort=spec.best_effort, node_processes=spec.node_processes,
                             log_dir=run_dir / 'logs' if spec.node_processes else None,
                             wait_overlay=bool(cal_params.get('overlay.enabled', True))),
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
    live = None
    if spec.scenario == 'drive':     # error vs replay time, /tf_static publications, GIF (drive_report)
        live = drive_report(spec, cfg.drive, res, T_true, T_nominal, run_dir, images, backend_used(st), log)
    else:
        images['convergence'] = save_convergence_plot(
            [e[0] for e in errs], [e[1] * 100 for e in errs], res.confidences, run_dir / 'convergence.png',
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
        'images': images, 'diagnostics_file': str(diag_path), 'wall_s': res.wall_s, 'live': live,
        'pace': pace, 'best_effort': spec.best_effort, 'joint': st.get('joint'),
        'diagnostics_last': {name: {'level': DIAG_LEVELS.get(d['level'], str(d['level'])), 'message': d['message']}
                             for name, d in sorted(res.diagnostics.items())},
    }
    (run_dir / 'summary.json').write_text(json.dumps(summary, indent=2))
    return summary


def drive_report(spec: RunSpec, d: DriveScenarioConfig, res, T_true, T_nominal, run_dir: Path, images: dict,
                 backend: str, log) -> dict:
    """The live view of a drive run: ~/extrinsic error vs replay time (s since the first frame), the calibrator's
    /tf_static publications (time, error), the targets checked, convergence.png and drive.gif."""
    import numpy as np

    from ros_ncal.geometry import invert, pose_error
    from ros_ncal.viz.demo_report import save_convergence_plot
    t0 = res.publish_mono[0][2] if res.publish_mono else 0.0
    est = [(r.received_mono - t0, invert(r.T_lidar_cam)) for r in res.extrinsics]
    timeline = [{'t_s': round(t, 3), 'rot_err_deg': round(pose_error(T, T_true)[0], 4),
                 'trans_err_cm': round(pose_error(T, T_true)[1] * 100, 3)} for t, T in est]
    T_ln = invert(T_nominal)
    pubs = [(m - t0, invert(tr.T_parent_child)) for tr, m in zip(res.tf_static, res.tf_static_mono)
            if not np.allclose(tr.T_parent_child, T_ln, atol=1e-7)]
    published = [{'t_s': round(t, 3), 'rot_err_deg': round(pose_error(T, T_true)[0], 4),
                  'trans_err_cm': round(pose_error(T, T_true)[1] * 100, 3)} for t, T in pubs]
    passes = [(m - t0, f'pass {p + 1}') for p, i, m in res.publish_mono if i == 0]
    nom_rot, nom_trans = pose_error(T_nominal, T_true)
    correct = nom_rot < 1e-6 and nom_trans < 1e-9
    max_dev = (max(e['rot_err_deg'] for e in timeline), max(e['trans_err_cm'] for e in timeline)) if timeline else None
    final = timeline[-1] if timeline else None
    # the passes end one frame period after the last frame went out; later estimates come from frames of the
    # passes whose calibration was still running
    period_s = (res.pass_offset_ns / 1e9 / max(1, len(res.frame_stamps_ns))) / (spec.rate or 1.0)
    end_s = (res.publish_mono[-1][2] - t0 + period_s) if res.publish_mono else 0.0
    in_passes = [e for e in timeline if e['t_s'] <= end_s]
    at_end = in_passes[-1] if in_passes else None
    if correct:   # started right: it must not move, and must not publish anything worse than the nominal
        check = {'kind': 'correct', 'max_deg': d.correct_max_deg, 'max_cm': d.correct_max_cm,
                 'max_deviation': None if max_dev is None else {'rot_deg': max_dev[0], 'trans_cm': max_dev[1]},
                 'publications': len(published),
                 'worst_publication': None if not published else {
                     'rot_deg': max(p['rot_err_deg'] for p in published),
                     'trans_cm': max(p['trans_err_cm'] for p in published)}}
        check['stayed'] = None if max_dev is None else (max_dev[0] <= d.correct_max_deg
                                                        and max_dev[1] <= d.correct_max_cm)
        check['published_worse'] = bool(published)   # any publication moves off the exact nominal
        check['met'] = None if max_dev is None else (check['stayed'] and not check['published_worse'])
    else:
        check = {'kind': 'converge', 'target_deg': d.target_deg, 'target_cm': d.target_cm,
                 'final': None if final is None else {'rot_deg': final['rot_err_deg'], 'trans_cm': final['trans_err_cm']},
                 'at_end_of_passes': None if at_end is None else {'rot_deg': at_end['rot_err_deg'],
                                                                   'trans_cm': at_end['trans_err_cm']},
                 'first_publication_s': published[0]['t_s'] if published else None,
                 'last_publication': published[-1] if published else None}
        check['met'] = (at_end is not None and at_end['rot_err_deg'] <= d.target_deg
                        and at_end['trans_err_cm'] <= d.target_cm)
        hit = next((e for e in timeline if e['rot_err_deg'] <= d.target_deg and e['trans_err_cm'] <= d.target_cm), None)
        check['first_within_target_s'] = hit['t_s'] if hit else None
    images['convergence'] = save_convergence_plot(
        [e['rot_err_deg'] for e in timeline], [e['trans_err_cm'] for e in timeline], res.confidences,
        run_dir / 'convergence.png', f'{spec.name}: ~/extrinsic vs truth, real-time replay ({backend})',
        x=[e['t_s'] for e in timeline], xlabel='replay time (s)', vlines=passes,
        published=[(p['t_s'], p['rot_err_deg'], p['trans_err_cm']) for p in published],
        targets=(d.correct_max_deg, d.correct_max_cm) if correct else (d.target_deg, d.target_cm))
    gif = None
    if d.gif_frames > 0 and res.publish_mono:
        gif = save_drive_gif(spec, d, res, est, T_nominal, T_true, run_dir / 'drive.gif')
        images['gif'] = gif['path']
        log(f'{spec.name}: {gif["path"]}: {gif["frames"]} frames {gif["size"][0]}x{gif["size"][1]}, '
            f'{gif["bytes"] / 1e6:.2f} MB')
    load = os.getloadavg() if hasattr(os, 'getloadavg') else None
    return {'timeline': timeline, 'tf_static': published, 'pass_starts_s': [round(t, 3) for t, _ in passes],
            'passes_end_s': round(end_s, 3), 'estimates_in_passes': len(in_passes), 'check': check, 'gif': gif,
            'replay_s': round(res.publish_mono[-1][2] - t0, 3) if res.publish_mono else None,
            'loadavg_after': [round(x, 2) for x in load] if load else None}


def save_drive_gif(spec: RunSpec, d: DriveScenarioConfig, res, est, T_nominal, T_true, path: Path) -> dict:
    """drive.gif: ``d.gif_frames`` frames evenly over all passes, each the bag frame projected with the estimate
    the calibrator had published when that frame went out (the nominal before its first ~/extrinsic)."""
    from ros_ncal.bag import BagTopics, read_messages
    from ros_ncal.geometry import pose_error
    from ros_ncal.msgcodec import camera_info_to_intrinsics, cloud_to_xyzi, image_to_rgb
    from ros_ncal.viz.demo_report import save_overlay_gif
    slots = res.publish_mono
    n = min(d.gif_frames, len(slots))
    picks = [slots[round(k * (len(slots) - 1) / max(1, n - 1))] for k in range(n)]
    need = {i for _, i, _ in picks}
    tp = BagTopics()
    data, k = {}, -1
    for m in read_messages(spec.bag_dir, topics=[tp.points, tp.image, tp.camera_info]):
        if m.topic == tp.points:
            k += 1
            if k in need:
                data[k] = {'points': cloud_to_xyzi(m.msg).points}
        elif k in need and m.topic == tp.image:
            data[k]['image'] = image_to_rgb(m.msg)
        elif k in need and m.topic == tp.camera_info:
            data[k]['K'] = camera_info_to_intrinsics(m.msg).K
    t0 = slots[0][2]
    frames = []
    for p, i, mono in picks:
        T = T_nominal
        for t, Te in est:          # the newest estimate received before this frame was published
            if t <= mono - t0:
                T = Te
        rot, trans = pose_error(T, T_true)
        f = data[i]
        frames.append((f['image'], f['points'], f['K'], T,
                       f'{spec.name} pass {p + 1} t={mono - t0:4.1f}s  {rot:.2f} deg / {trans * 100:.1f} cm off'))
    return save_overlay_gif(frames, path, scale=d.gif_scale, frame_ms=d.gif_frame_ms)


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


def verdict(met) -> str:
    return 'NOT JUDGED (no estimate)' if met is None else ('MET' if met else 'MISSED')


def live_text(run: dict) -> str:
    """The drive run's figures against the issue's targets (measured numbers, then MET / MISSED)."""
    c, j = run['live']['check'], run.get('joint') or {}
    joint = f"joint stage {'on' if j.get('enabled') else 'off'} ({j.get('applied', 0)} applied / {j.get('runs', 0)} runs)"
    if c['kind'] == 'correct':
        dev = c['max_deviation']
        worst = c['worst_publication']
        dev_txt = 'n/a' if dev is None else f"{dev['rot_deg']:.3f} deg / {dev['trans_cm']:.2f} cm"
        worst_txt = '' if worst is None else f", worst {worst['rot_deg']:.3f} deg / {worst['trans_cm']:.2f} cm"
        return (f'started from the correct extrinsic: ~/extrinsic at most {dev_txt} from the truth (target <= '
                f"{c['max_deg']} deg / {c['max_cm']} cm); /tf_static publications {c['publications']}{worst_txt}; "
                f"{joint}; {verdict(c['met'])}")
    def fmt(e):
        return 'n/a' if e is None else f"{e['rot_deg']:.3f} deg / {e['trans_cm']:.2f} cm"
    lv = run['live']
    return (f"live: ~/extrinsic at the end of the passes ({lv['passes_end_s']:.1f} s, {lv['estimates_in_passes']} "
            f"estimates) {fmt(c['at_end_of_passes'])}, final (after in-flight calibrations) {fmt(c['final'])}; "
            f"target <= {c['target_deg']} deg / {c['target_cm']} cm: {verdict(c['met'])}; first within "
            f"target at {c['first_within_target_s']} s; first /tf_static publication at {c['first_publication_s']} s "
            f"({len(lv['tf_static'])} in all); {joint}; replay {lv['replay_s']} s for "
            f"{run['frames']['published']} frames, load average {lv['loadavg_after']}")


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
              f'convergence.png node_overlay_*.png{" drive.gif" if "gif" in r["images"] else ""})')
        if r.get('live'):
            print('  ' + live_text(r))
    if summary.get('perception'):
        print_perception(summary['perception'])
    for name, why in summary.get('skipped_scenarios', {}).items():
        print(f'scenario {name} SKIPPED: {why}')
    print(f'timings (s): {summary["timings_s"]}')


def run(args) -> int:
    from ros_ncal.rosenv import apply_safe_ros_env
    from ros_ncal.commands._domain import isolated_domain_id
    # before any rclpy import; its own domain unless ROS_DOMAIN_ID is exported
    apply_safe_ros_env(domain_id=isolated_domain_id())
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
                prepare = {'drive': prepare_drive, 'kitti': prepare_kitti, 'synthetic': prepare_synthetic}[scenario]
                specs += prepare(cfg, args, bags, log)
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
