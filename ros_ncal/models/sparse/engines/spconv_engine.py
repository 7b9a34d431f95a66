"""Optional engine: submanifold convolution through spconv 2.x (imported only when requested).

Known CPU traps (docs/design.md, "Machine learning environment"): backward needs ``get_current_stream`` patched to return 0 on CPU-only torch;
spconv's CPU submanifold conv is wrong with more than one thread, so CPU calls run with one torch thread;
the spatial shape is rounded up to even. Strided / transposed convs use the torch engine.
"""
from __future__ import annotations

import contextlib

import torch

import spconv.pytorch as spconv  # noqa: E402  (raises ImportError when absent)
from spconv.pytorch import cppcore as _cppcore
from spconv.pytorch import hash as _sphash
from spconv.pytorch import ops as _spops

from ..tensor import SparseTensor
from .torch_engine import TorchEngine

if not torch.cuda.is_available():
    def _cpu_stream() -> int:
        return 0
    for _mod in (_cppcore, _spops, _sphash):
        if hasattr(_mod, 'get_current_stream'):
            _mod.get_current_stream = _cpu_stream


@contextlib.contextmanager
def _single_thread(device: torch.device):
    if device.type != 'cpu':
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SpconvEngine(TorchEngine):
    """Same interface as TorchEngine; submanifold conv runs in spconv."""
    name = 'spconv'
    # spconv's CPU submanifold conv is wrong with several threads; False only to demonstrate that (bench).
    force_single_thread = True

    def _spconv_template(self, x: SparseTensor):
        key = ('spconv', x.stride)
        tmpl = x.cache.get(key)
        if tmpl is None or tmpl[0].indices.shape[0] != x.num_voxels:
            c = x.coords
            lo = c[:, 1:].min(dim=0).values
            idx = torch.cat([c[:, :1], c[:, 1:] - lo], dim=1).to(torch.int32).contiguous()
            shape = (c[:, 1:].max(dim=0).values - lo + 1)
            shape = [int(s) + int(s) % 2 for s in shape]  # even spatial shape, or edge voxels are dropped
            st = spconv.SparseConvTensor(x.feats.new_zeros(x.num_voxels, 1), idx, shape, x.batch_size)
            tmpl = x.cache.put(key, (st,))
        return tmpl[0]

    def submanifold_conv(self, x: SparseTensor, weight: torch.Tensor, kernel_size: int = 3,
                         dilation: int = 1) -> SparseTensor:
        if kernel_size == 1:
            return x.replace_feats(x.feats @ weight[0])
        k = kernel_size
        K, cin, cout = weight.shape
        conv = spconv.SubMConv3d(cin, cout, k, dilation=dilation, bias=False,
                                 indice_key=f'subm_s{x.stride}_k{k}_d{dilation}').to(weight.device)
        del conv.weight
        conv.weight = weight.permute(2, 0, 1).reshape(cout, k, k, k, cin).contiguous()  # KRSC layout
        tmpl = self._spconv_template(x)
        guard = _single_thread(x.feats.device) if self.force_single_thread else contextlib.nullcontext()
        with guard:
            out = conv(tmpl.replace_feature(x.feats))
        # spconv keeps the indice dict on the output; store it back so later layers reuse it.
        tmpl.indice_dict = out.indice_dict
        return x.replace_feats(out.features)
