"""Sparse tensor, voxelization and the sparse conv engines against dense conv3d / conv_transpose3d."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ros_ncal.models.sparse import (SparseBatchNorm, SparseDownConv3d, SparseTensor, SparseUpConv3d, SubMConv3d,
                                    devoxelize, get_engine, pack_keys, unpack_keys, voxelize)
from ros_ncal.models.sparse.engines import EngineUnavailableError, native
from ros_ncal.models.sparse.engines import torch_engine

GRID = 8
# Every engine path is checked at one thread, two threads and all cores (deduplicated).
THREADS = sorted({1, 2, os.cpu_count() or 1})


pytestmark = pytest.mark.usefixtures('single_thread')   # conftest.py: one intra-op thread (many tiny ops)


@pytest.fixture
def pure_torch(monkeypatch):
    """Force the engine's pure-PyTorch path (as on CUDA, under autocast, or without a C++ compiler)."""
    monkeypatch.setattr(native, 'supports', lambda *tensors: False)


def random_sparse_grid(seed=0, batch=2, grid=GRID, occupancy=0.2, channels=3, offset=(0, 0, 0)):
    """Random occupied sites of a batch x grid^3 volume; coords (V, 4), feats (V, C) float64."""
    g = torch.Generator().manual_seed(seed)
    occ = torch.rand(batch, grid, grid, grid, generator=g) < occupancy
    coords = torch.nonzero(occ)
    coords[:, 1:] += torch.tensor(offset)
    feats = torch.randn(coords.shape[0], channels, generator=g, dtype=torch.float64)
    return coords, feats


def to_dense(coords, feats, batch, grid, offset=(0, 0, 0)):
    """Scatter sparse feats into a zero (B, C, grid, grid, grid) volume (differentiable in feats)."""
    c = coords.clone()
    c[:, 1:] -= torch.tensor(offset)
    dense = feats.new_zeros(batch, feats.shape[1], grid, grid, grid)
    dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = feats
    return dense


def at_sites(dense, coords, offset=(0, 0, 0)):
    c = coords.clone()
    c[:, 1:] -= torch.tensor(offset)
    return dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


def grads(out, inputs, seed=1):
    g = torch.Generator().manual_seed(seed)
    upstream = torch.randn(out.shape, generator=g, dtype=out.dtype)
    return torch.autograd.grad((out * upstream).sum(), inputs)


@pytest.mark.parametrize('threads', THREADS)
@pytest.mark.parametrize('kernel_size,dilation,offset', [(3, 1, (0, 0, 0)), (3, 2, (0, 0, 0)),
                                                         (3, 1, (-5, 3, -8)), (1, 1, (0, 0, 0))])
