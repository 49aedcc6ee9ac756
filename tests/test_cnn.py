"Tests for imgcls.cnn: the two models, parameter and multiply-add counts, the training helper, feature maps, exercise checks."
import pytest, torch
from torch import nn
from imgcls.cnn import (seed_cnn, lean_cnn, conv_block, count_params, flops_per_image, layer_costs, fit_cnn, feature_maps,
                        show_filters, check_seed_dense_params, check_block_macs, check_wide_lean_params)

def test_seed_cnn_shapes_and_params():
    m = seed_cnn()
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    # by hand: conv 1->64 (3x3) + conv 64->128 (3x3) + dense 128*12*12 -> 1024 + dense 1024 -> 10, all with biases
    assert count_params(m) == (64*9 + 64) + (128*64*9 + 128) + (128*12*12*1024 + 1024) + (1024*10 + 10) == 18_960_138
    assert [type(l).__name__ for l in m] == ['Conv2d', 'ReLU', 'Conv2d', 'ReLU', 'MaxPool2d', 'Dropout', 'Flatten',
                                             'Linear', 'ReLU', 'Dropout', 'Linear']
    assert m[5].p == 0.3 and m[9].p == 0.3
    m3 = seed_cnn(n_in=3, size=32)
    assert m3(torch.zeros(1, 3, 32, 32)).shape == (1, 10) and m3[7].in_features == 128*14*14

def test_seed_cnn_bad_input():
    with pytest.raises(ValueError, match='at least 6x6'): seed_cnn(size=4)
    with pytest.raises(ValueError, match='dropout probability'): seed_cnn(p_drop=1.5)
    with pytest.raises(RuntimeError): seed_cnn()(torch.zeros(1, 1, 56, 56))   # flatten+dense: fixed input size

def test_lean_cnn_params_and_gap():
    m = lean_cnn(widths=(8, 16, 32, 64))
    expected = (1*8 + 8*16 + 16*32 + 32*64)*9 + 2*(8 + 16 + 32 + 64) + 64*10 + 10
    assert count_params(m) == expected == 25_154
    assert count_params(lean_cnn()) == (1*16 + 16*32 + 32*64 + 64*128)*9 + 2*(16 + 32 + 64 + 128) + 128*10 + 10 == 98_682
    for side in (28, 56, 32): assert m(torch.zeros(2, 1, side, side)).shape == (2, 10)
    assert count_params(lean_cnn(widths=(8, 16, 32, 64), bn=False)) == (1*8 + 8*16 + 16*32 + 32*64)*9 + (8 + 16 + 32 + 64) + 650
    assert lean_cnn(n_in=3, n_out=5)(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(ValueError, match='non-empty'): lean_cnn(widths=())
    with pytest.raises(ValueError, match='positive'): lean_cnn(widths=(8, 0))

def test_conv_block():
    b = conv_block(4, 8)
    assert [type(l).__name__ for l in b] == ['Conv2d', 'BatchNorm2d', 'ReLU'] and b[0].bias is None
    assert [type(l).__name__ for l in conv_block(4, 8, bn=False)] == ['Conv2d', 'ReLU']
    assert b(torch.zeros(1, 4, 7, 7)).shape == (1, 8, 4, 4)

def test_count_params_trainable_only():
    m = nn.Linear(3, 2); m.bias.requires_grad_(False)
    assert count_params(m) == 8 and count_params(m, trainable_only=True) == 6
    with pytest.raises(TypeError, match='nn.Module'): count_params([1, 2])

def test_flops_counter_by_hand():
    tiny = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 10))
    assert flops_per_image(tiny, (1, 4, 4)) == 2*4*4*9 + 32*10
    assert flops_per_image(nn.Conv2d(16, 32, 3, 2, 1), (16, 7, 7)) == 32*4*4*16*9
    assert flops_per_image(nn.Conv2d(8, 8, 3, groups=8), (8, 5, 5)) == 8*3*3*9    # depthwise: 9 per output
    assert flops_per_image(seed_cnn()) == 26*26*64*9 + 24*24*128*64*9 + 18432*1024 + 1024*10
    assert flops_per_image(lean_cnn(widths=(8, 16, 32, 64))) == 14*14*8*9 + 7*7*16*72 + 4*4*32*144 + 2*2*64*288 + 64*10
    # GAP model: the count scales with the image area for the convs only
    assert flops_per_image(lean_cnn(), (1, 56, 56)) > 3*flops_per_image(lean_cnn())

