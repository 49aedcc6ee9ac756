"Tests for imgcls.models: block shapes, hand-counted parameters, gradient flow, residual-vs-plain, top-k error, checks."
import math
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from imgcls.cnn import count_params, flops_per_image
from imgcls.models import (conv, alexnet_small, vgg_block, vgg_small, Inception, inception_small, BasicBlock, Bottleneck,
                           resnet_small, resnet_bottleneck_small, n_weight_layers, layer_grad_norms, Fire, squeezenet_small,
                           DenseLayer, DenseBlock, transition, densenet_small, SpatialTransformer, stn_small, IDENTITY_THETA,
                           SMALL_NETS, small_net, params_without_grad, top_k_error, top1_top5, ILSVRC_TOP5, TrainTimer,
                           cpu_latency_ms, random_affine, fit_quick, final_accuracy,
                           check_fire_params, check_dense_channels, check_zoom_theta, check_top_k_error)

torch.set_num_threads(1)
X = torch.rand(2, 1, 28, 28)


# ---- shapes and parameter counts (hand arithmetic written out) ----
def test_conv_helper():
    assert conv(1, 8)(X).shape == (2, 8, 28, 28)
    assert conv(1, 8, stride=2)(X).shape == (2, 8, 14, 14)
    assert count_params(conv(1, 8, bn=False)) == 1*8*9 + 8          # weights + bias
    assert count_params(conv(1, 8)) == 1*8*9 + 2*8                  # no bias; BN scale + shift


def test_alexnet_small():
    m = alexnet_small()
    convs = (1*16*49 + 16) + (16*32*25 + 32) + (32*48*9 + 48) + (48*48*9 + 48) + (48*32*9 + 32)   # 62,144
    dense = (128*256 + 256) + (256*256 + 256) + (256*10 + 10)                                     # 101,386
    assert count_params(m) == convs + dense == 163_530
    assert m(X).shape == (2, 10)
    assert any(isinstance(l, nn.Dropout) for l in m) and any(isinstance(l, nn.LocalResponseNorm) for l in m)


def test_vgg_block_and_net():
    b = vgg_block(2, 16, 32, bn=False)
    assert b(torch.zeros(2, 16, 14, 14)).shape == (2, 32, 7, 7)
    assert count_params(b) == (16*32*9 + 32) + (32*32*9 + 32) == 13_888
    assert all(m.kernel_size == (3, 3) for m in b.modules() if isinstance(m, nn.Conv2d))
    assert vgg_small()(X).shape == (2, 10)
    with pytest.raises(ValueError, match='at least one'): vgg_block(0, 1, 8)
    with pytest.raises(ValueError, match='fewer blocks'): vgg_small(arch=((1, 8),)*6)


def test_inception_module():
    inc = Inception(32, 16, 16, 24, 4, 8, 8, bn=False)
    hand = (32*16 + 16) + (32*16 + 16) + (16*24*9 + 24) + (32*4 + 4) + (4*8*25 + 8) + (32*8 + 8)   # 5,740
    assert count_params(inc) == hand == 5_740
    assert inc(torch.zeros(2, 32, 14, 14)).shape == (2, 16 + 24 + 8 + 8, 14, 14)
    assert inc.c_out == 56
    # multiply-adds on 14x14: every conv costs (H*W) * c_in * c_out * k*k
    hw = 14*14
    macs = hw*(32*16 + 32*16 + 16*24*9 + 32*4 + 4*8*25 + 32*8)
    assert flops_per_image(inc, (32, 14, 14)) == macs
    assert inception_small()(X).shape == (2, 10)


def test_resnet_blocks_identity_and_projection():
    x = torch.randn(2, 16, 14, 14)
    ident = BasicBlock(16, 16)
    assert isinstance(ident.shortcut, nn.Identity)
    assert ident(x).shape == (2, 16, 14, 14)
    assert count_params(ident) == 2*(16*16*9 + 2*16) == 4_672
    proj = BasicBlock(16, 32, stride=2)
    assert not isinstance(proj.shortcut, nn.Identity)
    assert proj(x).shape == (2, 32, 7, 7)
    assert count_params(proj) == (16*32*9 + 64) + (32*32*9 + 64) + (16*32 + 64) == 14_528
    bott = Bottleneck(64, 16, 64)
    assert isinstance(bott.shortcut, nn.Identity)
    assert count_params(bott) == (64*16 + 32) + (16*16*9 + 32) + (16*64 + 128) == 4_544
    bproj = Bottleneck(32, 16, 64, stride=2)
    assert bproj(torch.randn(2, 32, 14, 14)).shape == (2, 64, 7, 7)
    assert count_params(bproj) == (32*16 + 32) + (16*16*9 + 32) + (16*64 + 128) + (32*64 + 128)


def test_residual_block_defaults_to_identity():
    blk = BasicBlock(8, 8, bn=False)
    for p in blk.convs.parameters(): nn.init.zeros_(p)
    x = torch.rand(1, 8, 5, 5)
    assert torch.allclose(blk(x), x)


