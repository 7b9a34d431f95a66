"""NCLR pretraining: the 2D-3D calibration pretext task, end to end.

Runs unchanged on one CPU, one GPU, or many GPUs and nodes under ``torchrun`` (DDP: gloo on CPU,
nccl on CUDA). Mixed precision (bfloat16 autocast) on CUDA only. Progress bar and TensorBoard
scalars on rank 0; checkpoints written atomically every ``ckpt_every`` steps and resumed
automatically after a kill; at the end the full model (``nclr.pt``, used by the calibrator) and the
3D backbone alone (``backbone.pt``, for fine-tuning) are exported.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from ros_ncal.models.checkpoint import load_checkpoint, save_checkpoint
from ros_ncal.nclr.batching import items_to_batch
from ros_ncal.nclr.checkpoint import NCLR_MODEL_TYPE, load_nclr, save_nclr  # noqa: F401 (re-exported)
from ros_ncal.nclr.config import NCLRConfig
from ros_ncal.nclr.losses import nclr_losses
from ros_ncal.nclr.network import NCLRNet

from .schedule import warmup_cosine
from ros_ncal.nclr.pretext import make_pretext
from ros_ncal.nclr.sources import MixedSource

from .distributed import all_reduce_mean, cleanup_distributed, setup_distributed

LOG_KEYS = ('loss', 'loss_overlap', 'loss_match', 'loss_match_l1', 'loss_pose', 'overlap_acc', 'rre_deg', 'rte_m',
            'skipped')


def lr_factor(step: int, total: int, warmup_frac: float, min_frac: float) -> float:
    """:func:`ros_ncal.train.schedule.warmup_cosine` with a warm-up of at least one step."""
    return warmup_cosine(step, total, max(1, int(total * warmup_frac)), min_frac)


def export_backbone(model: NCLRNet, cfg: NCLRConfig, path: Path, extra: dict | None = None) -> Path:
    """The pretrained MinkUNet alone, in the models' checkpoint format (fine-tuning loads it)."""
    bcfg = {'type': 'MinkUNet', **cfg.network.point_backbone}
    state = {f'backbone.{k}': v for k, v in model.point_net.state_dict().items()}
    return save_checkpoint(path, state, bcfg, {'source': 'nclr_pretrain', 'backbone_prefix': 'backbone.',
                                               **(extra or {})})


def check_train_config(tc) -> None:
    """ValueError naming the key for a training setting that cannot work (e.g. ``train.batch_size: 0``)."""
    for key in ('batch_size', 'steps', 'log_every', 'ckpt_every'):
        if getattr(tc, key) < 1:
            raise ValueError(f'train.{key} must be >= 1, got {getattr(tc, key)}')
    for key in ('num_threads', 'num_workers'):
        if getattr(tc, key) < 0:
            raise ValueError(f'train.{key} must be >= 0, got {getattr(tc, key)}')
    if not tc.lr > 0:
        raise ValueError(f'train.lr must be > 0, got {tc.lr}')


def pretrain(cfg: NCLRConfig, device: str = 'auto', resume: bool = True, progress: bool = True) -> dict:
    """Train NCLR on the pretext task; returns the final logged scalars and output paths."""
    tc = cfg.train
    check_train_config(tc)
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    info = setup_distributed(device)
    out_dir = Path(tc.out_dir)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / 'config.json').write_text(json.dumps(cfg.to_dict(), indent=2))
    torch.manual_seed(tc.seed + info.rank)
    model = NCLRNet(cfg.network).to(info.device)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    start_step = 0
    if tc.init_from:
        model.load_state_dict(load_checkpoint(tc.init_from, map_location=info.device)['model_state'])
    last = out_dir / 'last.pt'
    if resume and last.is_file():
        payload = load_checkpoint(last, map_location=info.device)
        model.load_state_dict(payload['model_state'])
        opt.load_state_dict(payload['extra']['optimizer'])
        start_step = int(payload['extra']['step'])
    ddp = DDP(model, find_unused_parameters=True) if info.enabled else model
    use_amp = tc.amp and info.device.type == 'cuda'
    source = MixedSource(tc.data['sources'] if 'sources' in tc.data else [tc.data], info.rank, info.world_size)

    writer = None
    if info.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out_dir / 'tb'))
        except Exception as exc:  # tensorboard missing is not fatal
            print(f'tensorboard disabled: {exc}')
    bar = None
    if info.is_main and progress:
        from tqdm import tqdm
        bar = tqdm(total=tc.steps, initial=start_step, desc='nclr pretrain', unit='step', dynamic_ncols=True)
    log_path = out_dir / 'log.jsonl'
    scalars: dict = {}
    t0 = time.time()
    for step in range(start_step, tc.steps):
        rng = np.random.default_rng([tc.seed, info.rank, step])
        items = [make_pretext(source.draw(rng), rng, cfg.perturbation, cfg.input, step) for _ in range(tc.batch_size)]
        batch = items_to_batch(items, info.device)
        for g in opt.param_groups:
            g['lr'] = tc.lr * lr_factor(step, tc.steps, tc.warmup_fraction, tc.min_lr_fraction)
        amp = torch.autocast('cuda', dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()
        with amp:
            out = ddp(batch['points'], batch['images'])
        out = {k: ([x.float() for x in v] if isinstance(v, list) else v) for k, v in out.items()}
        loss, sc = nclr_losses(out, batch, cfg.loss, cfg.network, step,
                               generator=torch.Generator().manual_seed(step))
        opt.zero_grad(set_to_none=True)
        skipped = 1.0
        if torch.isfinite(loss):
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            if torch.isfinite(gnorm):  # a non-finite gradient skips the update (counted), never poisons weights
                opt.step()
                skipped = 0.0
        sc['skipped'] = skipped
        sc = {k: float(sc.get(k, 0.0)) for k in LOG_KEYS}
        sc = all_reduce_mean(sc, info)
        scalars = sc
        if info.is_main:
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sc['loss']:.3f}", ovl=f"{sc['overlap_acc']:.2f}", rre=f"{sc['rre_deg']:.2f}")
            if step % tc.log_every == 0 or step == tc.steps - 1:
                rec = {'step': step, 'lr': opt.param_groups[0]['lr'], 'elapsed_s': round(time.time() - t0, 1), **sc}
                with open(log_path, 'a') as fh:
                    fh.write(json.dumps(rec) + '\n')
                if writer is not None:
                    for k, v in sc.items():
                        writer.add_scalar(f'pretrain/{k}', v, step)
                    writer.add_scalar('pretrain/lr', rec['lr'], step)
            if (step + 1) % tc.ckpt_every == 0 or step == tc.steps - 1:
                save_checkpoint(last, model.state_dict(), {'type': NCLR_MODEL_TYPE, 'nclr': cfg.to_dict()},
                                {'optimizer': opt.state_dict(), 'step': step + 1})
    result = {'scalars': scalars, 'out_dir': str(out_dir)}
    if info.is_main:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        result['nclr'] = str(save_nclr(model, cfg, out_dir / 'nclr.pt', {'steps': tc.steps}))
        result['backbone'] = str(export_backbone(model, cfg, out_dir / 'backbone.pt', {'steps': tc.steps}))
    cleanup_distributed()
    return result
