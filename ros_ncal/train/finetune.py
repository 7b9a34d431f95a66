"""Downstream fine-tuning and linear probing: segmentation, detection, panoptic segmentation.

One loop for the three tasks (task adapters in downstream_tasks.py):
- backbone: a MinkUNet built from the config (``backbone``), or from a pretrained backbone checkpoint
  (``pretrained``: weights only; the checkpoint's own backbone config is used so the weights fit, and
  missing / unexpected keys are reported);
- labelled data: ``label_fraction`` of the training scenes, chosen by scene with ``label_seed``;
- AdamW, linear warm-up then cosine decay to ``min_lr_ratio`` x lr, a fixed number of steps (the budget);
- linear probing: the backbone is frozen (no gradients, eval-mode batch norm), only the head trains;
- at the end: metrics on the held-out samples and one checkpoint (weights + the full config) written with
  ros_ncal.models.checkpoint (atomic), plus a JSON summary beside it.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ros_ncal.config_io import (dataclass_from_dict, deep_merge, load_yaml_with_base,  # noqa: F401 (re-exported)
                                parse_set_options, to_jsonable)
from ros_ncal.models.inference import (FINETUNED_MODEL_TYPE, backbone_out_dim, load_task_model,  # noqa: F401 (re-exported)
                                       resolve_device)

from .downstream_data import (AugmentConfig, DataConfig, GTDatabase, RealDataConfig, augment, labelled_subset,
                              load_real_samples, load_task_samples, select_labelled_scenes)
from .downstream_tasks import TASKS, TaskModel, make_task
from .schedule import warmup_cosine



@dataclass
class OptimConfig:
    steps: int = 200              # optimisation steps: the training budget
    batch_size: int = 2           # clouds per step
    lr: float = 1e-3
    weight_decay: float = 1e-3
    warmup_frac: float = 0.05     # linear warm-up over this fraction of the steps
    min_lr_ratio: float = 0.01    # cosine decays to lr x this
    grad_clip: float = 10.0       # max gradient norm; 0 disables
    time_budget_s: float = 0.0    # > 0: stop training after this many seconds (then evaluate and save as usual)


@dataclass
class FinetuneConfig:
    task: str = 'seg'
    backbone: dict = field(default_factory=lambda: {
        'type': 'MinkUNet', 'depth': 14, 'in_channels': 1, 'input_features': 'intensity', 'out_dim': 64,
        'width': 0.25, 'voxel_size': 0.1})
    head: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    real: RealDataConfig = field(default_factory=RealDataConfig)  # real labelled frames (KITTI / SemanticKITTI)
    optim: OptimConfig = field(default_factory=OptimConfig)
    label_fraction: float = 1.0
    label_seed: int = 0           # fixes the labelled scenes (same for every seed and for pretrained vs scratch)
    seed: int = 0                 # initialisation, batch order, augmentation
    linear_probe: bool = False
    pretrained: str | None = None  # backbone checkpoint (from `ncal pretrain` or any ros_ncal checkpoint)
    backbone_from_checkpoint: bool = True  # build the backbone with the checkpoint's config, not ``backbone``
    init_head_from_pretrained: bool = False  # ``pretrained`` is a fine-tuned model of this task: start its head too
    calibration: dict = field(default_factory=lambda: {'max_fp_per_frame': 1.0, 'prior': 1.0})  # det + real
    eval_batch_size: int = 2
    log_every: int = 10
    output_dir: str = 'runs/finetune'
    run_name: str | None = None   # default: <task>_<fraction>_<pretrained|scratch>[_probe]_s<seed>
    device: str = 'auto'          # auto | cpu | cuda | cuda:N
    num_threads: int = 0          # torch intra-op CPU threads; 0 leaves torch's default (see docs/downstream.md)

    def resolved_run_name(self) -> str:
        if self.run_name:
            return self.run_name
        frac = f'{self.label_fraction * 100:g}pct'
        init = 'pretrained' if self.pretrained else 'scratch'
        probe = '_probe' if self.linear_probe else ''
        return f'{self.task}_{frac}_{init}{probe}_s{self.seed}'


# ------------------------------------------------------------------ config I/O

def config_from_dict(data: dict, where: str = 'config') -> FinetuneConfig:
    cfg = dataclass_from_dict(FinetuneConfig, data, where)
    validate_config(cfg)
    return cfg


def read_config_dict(path: str | Path) -> dict:
    """A fine-tuning YAML as a dict; a ``base: other.yaml`` key (relative to the file) is merged under it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f'fine-tuning config not found: {path}')
    return load_yaml_with_base(path, base_key='base')


