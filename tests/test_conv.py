"Tests for imgcls.conv: convolution three ways, output sizes, receptive fields, filters, parameter/MAC counts, exercise checks."
import pytest, torch
import torch.nn.functional as F
from torch import nn
from imgcls.conv import (conv2d_loop, conv2d_unfold, conv_output_size, receptive_field, edge_filters, sobel_filters,
                         apply_filters, grey_photo, conv_params, conv_macs, FixedFilterNet,
                         check_output_size, check_receptive_field, check_conv_by_hand)

@pytest.mark.parametrize('stride,padding', [(1, 0), (1, 1), (2, 0), (2, 1), (3, 2)])
def test_conv_three_ways_agree(stride, padding):
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 3, 10, 9), torch.randn(5, 3, 3, 3), torch.randn(5)
    ref = F.conv2d(x, w, b, stride=stride, padding=padding)
    torch.testing.assert_close(conv2d_loop(x, w, b, stride, padding), ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(conv2d_unfold(x, w, b, stride, padding), ref, atol=1e-4, rtol=1e-4)
    assert ref.shape[-2:] == (conv_output_size(10, 3, stride, padding), conv_output_size(9, 3, stride, padding))

def test_conv_by_hand():
    img = torch.arange(16.).view(1, 1, 4, 4); k = torch.tensor([[[[1., 0.], [0., -1.]]]])
    assert torch.equal(conv2d_loop(img, k), torch.full((1, 1, 3, 3), -5.))

def test_conv_bad_input():
    x, w = torch.randn(1, 3, 5, 5), torch.randn(2, 3, 3, 3)
    with pytest.raises(ValueError, match=r'\(N, C, H, W\)'): conv2d_loop(x[0], w)
    with pytest.raises(ValueError, match='3 channels but the kernels expect 2'): conv2d_unfold(x, w[:, :2])
    with pytest.raises(ValueError, match='stride must be'): conv2d_unfold(x, w, stride=0)
    with pytest.raises(TypeError, match='torch tensors'): conv2d_loop(x.numpy(), w)

@pytest.mark.parametrize('args,expected', [((28, 3), 26), ((28, 3, 1, 1), 28), ((28, 3, 1, 2), 30), ((28, 3, 2, 1), 14),
                                           ((224, 7, 2, 3), 112), ((28, 3, 1, 0, 2), 24), ((24, 2, 2), 12), ((28, 5, 2, 1), 13)])
def test_conv_output_size(args, expected):
    assert conv_output_size(*args) == expected

def test_conv_output_size_matches_torch():
    for size, k, s, p, d in [(17, 3, 2, 1, 1), (20, 5, 3, 2, 2), (9, 4, 1, 0, 1)]:
        out = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k), stride=s, padding=p, dilation=d)
        assert out.shape[-1] == conv_output_size(size, k, s, p, d)

def test_conv_output_size_bad_input():
    with pytest.raises(ValueError, match='does not fit'): conv_output_size(2, 3)
    with pytest.raises(ValueError, match='stride must be >= 1'): conv_output_size(28, 3, stride=0)
    with pytest.raises(ValueError, match='padding must be >= 0'): conv_output_size(28, 3, padding=-1)
    with pytest.raises(TypeError, match='size must be an int'): conv_output_size(28.0, 3)

def test_receptive_field():
    assert receptive_field([(3, 1)]) == 3
    assert receptive_field([(3, 1)]*3) == 7
    assert receptive_field([(3, 2)]*4) == 31
    assert receptive_field([(3, 1), (3, 1), (2, 2), (3, 1)]) == 10
    assert receptive_field([(3, 1, 2)]) == 5
    assert receptive_field([(3, 2), (3, 2)], steps=True) == [(3, 2), (7, 4)]
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.MaxPool2d(2))
    assert receptive_field(model) == 6

def test_receptive_field_bad_input():
    with pytest.raises(ValueError, match=r'\(kernel, stride\)'): receptive_field([(3,)])
    with pytest.raises(ValueError, match='positive ints'): receptive_field([(3, 0)])
    with pytest.raises(TypeError, match='list of'): receptive_field(3)

def test_filters_and_photo():
    ef = edge_filters()
    assert len(ef) == 4 and all(f.shape == (4, 4) for f in ef.values())
    v = ef['vertical (dark→light)']
    assert torch.equal(ef['vertical (light→dark)'], -v) and torch.equal(ef['horizontal (dark→light)'], v.T)
    assert torch.equal(ef['horizontal (light→dark)'], -v.T) and v.sum() == 0
    sx, sy = sobel_filters().values()
    assert torch.equal(sy, sx.T) and sx[1, 2] == 2
    photo = grey_photo()
    assert photo.dim() == 2 and 0 <= photo.min() and photo.max() <= 1
    # a vertical step edge: the dark->light vertical filter responds positively, its negation negatively, horizontal ones not at all
    step = torch.zeros(8, 8); step[:, 4:] = 1
    maps = apply_filters(step, ef)
    assert maps.shape == (4, 5, 5) and maps[0].max() == 8 and maps[1].min() == -8 and maps[2:].abs().max() == 0
    with pytest.raises(ValueError, match='2D tensor'): apply_filters(step[None], ef)
    with pytest.raises(ValueError, match='has no image'): grey_photo('no_such_photo')

def test_param_and_mac_counts():
    assert conv_params(256, 256, 3) == sum(p.numel() for p in nn.Conv2d(256, 256, 3).parameters())
    assert conv_params(64, 128, 3, bias=False) == 64*128*9
    assert conv_params(32, 32, 3, groups=32) == sum(p.numel() for p in nn.Conv2d(32, 32, 3, groups=32).parameters())
    assert conv_macs(256, 64, 1, 14, 14) == 256*64*14*14
    with pytest.raises(ValueError, match='groups'): conv_params(10, 4, 3, groups=3)

def test_gap_takes_two_sizes_flatten_does_not():
    body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    gap = nn.Sequential(body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    flat = nn.Sequential(body, nn.Flatten(), nn.Linear(8*14*14, 10))
    for side in (28, 56): assert gap(torch.rand(2, 1, side, side)).shape == (2, 10)
    assert flat(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(RuntimeError): flat(torch.rand(2, 1, 56, 56))

def test_fixed_filter_net():
    net = FixedFilterNet(torch.stack(list(edge_filters().values())))
    st = net.stages(torch.rand(3, 1, 28, 28))
    assert st['conv'].shape == (3, 4, 25, 25) and st['pool'].shape == (3, 4, 12, 12) and st['flat'].shape == (3, 576)
    torch.testing.assert_close(st['probs'].sum(1), torch.ones(3))
    assert sum(p.numel() for p in net.parameters()) == 576*10 + 10   # kernels are a frozen buffer
    with pytest.raises(ValueError, match=r'\(n, k, k\)'): FixedFilterNet(torch.zeros(4, 4))

def test_exercise_checks():
    assert check_output_size(13) and not check_output_size(14)
    assert check_receptive_field(10) and not check_receptive_field(8)
    assert check_conv_by_hand([[0, 4], [-5, -1]]) and not check_conv_by_hand([[0, 4], [5, -1]])
    assert 'nested list' in repr(check_conv_by_hand('abc'))
