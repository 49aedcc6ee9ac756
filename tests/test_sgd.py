"Contracts of imgcls.sgd, and accuracy bands for the linear model and the two-layer net on real 3s and 7s."
import pytest
import torch
from torch import nn
from imgcls.core import set_seed
from imgcls.baseline import load_threes_sevens
from imgcls.sgd import (gradient_descent_path, xy_3v7, init_params, linear1, mnist_loss, batch_accuracy, make_dls,
                        BasicOptim, SimpleLearner, simple_net, check_one_step_lr, check_mnist_loss, check_param_count)

@pytest.fixture(scope='module')
def dsets():
    data = load_threes_sevens()
    tx, ty = xy_3v7(data.train3, data.train7)
    vx, vy = xy_3v7(data.valid3, data.valid7)
    return list(zip(tx, ty)), list(zip(vx, vy))

@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def test_gradient_descent_path():
    f = lambda x: (x - 2)**2 + 1
    p = gradient_descent_path(f, -1.0, 0.2, 5)
    assert len(p) == 6 and p[0] == -1.0 and p[1] == pytest.approx(-1.0 + 0.2 * 6)
    assert abs(p[-1] - 2) < abs(p[0] - 2)
    assert abs(gradient_descent_path(f, -1.0, 1.1, 8)[-1] - 2) > 3  # diverges
    with pytest.raises(ValueError, match='positive'): gradient_descent_path(f, 0, -0.1, 3)
    with pytest.raises(ValueError, match='steps'): gradient_descent_path(f, 0, 0.1, -1)

def test_xy_3v7():
    x, y = xy_3v7(torch.rand(3, 28, 28), torch.rand(2, 28, 28))
    assert x.shape == (5, 784) and y.shape == (5, 1) and y.squeeze().tolist() == [1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match='float tensor'): xy_3v7(torch.zeros(3, 28, 28, dtype=torch.uint8), torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match='N×H×W'): xy_3v7(torch.rand(3, 784), torch.rand(2, 28, 28))

def test_init_params_and_linear1():
    w, b = init_params((784, 1)), init_params(1)
    assert w.requires_grad and w.shape == (784, 1)
    x = torch.rand(4, 784)
    assert torch.allclose(linear1(x, w, b), x @ w + b)
    with pytest.raises(ValueError, match='flatten'): linear1(torch.rand(4, 28, 28), w, b)

def test_mnist_loss_and_accuracy():
    preds, targets = torch.tensor([[2.0], [-0.2], [0.4], [-1.5]]), torch.tensor([[1.0], [0.0], [0.0], [1.0]])
    s = preds.sigmoid()
    expected = torch.stack([1 - s[0], s[1], s[2], 1 - s[3]]).mean()
    assert torch.allclose(mnist_loss(preds, targets), expected)
    assert batch_accuracy(preds, targets).item() == 0.5
    p = preds.clone().requires_grad_(); mnist_loss(p, targets).backward()
    assert p.grad is not None and (p.grad != 0).all()  # a smooth loss: every prediction gets a gradient

def test_mnist_loss_bad_input():
    with pytest.raises(ValueError, match='silently broadcast'): mnist_loss(torch.rand(4, 1), torch.ones(4))
    with pytest.raises(ValueError, match='must match'): batch_accuracy(torch.rand(4), torch.ones(3))
    with pytest.raises(ValueError, match='0 or 1'): mnist_loss(torch.rand(3), torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(TypeError, match='two tensors'): mnist_loss([0.1], torch.ones(1))

def test_make_dls_is_seeded(dsets):
    tr, va = dsets
    a, b = make_dls(tr, va, bs=64, seed=1), make_dls(tr, va, bs=64, seed=1)
    xa, ya = next(iter(a.train)); xb, yb = next(iter(b.train))
    assert xa.shape == (64, 784) and torch.equal(ya, yb) and torch.equal(xa, xb)
    assert len(a.valid) == -(-len(va) // 64)
    with pytest.raises(ValueError, match='batch size'): make_dls(tr, va, bs=0)
    with pytest.raises(ValueError, match='at least one item'): make_dls([], va)

def test_basic_optim():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    opt = BasicOptim([w], lr=0.5)
    (w**2).sum().backward(); opt.step()
    assert torch.allclose(w.detach(), torch.tensor([0.0, 0.0]))
    opt.zero_grad(); assert w.grad is None
    with pytest.raises(ValueError, match='requires_grad'): BasicOptim([torch.zeros(2)], 0.1)
    with pytest.raises(ValueError, match='positive'): BasicOptim([w], 0)
    with pytest.raises(ValueError, match='no parameters'): BasicOptim([], 0.1)

def test_simple_learner_bad_input(dsets):
    w = init_params(3)
    with pytest.raises(TypeError, match='`.train` and `.valid`'): SimpleLearner([1, 2], lambda x: x, BasicOptim([w], 0.1))
    with pytest.raises(TypeError, match='step'): SimpleLearner(make_dls(*dsets), lambda x: x, object())

def test_linear_accuracy_band_and_agreement(dsets):
    set_seed(42)
    w, b = init_params((784, 1)), init_params(1)
    lin = nn.Linear(784, 1)
    with torch.no_grad(): lin.weight.copy_(w.T); lin.bias.copy_(b)
    h = SimpleLearner(make_dls(*dsets), lambda xb: linear1(xb, w, b), BasicOptim([w, b], 1.0)).fit(6, show=False)
    assert set(h) == {'train_loss', 'valid_loss', 'valid_acc'} and len(h["valid_acc"]) == 6
    assert h['train_loss'][-1] < h['train_loss'][0]
    assert h['valid_acc'][-1] >= 0.95
    h2 = SimpleLearner(make_dls(*dsets), lin, torch.optim.SGD(lin.parameters(), lr=1.0)).fit(6, show=False)
    assert h2['valid_acc'][-1] == pytest.approx(h['valid_acc'][-1], abs=2e-3)
    assert (lin.weight.detach().T - w.detach()).abs().max() < 1e-3

def test_two_layer_accuracy_band(dsets):
    set_seed(42)
    net = simple_net()
    h = SimpleLearner(make_dls(*dsets), net, torch.optim.SGD(net.parameters(), lr=0.5)).fit(4, show=False)
    assert h['valid_acc'][-1] >= 0.97

def test_simple_net():
    net = simple_net(n_hidden=10)
    assert net(torch.rand(2, 784)).shape == (2, 1)
    assert sum(p.numel() for p in net.parameters()) == 784 * 10 + 10 + 10 + 1
    with pytest.raises(ValueError, match='positive'): simple_net(n_hidden=0)

def test_exercise_checks():
    assert check_one_step_lr(0.5) and not check_one_step_lr(0.25) and not check_one_step_lr('x') and not check_one_step_lr(-1)
    good = lambda p, t: torch.where(t == 1, 1 - p.sigmoid(), p.sigmoid()).mean()
    assert check_mnist_loss(good)
    swapped = check_mnist_loss(lambda p, t: torch.where(t == 1, p.sigmoid(), 1 - p.sigmoid()).mean())
    assert not swapped and 'swapped' in repr(swapped)
    assert not check_mnist_loss(lambda p, t: torch.where(t.squeeze() == 1, 1 - p.sigmoid(), p.sigmoid()))
    assert check_param_count(784 * 50 + 50 + 50 + 1, n_hidden=50) and not check_param_count(784 * 50 + 50, n_hidden=50)