def test_flops_counter_restores_mode_and_hooks():
    m = lean_cnn(); m.train()
    rows = layer_costs(m)
    assert m.training and all(len(mod._forward_hooks) == 0 for mod in m.modules())
    assert [r['kind'] for r in rows] == ['Conv2d']*4 + ['Linear'] and rows[0]['out_shape'] == (16, 14, 14)

def test_flops_counter_bad_input():
    with pytest.raises(ValueError, match=r'\(channels, height, width\)'): flops_per_image(lean_cnn(), (28, 28))
    with pytest.raises(ValueError, match=r'\(channels, height, width\)'): flops_per_image(lean_cnn(), (1, 0, 28))
    with pytest.raises(ValueError, match='cannot take'): flops_per_image(lean_cnn(), (3, 28, 28))
    with pytest.raises(TypeError, match='nn.Module'): flops_per_image('model')

def _tiny_dls(n=512, seed=0):
    from imgcls.data import ArrayData, ArraySplit, tensor_dls
    import numpy as np
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n); x = np.zeros((n, 28, 28), np.uint8)
    x[y == 1, :, 14:] = 255; x[y == 0, 14:, :] = 255          # two trivially separable classes
    x = np.clip(x + rng.integers(0, 60, x.shape), 0, 255).astype(np.uint8)
    return tensor_dls(ArrayData('toy', ArraySplit(x[:n*3//4], y[:n*3//4]), ArraySplit(x[n*3//4:], y[n*3//4:]), ['0', '1'], 'test', 'synthetic'), bs=64)

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_fit_cnn_learns_toy_task(seed):
    # enough batches (2 x 24) for batch norm's running statistics to settle before the eval-mode test pass
    torch.manual_seed(seed)
    learn = fit_cnn(lean_cnn(n_out=2, widths=(8, 16, 32, 64)), _tiny_dls(n=2048, seed=seed), epochs=2, lr=1e-2, progress=False)
    assert learn.test_accuracy >= 0.95 and learn.secs_per_epoch > 0
    with pytest.raises(ValueError, match='epochs'): fit_cnn(lean_cnn(), _tiny_dls(), epochs=0)
    with pytest.raises(ValueError, match='lr'): fit_cnn(lean_cnn(), _tiny_dls(), lr=0)
    with pytest.raises(TypeError, match='nn.Module'): fit_cnn('model', _tiny_dls())
    with pytest.raises(ValueError, match='label_smoothing'): fit_cnn(lean_cnn(), _tiny_dls(), label_smoothing=1.5)

def test_feature_maps():
    m = lean_cnn(); m.train()
    fm = feature_maps(m, torch.zeros(1, 1, 28, 28))
    assert [tuple(o.shape) for _, o in fm[:4]] == [(1, 16, 14, 14), (1, 32, 7, 7), (1, 64, 4, 4), (1, 128, 2, 2)]
    assert len(fm) == 7 and m.training and all(len(mod._forward_hooks) == 0 for mod in m.modules())
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'): feature_maps(m, torch.zeros(1, 28, 28))

def test_show_filters():
    fig = show_filters(lean_cnn()[0][0].weight, 8)
    assert len([a for a in fig.axes if a.images]) == 8
    assert len([a for a in show_filters(lean_cnn()[0][0].weight, 100).axes if a.images]) == 16
    with pytest.raises(ValueError, match=r'\(out, 1, kh, kw\)'): show_filters(torch.zeros(8, 3, 3, 3))

def test_exercise_checks():
    assert check_seed_dense_params(128*14*14*1024 + 1024) and not check_seed_dense_params(18_875_392)
    assert check_block_macs(73_728) and not check_block_macs(0)
    assert check_wide_lean_params(55_870) and not check_wide_lean_params('many')


def test_random_shift_moves_pixels_without_losing_them():
    import torch
    from imgcls.cnn import random_shift, RandomShift
    torch.manual_seed(0)
    x = torch.zeros(16, 1, 28, 28); x[:, :, 14, 14] = 1
    s = random_shift(x, 2)
    assert s.shape == x.shape and torch.equal(s.sum((1, 2, 3)), torch.ones(16))
    moved = (s[:, 0, 12:17, 12:17] == 1).any(-1).any(-1)
    assert moved.all() and not torch.equal(s, x)          # every bright pixel stays within 2 px of the centre
    import pytest
    with pytest.raises(ValueError, match='N×C×H×W'): random_shift(x[0], 2)
    with pytest.raises(ValueError, match='non-negative'): RandomShift(-1)
