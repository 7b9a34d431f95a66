"""The NCLR network: point and pixel features, learnable transformation alignment (LTA), overlap heads
and soft matching. The differentiable PnP on top lives in :mod:`ros_ncal.nclr.pose`.

Learnable transformation alignment (our design; the paper's exact form is not public):
1. modality-specific projectors map raw point features (MinkUNet) and pixel features (ResNet-FPN)
   into a common width E (MLP with LayerNorm on points, 1x1 conv MLP with GroupNorm on pixels);
2. a cross-modal exchange: points attend to a pooled grid of image tokens, pixels attend to a
   subset of point tokens (one multi-head attention each way, residual), so each side is
   expressed relative to the other modality before comparison;
3. a learned linear transformation per modality into the shared matching space, then L2
   normalisation; similarity = dot product / temperature (learnable).
``alignment: cosine`` is the ablation: raw features, L2 normalised, compared directly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ros_ncal.models import MinkUNet, ResNetFPN

from .config import NetworkConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LearnableTransformationAlignment(nn.Module):
    """Maps point features (N, Dp) and pixel features (Di, h, w) into one matching space (E)."""

    def __init__(self, point_dim: int, pixel_dim: int, embed_dim: int, tokens_hw: tuple[int, int],
                 heads: int = 4, max_point_tokens: int = 512):
        super().__init__()
        E = embed_dim
        self.point_proj = nn.Sequential(nn.Linear(point_dim, E), nn.LayerNorm(E), nn.GELU(), nn.Linear(E, E))
        self.pixel_proj = nn.Sequential(nn.Conv2d(pixel_dim, E, 1), nn.GroupNorm(8, E), nn.GELU(), nn.Conv2d(E, E, 1))
        self.tokens_hw = tuple(tokens_hw)
        self.p2i = nn.MultiheadAttention(E, heads, batch_first=True)
        self.i2p = nn.MultiheadAttention(E, heads, batch_first=True)
        self.norm_p = nn.LayerNorm(E)
        self.norm_i = nn.LayerNorm(E)
        self.point_map = nn.Linear(E, E)
        self.pixel_map = nn.Linear(E, E)
        self.max_point_tokens = max_point_tokens

    def forward(self, fp: torch.Tensor, fi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """fp: (N, Dp), fi: (Di, h, w) -> aligned points (N, E), aligned pixels (h*w, E) (unit norm),
        and the pre-normalisation fused features (N, E), (h*w, E) for the overlap heads."""
        p = self.point_proj(fp)
        q_map = self.pixel_proj(fi[None])  # (1, E, h, w)
        q = q_map.flatten(2).transpose(1, 2)[0]  # (h*w, E)
        tokens = F.adaptive_avg_pool2d(q_map, self.tokens_hw).flatten(2).transpose(1, 2)  # (1, T, E)
        if p.shape[0] > 0:
            ctx_p, _ = self.p2i(self.norm_p(p)[None], tokens, tokens, need_weights=False)
            p = p + ctx_p[0]
            step = max(1, math.ceil(p.shape[0] / self.max_point_tokens))
            ptok = self.norm_p(p[::step])[None]
            ctx_q, _ = self.i2p(self.norm_i(q)[None], ptok, ptok, need_weights=False)
            q = q + ctx_q[0]
        a_p = F.normalize(self.point_map(p), dim=-1)
        a_q = F.normalize(self.pixel_map(q), dim=-1)
        return a_p, a_q, p, q


class CosineAlignment(nn.Module):
    """Ablation: raw features compared by cosine similarity (as in contrastive image-to-point methods)."""

    def __init__(self, point_dim: int, pixel_dim: int, embed_dim: int):
        super().__init__()
        if point_dim != pixel_dim:
            raise ValueError('cosine alignment needs equal point and pixel feature dims')

    def forward(self, fp, fi):
        q = fi.flatten(1).t()
        return F.normalize(fp, dim=-1), F.normalize(q, dim=-1), fp, q


class NCLRNet(nn.Module):
    """Point/pixel features -> alignment -> overlap logits; soft matching via :meth:`match`.

    forward(points_list, images) with points_list: list of B tensors (Ni, 4) xyz+intensity in the
    input frame, images: (B, 3, H, W) float in [0, 1]. Returns a dict of per-sample lists:
    'point_emb' (Ni, E) unit vectors, 'pixel_emb' (h*w, E) unit vectors, 'point_overlap' (Ni,) logits,
    'pixel_overlap' (h, w) logits, and 'feat_hw' (h, w), 'stride', 'temperature' (scalar tensor; every
    parameter is used inside forward, as DDP requires). Matching: :func:`soft_match`.
    """

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg
        self.point_net = MinkUNet(**cfg.point_backbone)
        self.image_net = ResNetFPN(**cfg.image_backbone)
        Dp, Di, E = self.point_net.out_dim, self.image_net.out_dim, cfg.embed_dim
        if cfg.alignment == 'lta':
            self.align = LearnableTransformationAlignment(Dp, Di, E, tuple(cfg.attention_tokens))
            head_dim = E
        elif cfg.alignment == 'cosine':
            self.align = CosineAlignment(Dp, Di, E)
            head_dim = Dp
        else:
            raise ValueError(f"alignment must be 'lta' or 'cosine', got {cfg.alignment!r}")
        self.point_overlap = nn.Sequential(nn.Linear(head_dim, E), nn.GELU(), nn.Linear(E, 1))
        self.pixel_overlap = nn.Sequential(nn.Linear(head_dim, E), nn.GELU(), nn.Linear(E, 1))
        tau = torch.tensor(math.log(cfg.temperature))
        if cfg.learn_temperature:
            self.log_tau = nn.Parameter(tau)
        else:
            self.register_buffer('log_tau', tau)
        self.register_buffer('img_mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer('img_std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def stride(self) -> int:
        return self.image_net.stride

    def temperature(self) -> torch.Tensor:
        return self.log_tau.exp().clamp(1e-3, 1.0)

    def forward(self, points_list: list[torch.Tensor], images: torch.Tensor) -> dict:
        fpix = self.image_net((images - self.img_mean) / self.img_std)  # (B, Di, h, w)
        fpts = self.point_net(points_list)
        h, w = fpix.shape[-2:]
        out = {'point_emb': [], 'pixel_emb': [], 'point_overlap': [], 'pixel_overlap': [], 'feat_hw': (h, w),
               'stride': self.stride, 'temperature': self.temperature()}
        for b, fp in enumerate(fpts):
            a_p, a_q, p, q = self.align(fp, fpix[b])
            out['point_emb'].append(a_p)
            out['pixel_emb'].append(a_q)
            out['point_overlap'].append(self.point_overlap(p)[:, 0])
            out['pixel_overlap'].append(self.pixel_overlap(q)[:, 0].view(h, w))
        return out



def guess_cells(points_xyz: torch.Tensor, K: torch.Tensor, stride: int) -> torch.Tensor:
    """Where the points project with the input guess (the cloud is in the guessed camera frame),
    in feature cells: (N, 3) points, (3, 3) K -> (N, 2) (x, y) cell coordinates (points behind the
    camera get a far-away centre, so their window is empty of real pixels and they are down-weighted)."""
    z = points_xyz[:, 2:3]
    uv = (points_xyz[:, :2] / z.clamp_min(1e-3)) * torch.stack([K[0, 0], K[1, 1]]) + torch.stack([K[0, 2], K[1, 2]])
    cells = (uv + 0.5) / stride - 0.5
    return torch.where(z > 1e-3, cells, torch.full_like(cells, -1e4))


def soft_match(point_emb: torch.Tensor, pixel_emb: torch.Tensor, out: dict, center_cells: torch.Tensor | None = None,
               window: float = 0.0) -> dict:
    """Soft matching of K points against the pixels of one sample.

    With ``window > 0`` and ``center_cells`` (K, 2), each point only matches pixels within
    ``window`` cells (Chebyshev distance) of its projection with the input guess: the local-window
    scope for extrinsic refinement, where the error is bounded; otherwise all pixels (image-to-point).
    A point whose window holds no pixel gets uniform probabilities and a large spread (low weight).

    point_emb (K, E), pixel_emb (h*w, E), out: the forward dict (feat_hw, stride, temperature) ->
    'logits' (K, h*w), 'uv' (K, 2) expected pixel in the network image (cell centres at
    (j + 0.5) * stride - 0.5), 'spread' (K,) std of the match in cells, 'peak' (K,) max probability.
    """
    h, w = out['feat_hw']
    logits = point_emb @ pixel_emb.t() / out['temperature']
    ys, xs = torch.meshgrid(torch.arange(h, device=logits.device, dtype=logits.dtype),
                            torch.arange(w, device=logits.device, dtype=logits.dtype), indexing='ij')
    cells = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)  # (h*w, 2) in cells
    if window > 0 and center_cells is not None:
        d = (cells[None] - center_cells[:, None].to(cells.dtype)).abs().amax(-1)  # (K, h*w)
        inside = d <= window
        empty = ~inside.any(-1, keepdim=True)
        logits = logits.masked_fill(~(inside | empty), float('-inf'))
    prob = logits.softmax(-1)
    mean = prob @ cells
    var = (prob @ (cells * cells)) - mean * mean
    spread = var.clamp_min(0).sum(-1).sqrt()
    uv = (mean + 0.5) * out['stride'] - 0.5
    return {'logits': logits, 'uv': uv, 'spread': spread, 'peak': prob.max(-1).values}