def load_finetune_config(path: str | Path, overrides: dict | None = None) -> FinetuneConfig:
    """Read a config/finetune/*.yaml (with its ``base``); ``overrides`` (nested dict) are merged on top."""
    data = deep_merge(read_config_dict(path), overrides or {})
    return config_from_dict(data, str(path))


def validate_config(cfg: FinetuneConfig) -> FinetuneConfig:
    if cfg.task not in TASKS:
        raise ValueError(f'task must be one of {TASKS}, got {cfg.task!r}')
    if not 0 < cfg.label_fraction <= 1:
        raise ValueError(f'label_fraction must be in (0, 1], got {cfg.label_fraction}')
    o = cfg.optim
    if o.steps < 1 or o.batch_size < 1:
        raise ValueError(f'optim.steps and optim.batch_size must be >= 1, got {o.steps}, {o.batch_size}')
    if not (o.lr > 0 and o.weight_decay >= 0 and 0 <= o.warmup_frac < 1 and 0 <= o.min_lr_ratio <= 1):
        raise ValueError(f'bad optimiser settings: {o}')
    if not isinstance(cfg.backbone, dict) or 'type' not in cfg.backbone:
        raise ValueError("backbone must be a model config mapping with a 'type' key (see config/models/)")
    return cfg


# ------------------------------------------------------------------ backbone and pretrained weights

BACKBONE_PREFIXES = ('backbone.', 'point_net.', 'point_backbone.')  # full-model checkpoints (fine-tuned, NCLR)


def _find_point_backbone(cfg: dict, depth: int = 0) -> dict | None:
    """A nested 'point_backbone' MinkUNet config (the NCLR network config), typed."""
    if not isinstance(cfg, dict) or depth > 4:
        return None
    pb = cfg.get('point_backbone')
    if isinstance(pb, dict):
        return {'type': 'MinkUNet', **pb} if 'type' not in pb else dict(pb)
    for v in cfg.values():
        found = _find_point_backbone(v, depth + 1)
        if found:
            return found
    return None


def _backbone_config_in(payload: dict) -> dict | None:
    """The backbone's model config inside a checkpoint payload, or None."""
    cfg = payload.get('config') or {}
    if isinstance(cfg, dict):
        if cfg.get('type') == FINETUNED_MODEL_TYPE and isinstance(cfg.get('backbone'), dict):
            return cfg['backbone']
        if isinstance(cfg.get('backbone'), dict) and 'type' in cfg['backbone']:
            return cfg['backbone']
        nested = _find_point_backbone(cfg)
        if nested:
            return nested
        if cfg.get('type') == 'MinkUNet':
            return cfg
    return None