def test_resnet_small_depth_and_plain():
    for d in (8, 20, 32):
        assert n_weight_layers(resnet_small(depth=d)) == d
        assert n_weight_layers(resnet_small(depth=d, residual=False)) == d
    assert resnet_small(depth=20)(X).shape == (2, 10)
    assert resnet_bottleneck_small()(X).shape == (2, 10)
    diff = count_params(resnet_small(depth=20)) - count_params(resnet_small(depth=20, residual=False))
    assert diff == (16*32 + 64) + (32*64 + 128)        # only the two projection shortcuts differ
    with pytest.raises(ValueError, match='6n\\+2'): resnet_small(depth=21)
    with pytest.raises(ValueError, match='6n\\+2'): resnet_small(depth=2)
    with pytest.raises(ValueError, match='3 stages'): resnet_small(widths=(8, 16))


def test_fire_module():
    fire = Fire(64, 16, 64, 64)
    assert count_params(fire) == (64*16 + 16) + (16*64 + 64) + (16*64*9 + 64) == 11_408
    assert fire(torch.zeros(2, 64, 7, 7)).shape == (2, 128, 7, 7)
    m = squeezenet_small()
    assert m(X).shape == (2, 10)
    assert not any(isinstance(l, nn.Linear) for l in m.modules())    # no dense layer


def test_dense_block_and_transition():
    blk = DenseBlock(3, 16, growth=8, bottleneck=False)
    assert blk.c_out == 16 + 3*8
    assert blk(torch.zeros(2, 16, 14, 14)).shape == (2, 40, 14, 14)
    assert count_params(blk) == sum(2*(16 + 8*i) + (16 + 8*i)*8*9 for i in range(3)) == 5_328
    bc = DenseLayer(16, 8)               # bottleneck: BN(16) + 1x1 16->32 + BN(32) + 3x3 32->8
    assert count_params(bc) == 2*16 + 16*32 + 2*32 + 32*8*9
    x = torch.rand(2, 16, 5, 5)
    assert torch.equal(bc(x)[:, :16], x)                    # the input passes through unchanged (concatenated)
    tr = transition(40, 20)
    assert tr(torch.zeros(2, 40, 14, 14)).shape == (2, 20, 7, 7)
    assert count_params(tr) == 2*40 + 40*20
    assert densenet_small()(X).shape == (2, 10)


def test_spatial_transformer_starts_as_identity():
    st = SpatialTransformer()
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(st(x), x, atol=1e-5)
    assert torch.allclose(st.theta, torch.tensor(IDENTITY_THETA).view(1, 2, 3).expand(3, 2, 3))
    assert stn_small()(x).shape == (3, 10)


def test_registry_and_small_net():
    assert set(SMALL_NETS) >= {'alexnet', 'vgg', 'inception', 'resnet', 'squeezenet', 'densenet', 'stn'}
    for name in SMALL_NETS:
        m = small_net(name)
        assert m(X).shape == (2, 10), name
        assert small_net(name, n_classes=3)(X[:1]).shape == (1, 3), name
    with pytest.raises(ValueError, match='Unknown net'): small_net('lenet')


@pytest.mark.parametrize('name', [n for n in SMALL_NETS if n != 'stn'])
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    assert params_without_grad(small_net(name)) == []


def test_stn_gradients_only_blocked_behind_zero_init():
    torch.manual_seed(0)
    missing = params_without_grad(stn_small())
    assert missing and all(n.startswith('0.loc') or n.startswith('0.fc.0') for n in missing)
    assert '0.fc.2.weight' not in missing and '0.fc.2.bias' not in missing


# ---- gradient flow: residual trains where plain stalls (depth 20, no BN) ----
@pytest.fixture(scope='module')
def digits():
    from imgcls.data import load_arrays, to_tensors, ArraySplit
    m = load_arrays('mnist')
    return to_tensors(ArraySplit(m.train.x[:4096], m.train.y[:4096]))


def test_plain_gradient_vanishes_at_init(digits):
    x, y = digits
    torch.manual_seed(42); plain = resnet_small(depth=20, widths=(8, 16, 32), bn=False, residual=False)
    torch.manual_seed(42); res = resnet_small(depth=20, widths=(8, 16, 32), bn=False, residual=True)
    gp, gr = layer_grad_norms(plain, x[:256], y[:256]), layer_grad_norms(res, x[:256], y[:256])
    assert len(gp) == len(gr) == 20
    assert gr[0] > 1e4 * gp[0]


def _train_losses(residual, x, y, steps=70):
    torch.manual_seed(0)
    net = resnet_small(depth=20, widths=(8, 16, 32), bn=False, residual=residual)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    return sum(losses[-10:]) / 10


def test_deep_residual_trains_where_plain_stalls(digits):
    x, y = digits
    plain, res = _train_losses(False, x, y), _train_losses(True, x, y)
    assert plain > 2.25, f"plain-20 should stay near ln 10 = 2.30, got {plain:.3f}"
    assert res < 2.1, f"residual-20 should learn, got loss {res:.3f}"


