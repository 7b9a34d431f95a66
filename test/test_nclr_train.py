"""NCLR network + pretraining: learns on a fixed item, resumes after interruption, runs under torchrun (gloo)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ros_ncal.data.readers.kitti import read_kitti_frame
from ros_ncal.models.checkpoint import load_checkpoint
from ros_ncal.nclr.batching import items_to_batch
from ros_ncal.nclr.config import NCLRConfig
from ros_ncal.nclr.losses import nclr_losses
from ros_ncal.nclr.network import NCLRNet
from ros_ncal.nclr.pretext import make_pretext

from support import TINY

REPO = Path(__file__).resolve().parents[1]


def _tiny_cfg(tmp_path, kitti_dir, **train):
    over = {'train': {'out_dir': str(tmp_path / 'run'),
                      'data': {'sources': [{'kind': 'kitti', 'root': str(kitti_dir / 'training')}]}, **train}}
    return NCLRConfig.from_yaml(TINY, over)


def test_network_learns_a_fixed_pretext_item(kitti_dir):
    torch.manual_seed(0)
    cfg = NCLRConfig.from_yaml(TINY)
    s = read_kitti_frame(kitti_dir / 'training', '000001')
    items = [make_pretext(s, np.random.default_rng(i), cfg.perturbation, cfg.input) for i in range(2)]
    batch = items_to_batch(items)
    net = NCLRNet(cfg.network)
    opt = torch.optim.AdamW(net.parameters(), 3e-3)
    losses = []
    for step in range(12):
        out = net(batch['points'], batch['images'])
        loss, sc = nclr_losses(out, batch, cfg.loss, cfg.network, step, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(sc['loss_overlap'] + sc['loss_match'])
        assert all(np.isfinite(v) for v in sc.values())
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:2])


def test_cosine_ablation_builds_and_runs():
    cfg = NCLRConfig.from_yaml(TINY, {'network': {'alignment': 'cosine'}})
    net = NCLRNet(cfg.network)
    out = net([torch.rand(300, 4) * 10], torch.rand(1, 3, 48, 160))
    assert out['pixel_emb'][0].shape[1] == out['point_emb'][0].shape[1]


def test_pretrain_resumes_and_exports(tmp_path, kitti_dir):
    from ros_ncal.train.pretrain import load_nclr, pretrain
    cfg = _tiny_cfg(tmp_path, kitti_dir, steps=3)
    pretrain(cfg, device='cpu', progress=False)
    assert load_checkpoint(tmp_path / 'run' / 'last.pt')['extra']['step'] == 3
    cfg = _tiny_cfg(tmp_path, kitti_dir, steps=5)
    res = pretrain(cfg, device='cpu', progress=False)
    steps = [json.loads(line)['step'] for line in (tmp_path / 'run' / 'log.jsonl').read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4]  # resumed at 3, nothing repeated
    model, cfg2, _ = load_nclr(res['nclr'])
    assert cfg2.network.embed_dim == 32
    bb = load_checkpoint(res['backbone'])
    assert bb['config']['type'] == 'MinkUNet'
    assert any(k.startswith('backbone.') for k in bb['model_state'])
    assert list((tmp_path / 'run' / 'tb').glob('events.*'))


def test_pretrain_under_torchrun_gloo(tmp_path, kitti_dir):
    cfg_path = tmp_path / 'cfg.yaml'
    cfg_path.write_text(f"""_base_: {TINY}
train:
  steps: 2
  out_dir: {tmp_path / 'ddp'}
  data: {{sources: [{{kind: kitti, root: {kitti_dir / 'training'}}}]}}
""")
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '-m', 'ros_ncal.cli',
           'pretrain', str(cfg_path), '--device', 'cpu']
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / 'ddp' / 'nclr.pt').is_file()


def test_threads_option_reaches_the_train_config():
    import argparse

    from ros_ncal.commands.pretrain import add_arguments, parse_overrides
    from ros_ncal.nclr.config import NCLRConfig
    from ros_ncal.train.pretrain import pretrain
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(['config/nclr/tiny_test.yaml', '--threads', '1', '--steps', '3'])
    cfg = NCLRConfig.from_yaml(args.config, parse_overrides(args))
    assert cfg.train.num_threads == 1 and cfg.train.steps == 3
    assert NCLRConfig.from_yaml('config/nclr/tiny_test.yaml').train.num_threads == 0
    bad = NCLRConfig.from_yaml(args.config, {'train': {'num_threads': -2}})
    with pytest.raises(ValueError, match='num_threads'):
        pretrain(bad, device='cpu')


def test_one_schedule_for_pretraining_and_finetuning():
    """ros_ncal.train.schedule.warmup_cosine: linear warm-up to 1, cosine to min_ratio, flat after the end."""
    from ros_ncal.train.finetune import cosine_schedule
    from ros_ncal.train.pretrain import lr_factor
    from ros_ncal.train.schedule import warmup_cosine
    assert [warmup_cosine(s, 10, 4, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(4, 10, 4, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(7, 10, 4, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(10, 10, 4, 0.1) == pytest.approx(0.1) == warmup_cosine(50, 10, 4, 0.1)
    assert cosine_schedule(0, 100, 0.0, 0.01) == pytest.approx(1.0)        # fine-tuning: no warm-up when 0
    assert lr_factor(0, 100, 0.0, 0.01) == pytest.approx(1.0)              # pretraining: at least one step
    assert cosine_schedule(1, 100, 0.05, 0.01) == lr_factor(1, 100, 0.05, 0.01) == pytest.approx(2 / 5)