def test_submanifold_conv_matches_dense_forward_and_backward(kernel_size, dilation, offset, threads):
    torch.set_num_threads(threads)
    coords, feats = random_sparse_grid(offset=offset)
    feats.requires_grad_(True)
    conv = SubMConv3d(3, 5, kernel_size, dilation=dilation).double()
    out = conv(SparseTensor(coords, feats)).feats

    weight = conv.weight.detach().clone().requires_grad_(True)
    dense_w = weight.reshape(kernel_size, kernel_size, kernel_size, 3, 5).permute(4, 3, 0, 1, 2)
    feats_d = feats.detach().clone().requires_grad_(True)
    dense_out = F.conv3d(to_dense(coords, feats_d, 2, GRID, offset), dense_w,
                         padding=dilation * (kernel_size // 2), dilation=dilation)
    ref = at_sites(dense_out, coords, offset)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)

    g_feats, g_w = grads(out, [feats, conv.weight])
    r_feats, r_w = grads(ref, [feats_d, weight])
    torch.testing.assert_close(g_feats, r_feats, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_w, r_w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('threads', THREADS)
def test_downsample_and_transposed_conv_match_dense(threads):
    torch.set_num_threads(threads)
    coords, feats = random_sparse_grid(seed=3, offset=(-4, 2, 0))
    offset = (-4, 2, 0)  # even offset keeps the stride-2 grid aligned with the dense one
    feats.requires_grad_(True)
    down = SparseDownConv3d(3, 4).double()
    up = SparseUpConv3d(4, 2).double()
    x = SparseTensor(coords, feats)
    y = down(x)
    z = up(y)
    assert y.stride == 2 and z.stride == 1
    assert torch.equal(z.coords, x.coords), 'transposed conv must land on the finer cached coordinate set'
    expected_coarse = torch.unique(torch.cat([coords[:, :1], torch.div(coords[:, 1:], 2, rounding_mode='floor')],
                                             1), dim=0)
    assert torch.equal(y.coords, expected_coarse)

    wd = down.weight.detach().clone().requires_grad_(True)
    wu = up.weight.detach().clone().requires_grad_(True)
    feats_d = feats.detach().clone().requires_grad_(True)
    dense_y = F.conv3d(to_dense(coords, feats_d, 2, GRID, offset), wd.reshape(2, 2, 2, 3, 4).permute(4, 3, 0, 1, 2),
                       stride=2)
    half = tuple(o // 2 for o in offset)
    ref_y = at_sites(dense_y, y.coords, half)
    torch.testing.assert_close(y.feats, ref_y, rtol=1e-10, atol=1e-10)
    # transposed conv of the *sparse* coarse tensor (inactive coarse sites are zero)
    dense_y_sparse = to_dense(y.coords, ref_y, 2, GRID // 2, half)
    dense_z = F.conv_transpose3d(dense_y_sparse, wu.reshape(2, 2, 2, 4, 2).permute(3, 4, 0, 1, 2), stride=2)
    ref_z = at_sites(dense_z, coords, offset)
    torch.testing.assert_close(z.feats, ref_z, rtol=1e-10, atol=1e-10)

    mine = grads(z.feats, [feats, down.weight, up.weight])
    ref = grads(ref_z, [feats_d, wd, wu])
    for a, b in zip(mine, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_native_kernels_are_built_here():
    """The CPU fast path needs a C++ compiler (g++ is part of the set-up); its absence must be loud here."""
    assert native.available(), f'native sparse kernels unavailable: {native.unavailable_reason()}'


def _layer_stack_outputs(coords, feats, layers):
    f = feats.detach().clone().requires_grad_(True)
    out = layers(SparseTensor(coords, f)).feats
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    (out * upstream).sum().backward()
    grads_ = [f.grad] + [p.grad.clone() for p in layers.parameters()]
    layers.zero_grad(set_to_none=True)
    return [out.detach()] + grads_


def _odd_channel_stack(dtype):
    """Channel counts that exercise every column path of the kernels (4-vector blocks, single vectors,
    scalar remainders) and input channel counts that are odd and below one register tile."""
    torch.manual_seed(0)
    return torch.nn.Sequential(SubMConv3d(5, 37), SparseDownConv3d(37, 19), SubMConv3d(19, 40, dilation=2),
                               SparseUpConv3d(40, 3)).to(dtype)


def test_native_path_equals_pure_torch_path_float64(monkeypatch):
    """Larger than one OpenMP chunk (256 rows, 128-pair weight-gradient chunks), odd channel counts:
    native kernels against the gather-matmul-scatter path in float64, at every thread count."""
    coords, feats = random_sparse_grid(seed=11, grid=16, occupancy=0.4, channels=5)
    layers = _odd_channel_stack(torch.float64)
    with monkeypatch.context() as m:
        m.setattr(native, 'supports', lambda *tensors: False)
        ref = _layer_stack_outputs(coords, feats, layers)
    for threads in THREADS:
        torch.set_num_threads(threads)
        got = _layer_stack_outputs(coords, feats, layers)
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_native_results_are_bitwise_identical_for_any_thread_count():
    """Each output row / weight-gradient block is summed by one thread in a fixed order (float32)."""
    coords, feats = random_sparse_grid(seed=12, grid=16, occupancy=0.4, channels=5)
    layers = _odd_channel_stack(torch.float32)
    results = []
    for threads in THREADS + [1]:
        torch.set_num_threads(threads)
        results.append(_layer_stack_outputs(coords, feats.float(), layers))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize('threads', THREADS)
def test_pure_torch_path_matches_dense(pure_torch, threads):
    """The fallback (CUDA / autocast / no compiler) stays exact against dense conv3d too."""
    torch.set_num_threads(threads)
    test_submanifold_conv_matches_dense_forward_and_backward(3, 1, (-5, 3, -8), threads)
    test_downsample_and_transposed_conv_match_dense(threads)


def test_kernel_map_csr_layouts():
    """The CSR derived from a map lists exactly the map's pairs, grouped by destination row."""
    coords, feats = random_sparse_grid(seed=13)
    x = SparseTensor(coords, feats)
    SubMConv3d(3, 3).double()(x)
    SparseDownConv3d(3, 3).double()(x)
    for key, kmap in x.cache.entries.items():
        if key[0] != 'kmap':
            continue
        kmap = kmap[1] if isinstance(kmap, tuple) else kmap
        want = {(int(i), int(o), k) for k in range(kmap.num_offsets)
                for i, o in zip(kmap.in_idx[k].tolist(), kmap.out_idx[k].tolist())}
        for by_out in (True, False):
            rowptr, col, koff = torch_engine._csr(kmap, by_out)
            rows = torch.repeat_interleave(torch.arange(rowptr.numel() - 1), rowptr.diff()).tolist()
            got = {((c, r, k) if by_out else (r, c, k)) for r, c, k in zip(rows, col.tolist(), koff.tolist())}
            assert got == want and len(rows) == len(want), (key, by_out)


def test_kernel_maps_are_cached_per_stride_and_shared():
    coords, feats = random_sparse_grid(seed=4)
    x = SparseTensor(coords, feats.float())
    a = SubMConv3d(3, 3)
    b = SubMConv3d(3, 3)
    y = b(a(x))
    kmaps = [k for k in x.cache.entries if k[0] == 'kmap']
    assert kmaps == [('kmap', 1, 3, 1, 'subm')]
    assert y.cache is x.cache
    kmap = x.cache.get(kmaps[0])
    # symmetric maps: offset k and its mirror have swapped pairs; the centre is the identity
    assert torch.equal(kmap.in_idx[0], kmap.out_idx[26]) and torch.equal(kmap.out_idx[0], kmap.in_idx[26])
    assert torch.equal(kmap.in_idx[13], torch.arange(x.num_voxels))
    # brute-force neighbour count check
    c = coords
    diff = (c[:, None, 1:] - c[None, :, 1:]).abs().amax(-1)
    same_b = c[:, None, 0] == c[None, :, 0]
    assert kmap.num_pairs() == int(((diff <= 1) & same_b).sum())
    SparseDownConv3d(3, 3)(x)
    assert ('coords', 2) in x.cache.entries


def test_key_packing_roundtrip_and_order():
    g = torch.Generator().manual_seed(0)
    coords = torch.cat([torch.randint(0, 50, (500, 1), generator=g),
                        torch.randint(-30000, 30000, (500, 3), generator=g)], 1)
    keys = pack_keys(coords)
    assert torch.equal(unpack_keys(keys), coords)
    order_keys = torch.argsort(keys)
    lex = torch.from_numpy(np.lexsort(coords.numpy().T[::-1]).copy())  # b, then x, y, z
    assert torch.equal(coords[order_keys], coords[lex]), 'key order must equal lexicographic (b, x, y, z) order'


def test_repeated_runs_are_bitwise_identical_on_cpu():
    coords, feats = random_sparse_grid(seed=8)
    feats = feats.float()
    torch.manual_seed(0)
    layers = torch.nn.Sequential(SubMConv3d(3, 8), SparseDownConv3d(8, 8), SubMConv3d(8, 8), SparseUpConv3d(8, 4))
    results = []
    for _ in range(2):
        f = feats.clone().requires_grad_(True)
        out = layers(SparseTensor(coords, f)).feats
        out.square().sum().backward()
        results.append((out.detach(), f.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_unsorted_input_coordinates_give_same_result():
    coords, feats = random_sparse_grid(seed=5)
    perm = torch.randperm(coords.shape[0], generator=torch.Generator().manual_seed(1))
    conv = SubMConv3d(3, 4).double()
    a = conv(SparseTensor(coords, feats)).feats
    b = conv(SparseTensor(coords[perm], feats[perm])).feats
    torch.testing.assert_close(a[perm], b, rtol=1e-12, atol=1e-12)


def test_voxelize_mean_first_and_scatter_back():
    pts = torch.tensor([[0.01, 0.02, 0.03, 1.0], [0.09, 0.05, 0.01, 3.0], [0.15, 0.0, 0.0, 5.0],
                        [-0.01, 0.0, 0.0, 7.0], [0.01, 0.02, 0.03, 9.0]])
    bidx = torch.tensor([0, 0, 0, 0, 1])
    st, p2v = voxelize(pts, bidx, 0.1)
    assert st.coords.tolist() == [[0, -1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]]
    assert p2v.tolist() == [1, 1, 2, 0, 3]
    assert st.feats[:, 3].tolist() == [7.0, 2.0, 5.0, 9.0]
    st_first, _ = voxelize(pts, bidx, 0.1, pooling='first')
    assert st_first.feats[:, 3].tolist() == [7.0, 1.0, 5.0, 9.0]
    back = devoxelize(st.feats, p2v)
    assert back.shape == (5, 4) and back[0, 3] == 2.0 and back[4, 3] == 9.0
    feats = torch.rand(5, 2, requires_grad=True)
    st2, _ = voxelize(pts, bidx, 0.1, features=feats)
    st2.feats.sum().backward()
    assert torch.allclose(feats.grad, torch.tensor([[0.5, 0.5], [0.5, 0.5], [1, 1], [1, 1], [1, 1.]]))


def test_voxelize_real_kitti_scan(kitti_dir):
    scan = np.fromfile(kitti_dir / 'training' / 'velodyne' / '000000.bin', dtype=np.float32).reshape(-1, 4)
    pts = torch.from_numpy(scan)
    st, p2v = voxelize(pts, torch.zeros(len(pts), dtype=torch.long), 0.1)
    # every point lies in its voxel
    lo = st.coords[p2v, 1:].double() * 0.1
    assert bool(((pts[:, :3].double() >= lo - 1e-6) & (pts[:, :3].double() < lo + 0.1 + 1e-6)).all())
    assert 0.2 * len(pts) < st.num_voxels < len(pts)
    assert len(torch.unique(pack_keys(st.coords))) == st.num_voxels


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match='empty'):
        voxelize(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match='zero voxels'):
        SparseTensor(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 3))
    with pytest.raises(ValueError, match='non-finite'):
        voxelize(torch.tensor([[float('nan'), 0, 0, 1.0]]), torch.zeros(1, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match='voxel_size'):
        voxelize(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match='outside the supported|increase voxel_size'):
        SparseTensor(torch.tensor([[0, 40000, 0, 0]]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match='duplicate'):
        SparseTensor(torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]), torch.zeros(3, 2))
    coords, feats = random_sparse_grid()
    with pytest.raises(ValueError, match='input channels'):
        SubMConv3d(4, 4)(SparseTensor(coords, feats.float()))
    with pytest.raises(ValueError, match='finer coordinate set'):
        SparseUpConv3d(3, 3)(SparseTensor(coords, feats.float(), stride=2))
    with pytest.raises(ValueError, match='unknown sparse engine'):
        get_engine('minkowski')


def test_batchnorm_with_single_voxel_in_training():
    bn = SparseBatchNorm(3).train()
    x = SparseTensor(torch.tensor([[0, 0, 0, 0]]), torch.randn(1, 3))
    assert torch.isfinite(bn(x).feats).all()


def test_torchsparse_absent_is_reported_cleanly():
    try:
        import torchsparse  # noqa: F401
        pytest.skip('torchsparse is installed here')
    except ImportError:
        pass
    with pytest.raises(EngineUnavailableError, match='torchsparse'):
        get_engine('torchsparse')


def test_spconv_engine_parity_single_thread():
    """Optional engine: compared only when spconv imports, single-threaded (docs/design.md)."""
    pytest.importorskip('spconv.pytorch')
    engine = get_engine('spconv')
    coords, feats = random_sparse_grid(seed=7, offset=(-3, 5, 1))
    feats = feats.float().requires_grad_(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        conv = SubMConv3d(3, 6)
        ref = conv(SparseTensor(coords, feats)).feats
        g_ref = grads(ref, [feats, conv.weight])
        x = SparseTensor(coords, feats)
        out = engine.submanifold_conv(x, conv.weight, 3, 1).feats
        g_out = grads(out, [feats, conv.weight])
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_minkunet_with_spconv_engine_matches_torch_engine():
    """Optional engine inside the whole network (eval, single-threaded); skipped without spconv."""
    pytest.importorskip('spconv.pytorch')
    from ros_ncal.models import MinkUNet
    torch.manual_seed(0)
    ref = MinkUNet(out_dim=8, width=0.25, voxel_size=0.3, depth=14).eval()
    alt = MinkUNet(out_dim=8, width=0.25, voxel_size=0.3, depth=14, engine='spconv').eval()
    alt.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(2)
    clouds = [torch.cat([torch.randn(1500, 3, generator=g) * 5, torch.rand(1500, 1, generator=g)], 1),
              torch.cat([torch.randn(400, 3, generator=g) * 5 - 3, torch.rand(400, 1, generator=g)], 1)]
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(alt(clouds)), torch.cat(ref(clouds)), rtol=1e-4, atol=1e-5)