# ---- top-k error ----
def test_top_k_error_by_hand():
    logits = torch.tensor([[9., 1, 2, 3, 4, 5], [1., 9, 8, 7, 6, 5], [1., 2, 9, 3, 8, 4]])
    y = torch.tensor([0, 0, 4])
    assert math.isclose(top_k_error(logits, y, 1), 2/3, rel_tol=1e-6)
    assert math.isclose(top_k_error(logits, y, 5), 1/3, rel_tol=1e-6)
    assert top_k_error(logits, y, 6) == 0.0
    t1, t5 = top1_top5(logits, y)
    assert t5 <= t1


def test_top_k_error_matches_accuracy_and_is_monotone():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(300, 10, generator=g), torch.randint(0, 10, (300,), generator=g)
    assert math.isclose(top_k_error(logits, y, 1), 1 - (logits.argmax(1) == y).float().mean().item(), rel_tol=1e-6)
    errs = [top_k_error(logits, y, k) for k in range(1, 11)]
    assert all(a >= b for a, b in zip(errs, errs[1:])) and errs[-1] == 0.0


def test_top_k_error_bad_input():
    logits, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match='between 1 and'): top_k_error(logits, y, 7)
    with pytest.raises(ValueError, match='between 1 and'): top_k_error(logits, y, 0)
    with pytest.raises(ValueError, match='2-D'): top_k_error(logits[0], y)
    with pytest.raises(ValueError, match='one label per row'): top_k_error(logits, y[:3])
    with pytest.raises(TypeError, match='integer'): top_k_error(logits, y.float())
    with pytest.raises(TypeError, match='torch tensors'): top_k_error(logits.numpy(), y)


def test_ilsvrc_table():
    years = [r[0] for r in ILSVRC_TOP5]
    errs = [r[3] for r in ILSVRC_TOP5]
    assert years == list(range(2010, 2018))
    assert all(a > b for a, b in zip(errs, errs[1:]))
    assert dict(zip(years, errs))[2015] == 3.57


# ---- measuring helpers ----
def test_train_timer_and_latency():
    tt = TrainTimer()
    tt.before_train(); tt.after_train(); tt.before_train(); tt.after_train()
    assert tt.epochs == 2 and tt.per_epoch >= 0
    m = vgg_small()
    m.train()
    assert 0 < cpu_latency_ms(m, n=3, warmup=1) < 1000
    assert m.training                      # mode restored
    with pytest.raises(ValueError, match='at least 1'): cpu_latency_ms(m, n=0)


def test_random_affine():
    x = torch.rand(4, 1, 28, 28)
    assert random_affine(x).shape == x.shape
    assert torch.allclose(random_affine(x, max_deg=0, scale=(1, 1), max_shift=0), x, atol=1e-5)
    assert torch.equal(random_affine(x, seed=3), random_affine(x, seed=3))
    assert not torch.equal(random_affine(x, seed=3), x)
    with pytest.raises(ValueError, match='N x C x H x W'): random_affine(x[0])


def test_fit_quick_rejects_non_module():
    with pytest.raises(TypeError, match='nn.Module'): fit_quick('vgg', None)


# ---- exercise checks ----
def test_check_fire_params():
    assert check_fire_params(count_params(Fire(96, 16, 64, 64)))
    assert check_fire_params((96*16 + 16) + (16*64 + 64) + (16*64*9 + 64))
    r = check_fire_params(11920 - 144)
    assert not r and 'biases' in repr(r)
    assert not check_fire_params('11920') and not check_fire_params(True)


def test_check_dense_channels():
    assert check_dense_channels(lambda c, n, k: c + n*k)
    r = check_dense_channels(lambda c, n, k: n*k)
    assert not r and 'growth' in repr(r)
    assert not check_dense_channels(lambda c, n, k: 1/0)
    assert not check_dense_channels(3)


def test_check_zoom_theta():
    assert check_zoom_theta([[0.5, 0, 0], [0, 0.5, 0]])
    assert check_zoom_theta(torch.tensor([[0.5, 0, 0], [0, 0.5, 0]]))
    assert 'zooms OUT' in repr(check_zoom_theta([[2, 0, 0], [0, 2, 0]]))
    assert 'translation' in repr(check_zoom_theta([[0.5, 0, 0.3], [0, 0.5, 0]]))
    assert not check_zoom_theta([[0.5, 0], [0, 0.5]])
    assert not check_zoom_theta('zoom')


def test_check_top_k_error():
    def mine(logits, y, k): return 1 - (logits.topk(k, 1).indices == y[:, None]).any(1).float().mean().item()
    assert check_top_k_error(mine)
    r = check_top_k_error(lambda l, y, k: 1 - top_k_error(l, y, k))
    assert not r and 'accuracy' in repr(r)
    assert not check_top_k_error(None)
