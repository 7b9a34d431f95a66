"""Fine-tuning cost per task: one training step (backbone + head, forward + backward + AdamW) and one
inference pass per cloud, against the backbone alone measured in the same run (the baseline).

    .venv/bin/python bench/bench_finetune.py [--points 20000] [--batch 2] [--reps 5] [--threads 1]

Prints seconds per step and the ratio to the backbone-only step: the head's overhead.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ros_ncal.data.synthetic import SyntheticConfig, SyntheticWorld
from ros_ncal.train.downstream_data import DataConfig, to_task_sample
from ros_ncal.train.downstream_tasks import TaskModel, make_task
from ros_ncal.models.registry import build_model

BACKBONE = {'type': 'MinkUNet', 'depth': 14, 'in_channels': 1, 'input_features': 'intensity', 'out_dim': 64,
            'width': 0.25, 'voxel_size': 0.1}


def timed(fn, reps):
    fn()  # warm-up (kernel maps, allocator)
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def train_step(task, model, opt, batch, device):
    """-> a function doing one training step of ``model`` (full fine-tuning or a linear probe) on ``batch``."""
    def step():
        model.train()
        loss = task.loss(model, batch, device)['loss']
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--points', type=int, default=20000, help='points per cloud after cropping to +-32 m')
    ap.add_argument('--batch', type=int, default=2)
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--device', default='cpu')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wc = SyntheticConfig()
    wc.camera.shadows = False
    world = SyntheticWorld(wc)
    dc = DataConfig(max_points=args.points)
    batch = [to_task_sample(world.sample(i), i, dc) for i in range(args.batch)]
    print(f'device {device}, threads {args.threads}, batch {args.batch} x {len(batch[0].points)} points, '
          f'MinkUNet14 width 0.25, voxel 0.1 m; median of {args.reps}')

    torch.manual_seed(0)
    backbone = build_model(BACKBONE).to(device)
    pts = [torch.from_numpy(s.points).to(device) for s in batch]

    def backbone_step():
        backbone.zero_grad(set_to_none=True)
        torch.cat(backbone(pts)).square().mean().backward()

    base = timed(backbone_step, args.reps)
    print(f'{"backbone only (baseline)":32s} train step {base:7.3f} s   ratio 1.00')
    for name, head_cfg in (('seg', {}), ('det', {'cell_size': 0.5, 'x_range': [-32, 32], 'y_range': [-32, 32]}),
                           ('panoptic', {})):
        task = make_task(name, head_cfg)
        model = TaskModel(build_model(BACKBONE), task.build_head(64), name).to(device)
        if hasattr(task, 'fit_statistics'):
            task.fit_statistics(batch)
            if getattr(task, 'weights', None) is not None:
                task.weights = task.weights.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        t_step = timed(train_step(task, model, opt, batch, device), args.reps)
        model.eval()
        t_eval = timed(lambda: task.evaluate(model, batch, device, args.batch), args.reps) / args.batch
        print(f'{name + " (backbone + head)":32s} train step {t_step:7.3f} s   ratio {t_step / base:5.2f}   '
              f'inference + metric {t_eval:6.3f} s / cloud')
        probe = TaskModel(build_model(BACKBONE), task.build_head(64), name, freeze_backbone=True).to(device)
        popt = torch.optim.AdamW([p for p in probe.parameters() if p.requires_grad], lr=1e-3)
        t_probe = timed(train_step(task, probe, popt, batch, device), args.reps)
        print(f'{name + " linear probe":32s} train step {t_probe:7.3f} s   ratio {t_probe / base:5.2f}')


if __name__ == '__main__':
    np.set_printoptions(precision=3)
    main()