def backbone_state_in(payload: dict) -> dict:
    """The backbone's state_dict inside a checkpoint payload.

    Accepted layouts: a 'backbone' entry in model_state or extra holding a state_dict; model_state keys
    under a prefix (``extra['backbone_prefix']``, else 'backbone.' as `ncal pretrain`'s backbone.pt and
    fine-tuned models, 'point_net.' as the full NCLR checkpoint, 'point_backbone.'); or a model_state
    that is the backbone's own state_dict.
    """
    state = payload.get('model_state') or {}
    nested = state.get('backbone') if isinstance(state.get('backbone'), dict) else None
    if nested is None and isinstance(payload.get('extra', {}).get('backbone'), dict):
        nested = payload['extra']['backbone']
    if nested is not None:
        return dict(nested)
    prefixes = list(BACKBONE_PREFIXES)
    hint = (payload.get('extra') or {}).get('backbone_prefix')
    if isinstance(hint, str) and hint:
        prefixes.insert(0, hint)
    for prefix in prefixes:
        pref = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if pref:
            return pref
    return dict(state)


def build_backbone(cfg: FinetuneConfig, log: Callable[[str], None] = print):
    """-> (backbone module, backbone config used, load report dict or None)."""
    from ros_ncal.models.checkpoint import load_checkpoint
    from ros_ncal.models.registry import build_model
    bcfg = dict(cfg.backbone)
    report = None
    payload = None
    if cfg.pretrained:
        payload = load_checkpoint(cfg.pretrained)
        ck_cfg = _backbone_config_in(payload)
        if cfg.backbone_from_checkpoint and ck_cfg:
            if ck_cfg != bcfg:
                log(f'backbone config taken from the checkpoint {cfg.pretrained}: {ck_cfg} (YAML had {bcfg})')
            bcfg = dict(ck_cfg)
    backbone = build_model(bcfg)
    if payload is not None:
        state = backbone_state_in(payload)
        bad = [k for k, v in state.items()
               if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise ValueError(f'{cfg.pretrained}: {len(bad)} of {len(state)} backbone tensors contain NaN/inf '
                             f'(e.g. {bad[:3]}); the pretraining run that wrote it diverged')
        res = backbone.load_state_dict(state, strict=False)
        own = backbone.state_dict()
        mismatched = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
        report = {'checkpoint': str(cfg.pretrained), 'loaded': len(state) - len(res.unexpected_keys),
                  'missing_keys': list(res.missing_keys), 'unexpected_keys': list(res.unexpected_keys),
                  'shape_mismatch': mismatched}
        log(f'pretrained backbone {cfg.pretrained}: {report["loaded"]} tensors loaded, '
            f'{len(res.missing_keys)} missing {res.missing_keys[:5]}, '
            f'{len(res.unexpected_keys)} unexpected {res.unexpected_keys[:5]}')
        if report['loaded'] == 0:
            raise ValueError(f'{cfg.pretrained}: no backbone weights matched the model '
                             f'(unexpected keys start with {res.unexpected_keys[:3]})')
    return backbone, bcfg, report


def build_task_model(cfg: FinetuneConfig, log: Callable[[str], None] = print):
    """-> (TaskModel, task adapter, backbone config, pretrained load report)."""
    task = make_task(cfg.task, cfg.head)
    backbone, bcfg, report = build_backbone(cfg, log)
    head = task.build_head(backbone_out_dim(backbone))
    if cfg.pretrained and cfg.init_head_from_pretrained:
        from ros_ncal.models.checkpoint import load_checkpoint
        state = load_checkpoint(cfg.pretrained).get('model_state') or {}
        hstate = {k[5:]: v for k, v in state.items() if k.startswith('head.')}
        own = head.state_dict()
        fit = {k: v for k, v in hstate.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
        if not fit:
            raise ValueError(f'{cfg.pretrained}: init_head_from_pretrained but no head tensor fits the {cfg.task} head')
        head.load_state_dict(fit, strict=False)
        log(f'head initialised from {cfg.pretrained}: {len(fit)} of {len(own)} tensors')
        if report is not None:
            report['head_loaded'] = len(fit)
    return TaskModel(backbone, head, cfg.task, freeze_backbone=cfg.linear_probe), task, bcfg, report


def cosine_schedule(step: int, total: int, warmup_frac: float, min_ratio: float) -> float:
    """LR multiplier at ``step`` (0-based): :func:`ros_ncal.train.schedule.warmup_cosine` with a warm-up of
    ``round(warmup_frac * total)`` steps (none when that is 0)."""
    return warmup_cosine(step, total, int(round(warmup_frac * total)), min_ratio)


# ------------------------------------------------------------------ the loop

def load_labelled_samples(cfg: FinetuneConfig, log: Callable[[str], None] = print) -> list:
    """The labelled training samples of ``cfg.label_fraction`` (chosen by scene with ``cfg.label_seed``).

    Synthetic samples are one scene per index, so only the labelled indices are generated (the same
    choice ``labelled_subset`` makes on the full list); shards are read in full because their scenes
    are known only from each sample's metadata.
    """
    d = cfg.data
    if d.source == 'synthetic' and cfg.label_fraction < 1.0:
        all_idx = list(range(int(d.train_indices[0]), int(d.train_indices[1])))
        chosen = select_labelled_scenes(all_idx, cfg.label_fraction, cfg.label_seed)
        return load_task_samples(d, 'train', indices=chosen, progress=log)
    return labelled_subset(load_task_samples(d, 'train', progress=log), cfg.label_fraction, cfg.label_seed)


def calibrate_detector(model, task, samples, device, cfg: FinetuneConfig, log: Callable[[str], None] = print) -> dict:
    """Fit the per-class score calibration and the default score threshold on held-out real frames.

    Detections are decoded without a threshold (raw peak probabilities), labelled TP / FP against label_2
    in the camera view (ros_ncal.eval.det_calibration), a Platt mapping is fitted per class with at least
    one TP and one FP, and the threshold is the best-F1 one with at most ``calibration.max_fp_per_frame``
    false positives per frame. Sets them on ``model.head.cfg`` and returns them (with the fit's data)."""
    from ros_ncal.eval.det_calibration import choose_threshold, fit_platt, in_camera, label_detections
    head = model.head
    saved = dict(head.cfg.score_calibration)
    head.cfg.score_calibration = {}
    model.eval()
    dets = task.detect(model, samples, device, cfg.eval_batch_size, score_threshold=0.02)
    names = head.cfg.class_names
    rows = []   # (frame, class, raw score, outcome)
    num_gt = 0
    for s, d in zip(samples, dets):
        fov = in_camera(d['boxes'], s.camera)
        gt_fov = in_camera(s.boxes, s.camera) & head.cfg.boxes_in_range(s.boxes)
        num_gt += int(gt_fov.sum())
        out = label_detections(d['boxes'][fov], d['scores'][fov], d['labels'][fov], s.boxes[gt_fov],
                               s.box_labels[gt_fov], ignore_boxes=s.ignore_boxes)
        rows += [(s.scene, int(c), float(p), int(o)) for c, p, o in zip(d['labels'][fov], d['scores'][fov], out)]
    calib = {}
    for c, name in enumerate(names):
        r = [(p, o) for _, cc, p, o in rows if cc == c and o >= 0]
        if any(o == 1 for _, o in r) and any(o == 0 for _, o in r):
            calib[name] = list(fit_platt([p for p, _ in r], [o for _, o in r], prior=float(cfg.calibration.get('prior', 1.0))))
    head.cfg.score_calibration = calib or saved
    cal_scores = head.calibrate_scores(np.array([p for _, _, p, _ in rows]), np.array([c for _, c, _, _ in rows]))
    thr = choose_threshold(cal_scores, [o for *_, o in rows], [f for f, *_ in rows], num_gt, len(samples),
                           float(cfg.calibration.get('max_fp_per_frame', 1.0)))
    head.cfg.score_threshold = thr['threshold']
    log(f'calibration on {len(samples)} held-out frame(s) ({[s.scene for s in samples]}): {len(rows)} detections, '
        f'{num_gt} labelled boxes; Platt {calib}; threshold {thr}')
    return {'frames': [s.scene for s in samples], 'score_calibration': head.cfg.score_calibration,
            'score_threshold': thr['threshold'], 'threshold_choice': thr, 'detections': len(rows)}


@dataclass
class FinetuneResult:
    run_name: str
    metrics: dict
    losses: list                  # training loss per step
    checkpoint: str | None
    summary_path: str | None
    pretrained_report: dict | None
    num_labelled_samples: int
    labelled_scenes: list
    seconds: float


def finetune(cfg: FinetuneConfig, train_samples=None, eval_samples=None, log: Callable[[str], None] = print,
             save: bool = True, evaluate: bool = True, train_is_labelled: bool = False,
             num_train_total: int | None = None) -> FinetuneResult:
    """Fine-tune (or linear-probe) one task; returns metrics, loss history and the checkpoint path.

    train_samples / eval_samples: preloaded TaskSample lists (tests, sweeps); by default they are loaded
    from ``cfg.data``. ``train_is_labelled``: train_samples already are the labelled subset (the label
    fraction is not applied again; ``num_train_total`` is then only reported).
    """
    validate_config(cfg)
    cfg = copy.deepcopy(cfg)   # the calibration writes into cfg.head; the caller's config stays as given
    t0 = time.time()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = resolve_device(cfg.device)
    real = cfg.real
    use_real = bool(real.kind)
    real_train: list = []
    if use_real and train_samples is None:
        real_train = load_real_samples(real, cfg.data, 'train', log)
        if not real_train:
            raise ValueError('real.kind is set but real.train_frames is empty')
    if train_samples is None and use_real and real.weight >= 1.0:
        labelled, n_train = [], 0
    elif train_samples is None:
        labelled = load_labelled_samples(cfg, log)
        n_train = int(cfg.data.train_indices[1]) - int(cfg.data.train_indices[0])
    elif train_is_labelled:
        labelled = list(train_samples)
        n_train = num_train_total if num_train_total is not None else len(labelled)
    else:
        labelled = labelled_subset(train_samples, cfg.label_fraction, cfg.label_seed)
        n_train = len(train_samples)
    real_train = real_train or [s for s in labelled if s.real]
    synth = [s for s in labelled if not s.real]
    labelled = real_train + synth
    if not labelled:
        raise ValueError('no labelled training samples')
    p_real = (0.0 if not real_train else 1.0 if not synth else float(real.weight))
    gt_db = None
    if cfg.task == 'det' and cfg.augment.gt_sampling and real_train:
        gt_db = GTDatabase(real_train)
        log(f'GT database: {len(gt_db)} objects from {len(real_train)} real frames, per class {gt_db.counts()}')
    if real_train:
        log(f'{len(real_train)} real + {len(synth)} synthetic training samples; a batch element is real with '
            f'probability {p_real:g}')
    scenes = list(dict.fromkeys(s.scene for s in labelled))
    log(f'{cfg.task}: {len(labelled)} labelled of {n_train} training samples '
        f'({len(scenes)} scene(s), fraction {cfg.label_fraction}, label seed {cfg.label_seed})')

    model, task, bcfg, report = build_task_model(cfg, log)
    stats = task.fit_statistics(labelled)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.linear_probe:
        before = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    opt = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    o = cfg.optim
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cosine_schedule(s, o.steps, o.warmup_frac, o.min_lr_ratio))
    if getattr(task, 'weights', None) is not None:
        task.weights = task.weights.to(device)

    losses = []
    model.train()
    t_train = time.time()
    for step in range(o.steps):
        if o.time_budget_s > 0 and step > 0 and time.time() - t_train > o.time_budget_s:
            log(f'time budget {o.time_budget_s:g} s reached after {step} of {o.steps} steps: stopping here')
            break
        batch = []
        for _ in range(o.batch_size):
            pool = real_train if (real_train and (not synth or rng.random() < p_real)) else synth
            batch.append(augment(pool[int(rng.integers(len(pool)))], cfg.augment, rng, gt_db))
        out = task.loss(model, batch, device)
        loss = out['loss']
        if not torch.isfinite(loss):
            raise FloatingPointError(f'non-finite loss {loss.item()} at step {step}')
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if o.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.item()))
        if cfg.log_every and (step % cfg.log_every == 0 or step == o.steps - 1):
            parts = ' '.join(f'{k} {float(v):.4f}' for k, v in out.items() if k != 'loss')
            log(f'step {step + 1}/{o.steps} loss {losses[-1]:.4f} {parts} lr {sched.get_last_lr()[0]:.2e}')

    if cfg.linear_probe:
        after = model.backbone.state_dict()
        changed = [k for k, v in before.items() if not torch.equal(v, after[k].detach().cpu().to(v.device))]
        if changed:
            raise RuntimeError(f'linear probing changed backbone tensors: {changed[:5]}')

    calibration = None
    if cfg.task == 'det' and use_real and real.calib_frames and evaluate:
        calibration = calibrate_detector(model, task, load_real_samples(real, cfg.data, 'calib', log), device, cfg, log)
        cfg.head = dict(cfg.head, score_calibration=calibration['score_calibration'],
                        score_threshold=calibration['score_threshold'])
    metrics = {}
    if evaluate:
        if eval_samples is None:
            eval_samples = (load_real_samples(real, cfg.data, 'eval', log) if use_real and real.eval_frames
                            else load_task_samples(cfg.data, 'eval', progress=log))
        model.eval()
        metrics = task.evaluate(model, eval_samples, device, cfg.eval_batch_size)
        log(f'{cfg.task} eval on {len(eval_samples)} samples: {task.main_metric} = {metrics.get(task.main_metric)}')

    run = cfg.resolved_run_name()
    ckpt_path = summary_path = None
    if save:
        from ros_ncal.models.checkpoint import save_checkpoint
        out_dir = Path(cfg.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model_cfg = {'type': FINETUNED_MODEL_TYPE, 'task': cfg.task, 'backbone': bcfg, 'head': copy.deepcopy(cfg.head),
                     'linear_probe': cfg.linear_probe, 'finetune': to_jsonable(asdict(cfg))}
        ckpt_path = str(save_checkpoint(out_dir / f'{run}.pt', model.state_dict(), model_cfg,
                                        extra={'metrics': to_jsonable(metrics), 'steps': o.steps}))
        summary = {'run': run, 'task': cfg.task, 'main_metric': task.main_metric,
                   'main_value': metrics.get(task.main_metric), 'metrics': metrics,
                   'label_fraction': cfg.label_fraction, 'labelled_samples': len(labelled),
                   'labelled_scenes': scenes, 'seed': cfg.seed, 'pretrained': cfg.pretrained,
                   'pretrained_report': report, 'linear_probe': cfg.linear_probe, 'steps': o.steps,
                   'final_loss': losses[-1], 'first_loss': losses[0], 'statistics': stats,
                   'seconds': time.time() - t0, 'config': asdict(cfg), 'checkpoint': ckpt_path,
                   'real_train_frames': [s.scene for s in real_train], 'calibration': calibration}
        summary_path = str(out_dir / f'{run}.json')
        with open(summary_path, 'w') as f:
            json.dump(to_jsonable(summary), f, indent=2)
    return FinetuneResult(run, metrics, losses, ckpt_path, summary_path, report, len(labelled), scenes,
                          time.time() - t0)


def load_finetuned(path: str | Path, map_location: str | torch.device = 'cpu'):
    """Rebuild a fine-tuned model from its checkpoint -> (TaskModel in eval mode, task adapter, payload)."""
    model, _, payload = load_task_model(path, map_location)
    mcfg = payload['config']
    return model, make_task(mcfg['task'], mcfg.get('head')), payload
