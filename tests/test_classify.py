"Contracts of imgcls.classify: the from-scratch losses against F.cross_entropy, metrics, plots, the training recorder and its TensorBoard files, accuracy bands."
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
import matplotlib.pyplot as plt
from imgcls.core import set_seed
from imgcls.data import load_arrays, to_tensors, tensor_dls, _embedded_arrays
from imgcls.classify import (one_hot, softmax, logsumexp, log_softmax, nll_loss, cross_entropy, accuracy, confusion_matrix,
                             plot_confusion_matrix, most_confused, per_class_report, top_losses, plot_top_losses,
                             SoftmaxRegression, fit_softmax_regression, digit_mlp, mlp_learner, predict_logits, ema,
                             TrainingRecorder, read_tensorboard, EX_LOGITS, EX_CM, check_softmax_by_hand, check_uniform_loss,
                             check_precision_recall, check_logsumexp, check_mlp_params)
from conftest import has_full_mnist

@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n); plt.close('all')

@pytest.fixture(scope='module')
def mnist():
    return load_arrays('mnist')

# ---- the maths, against PyTorch ----------------------------------------------------------------------------------------
def test_one_hot():
    y = torch.tensor([3, 0, 9, 3])
    assert torch.equal(one_hot(y, 10), F.one_hot(y, 10).float())
    assert one_hot(y, 10).dtype == torch.float32
    with pytest.raises(TypeError, match='integer class indices'): one_hot(torch.tensor([1.0]), 10)
    with pytest.raises(ValueError, match='only 10 classes'): one_hot(torch.tensor([10]), 10)
    with pytest.raises(ValueError, match='only 3 classes'): one_hot(torch.tensor([-1]), 3)
    with pytest.raises(ValueError, match='1-d'): one_hot(torch.tensor([[1]]), 3)
    with pytest.raises(ValueError, match='positive integer'): one_hot(y, 0)

@pytest.mark.parametrize('scale', [1., 10., 300.])
def test_softmax_family_matches_torch(scale):
    set_seed(0); x = torch.randn(16, 10) * scale
    assert torch.allclose(softmax(x), F.softmax(x, -1), atol=1e-6)
    assert torch.allclose(logsumexp(x), torch.logsumexp(x, -1), atol=1e-4)
    assert torch.allclose(log_softmax(x), F.log_softmax(x, -1), atol=1e-4)
    assert torch.allclose(softmax(x).sum(-1), torch.ones(16), atol=1e-6)

def test_stability_on_huge_logits():
    x = torch.tensor([[1000., 999., 990.], [-1000., -1001., -1002.]])
    for out in (softmax(x), log_softmax(x), logsumexp(x)): assert torch.isfinite(out).all()
    assert torch.allclose(log_softmax(x), F.log_softmax(x, -1), atol=1e-5)
    assert torch.isfinite(log_softmax(torch.tensor([[0., 200.]]))).all()   # where softmax(x).log() gives -inf

def test_softmax_bad_input():
    with pytest.raises(TypeError, match='floating point'): softmax(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match='torch tensor'): softmax([1., 2.])
    with pytest.raises(ValueError, match='at least one class'): log_softmax(torch.zeros(3, 0))

@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_cross_entropy_values_and_gradients(dtype):
    set_seed(1)
    logits, y = (torch.randn(64, 10) * 4).to(dtype), torch.randint(0, 10, (64,))
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours, theirs = cross_entropy(a, y), F.cross_entropy(b, y)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    ours.backward(); theirs.backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-7)
    # the closed form of the gradient used by the perceptron
    assert torch.allclose((softmax(logits) - one_hot(y, 10).to(dtype)) / 64, b.grad, atol=1e-7)

def test_nll_loss():
    set_seed(2)
    lp, y = F.log_softmax(torch.randn(8, 5), -1), torch.randint(0, 5, (8,))
    assert nll_loss(lp, y).item() == pytest.approx(F.nll_loss(lp, y).item(), rel=1e-6)
    with pytest.raises(ValueError, match='N labels'): nll_loss(lp, y[:3])
    with pytest.raises(ValueError, match='only 5 classes'): nll_loss(lp, torch.full((8,), 5))
    with pytest.raises(TypeError, match='integer'): cross_entropy(torch.randn(8, 5), y.float())

# ---- metrics ---------------------------------------------------------------------------------------------------------
def test_accuracy():
    assert accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5
    assert accuracy(torch.tensor([2, 0, 1]), torch.tensor([2, 0, 0])) == pytest.approx(2/3)
    assert isinstance(accuracy(torch.tensor([1]), torch.tensor([1])), float)
    with pytest.raises(TypeError, match='integer class indices'): accuracy(torch.tensor([0.5, 0.2]), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match='must match'): accuracy(torch.tensor([1, 0]), torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match='empty'): accuracy(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))

def test_confusion_matrix_matches_sklearn():
    from sklearn.metrics import confusion_matrix as sk
    set_seed(3); y, p = torch.randint(0, 7, (500,)), torch.randint(0, 7, (500,))
    cm = confusion_matrix(p, y, 7)
    assert cm.dtype == torch.long and cm.shape == (7, 7)
    assert np.array_equal(cm.numpy(), sk(y.numpy(), p.numpy(), labels=range(7)))
    assert torch.equal(confusion_matrix(F.one_hot(p, 7).float(), y, 7), cm)   # scores are argmaxed
    assert confusion_matrix(torch.tensor([1]), torch.tensor([0]), 2).tolist() == [[0, 1], [0, 0]]  # [actual, predicted]
    with pytest.raises(ValueError, match='only 7 classes'): confusion_matrix(p + 1, y, 7)
    with pytest.raises(ValueError, match='must match'): confusion_matrix(p[:5], y, 7)

def test_most_confused():
    cm = torch.tensor([[5, 1, 0], [3, 4, 2], [0, 0, 9]])
    assert most_confused(cm, ['a', 'b', 'c'], k=5) == [('b', 'a', 3), ('b', 'c', 2), ('a', 'b', 1)]
    assert most_confused(cm, ['a', 'b', 'c'], k=1) == [('b', 'a', 3)]
    assert most_confused(torch.eye(3, dtype=torch.long) * 4, list('abc')) == []
    with pytest.raises(ValueError, match='square 2×2'): most_confused(cm, ['a', 'b'])

def test_per_class_report_matches_sklearn():
    from sklearn.metrics import precision_recall_fscore_support
    set_seed(4); y = torch.randint(0, 4, (300,)); p = torch.where(torch.rand(300) < 0.7, y, torch.randint(0, 3, (300,)))
    df = per_class_report(p, y, ['w', 'x', 'y', 'z'])
    assert list(df.columns) == ['precision', 'recall', 'f1', 'support'] and list(df.index) == ['w', 'x', 'y', 'z']
    pr, rc, f1, sup = precision_recall_fscore_support(y.numpy(), p.numpy(), labels=range(4), zero_division=0)
    for col, ref in (('precision', pr), ('recall', rc), ('f1', f1), ('support', sup)): assert np.allclose(df[col].values, ref)
    # a class that is never predicted has precision 0, not nan
    df = per_class_report(torch.tensor([0, 0, 1]), torch.tensor([0, 2, 1]), ['a', 'b', 'c'])
    assert df.loc['c', 'precision'] == 0 and df.loc['c', 'recall'] == 0 and df.loc['c', 'support'] == 1

def test_top_losses_and_plots():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95]])
    y = torch.tensor([0, 0, 1, 1])
    losses, idxs = top_losses(probs, y, k=2)
    assert idxs.tolist() == [1, 2] and losses[0].item() == pytest.approx(-math.log(0.2))
    with pytest.raises(ValueError, match='softmax'): top_losses(torch.tensor([[2., -1.]]), torch.tensor([0]))
    fig = plot_top_losses(torch.rand(4, 784), y, probs, ['zero', 'one'], k=3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert isinstance(fig, Figure) and len(titles) == 3 and titles[0].startswith('pred one / actual zero') and 'p=0.80' in titles[0]
    assert isinstance(plot_top_losses(torch.rand(4, 1, 28, 28), y, probs, ['0', '1'], k=9), Figure)   # k > N is fine
    with pytest.raises(ValueError, match='flat image'): plot_top_losses(torch.rand(4, 783), y, probs, ['0', '1'])
    cm = torch.tensor([[3, 1], [0, 4]])
    fig = plot_confusion_matrix(cm, ['a', 'b'], title='T')
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == 'T'
    texts = [t.get_text() for t in plot_confusion_matrix(cm, ['a', 'b'], normalize=True).axes[0].texts]
    assert texts == ['0.75', '0.25', '0.00', '1.00']
    with pytest.raises(ValueError, match='square 3×3'): plot_confusion_matrix(cm, ['a', 'b', 'c'])

def test_ema():
    assert np.allclose(ema([2., 2., 2.]), 2.)   # bias correction: a constant stays constant
    assert len(ema([1., 5.], 0.5)) == 2

# ---- models and accuracy bands ------------------------------------------------------------------------------------------
def test_softmax_regression_from_scratch(mnist):
    x, y = to_tensors(mnist.train, flat=True)
    xt, yt = to_tensors(mnist.test, flat=True)
    m = fit_softmax_regression(x, y, lr=0.5, epochs=1 if len(x) > 10_000 else 5, bs=100)
    assert m.losses[0] == pytest.approx(math.log(10), abs=0.05)   # small normal init: first loss is a uniform guess
    acc = accuracy(m.logits(xt), yt)
    assert acc >= (0.90 if has_full_mnist() else 0.80), acc
    with pytest.raises(ValueError, match='flat images'): m.logits(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match='labels'): fit_softmax_regression(x[:10], y[:5])

def test_hand_gradient_matches_autograd():
    set_seed(5); m = SoftmaxRegression(20, 4, std=0.5)
    x, y = torch.randn(32, 20), torch.randint(0, 4, (32,))
    loss, dW, db = m.grads(x, y)
    W, b = m.W.clone().requires_grad_(), m.b.clone().requires_grad_()
    F.cross_entropy(x @ W + b, y).backward()
    assert torch.allclose(dW, W.grad, atol=1e-6) and torch.allclose(db, b.grad, atol=1e-6)

def test_mlp_band(mnist):
    "The chapter's recipe (784-256-10, 3 epochs of one-cycle at bs 256) reaches 97.5% on the real test set."
    set_seed(42, threads=1)
    learn = mlp_learner(tensor_dls(mnist, bs=256, flat=True))
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(3, 1e-2)
    xt, yt = to_tensors(mnist.test, flat=True)
    learn.model.train()
    acc = accuracy(predict_logits(learn.model, xt), yt)
    assert acc >= (0.975 if has_full_mnist() else 0.85), acc
    assert learn.model.training   # predict_logits evaluates in eval mode, then restores the mode

def test_mlp_on_embedded_subset():
    sub = _embedded_arrays()
    set_seed(42, threads=1)
    learn = mlp_learner(tensor_dls(sub, bs=64, flat=True))
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(4, 3e-3)
    xt, yt = to_tensors(sub.test, flat=True)
    acc = accuracy(predict_logits(learn.model, xt), yt)
    assert 0.85 <= acc < 0.975, acc   # far below the full-data figure

def test_digit_mlp_shapes():
    m = digit_mlp()
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10) and m(torch.rand(3, 784)).shape == (3, 10)
    assert sum(p.numel() for p in m.parameters()) == 203_530

# ---- the recorder and TensorBoard ----------------------------------------------------------------------------------------
def test_training_recorder_and_tensorboard(mnist, tmp_path):
    set_seed(42, threads=1)
    dls = tensor_dls(mnist, bs=128, flat=True, n_train=2048)   # 16 training batches
    rec = TrainingRecorder(every=5, n_bins=10, valid_batches=2, log_dir=tmp_path/'tb')
    with pytest.raises(ValueError, match='Nothing recorded'): rec.plot_losses()
    learn = mlp_learner(dls, cbs=rec)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    assert rec.steps == list(range(1, 17)) and len(rec.train_losses) == 16 and len(rec.lrs) == 16
    assert rec.eval_steps == [0, 5, 10, 15, 16]
    assert all(0 <= a <= 1 for a in rec.valid_accs) and rec.valid_accs[-1] > rec.valid_accs[0]
    assert rec.valid_losses[-1] < rec.valid_losses[0] < 2.5
    df = rec.stats_df()
    assert len(df) == 5 * 2 and set(df.layer) == {'1.weight', '3.weight'}
    assert (df['min'] <= df['mean']).all() and (df['mean'] <= df['max']).all() and (df['std'] > 0).all()
    step, counts, edges = rec.histograms['1.weight'][-1]
    assert step == 16 and counts.sum() == 784 * 256 and len(edges) == 11
    w = learn.model[1].weight.detach()
    assert df[df.layer == '1.weight'].iloc[-1]['max'] == pytest.approx(w.max().item())
    for fig in (rec.plot_losses(), rec.plot_weight_stats(), rec.plot_weight_histograms()): assert isinstance(fig, Figure)
    # the same numbers come back from the TensorBoard event files
    tb = read_tensorboard(tmp_path/'tb')
    assert [s for s, _ in tb['scalars']['train/loss']] == rec.steps
    assert np.allclose([v for _, v in tb['scalars']['train/loss']], rec.train_losses, atol=1e-6)
    assert np.allclose([v for _, v in tb['scalars']['valid/accuracy']], rec.valid_accs, atol=1e-6)
    assert [s for s, _ in tb['scalars']['weights/3.weight/std']] == rec.eval_steps
    assert tb['histograms']['weights/1.weight'] == rec.eval_steps
    # a second fit continues the step count; reset forgets
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    assert rec.steps[-1] == 32 and rec.eval_steps[-1] == 32 and rec.eval_steps.count(16) == 1
    rec.reset(); assert rec.steps == [] and rec.stats == []

def test_recorder_bad_args_and_missing_logs(tmp_path):
    with pytest.raises(ValueError, match='positive number of batches'): TrainingRecorder(every=0)
    with pytest.raises(ValueError, match='n_bins'): TrainingRecorder(n_bins=1)
    with pytest.raises(FileNotFoundError, match='No TensorBoard event files'): read_tensorboard(tmp_path)

# ---- exercise checks ---------------------------------------------------------------------------------------------------
def test_exercise_checks():
    e = [math.exp(v) for v in EX_LOGITS]
    assert check_softmax_by_hand([v / sum(e) for v in e])
    assert not check_softmax_by_hand(e) and 'sum to 1' in repr(check_softmax_by_hand(e))
    assert check_uniform_loss(math.log(10)) and not check_uniform_loss(0.1)
    assert 'sign' in repr(check_uniform_loss(-math.log(10)))
    cm = torch.tensor(EX_CM, dtype=torch.float64)
    p, r = (cm[1, 1] / cm[:, 1].sum()).item(), (cm[1, 1] / cm[1].sum()).item()
    assert check_precision_recall((p, r)) and 'swapped' in repr(check_precision_recall((r, p)))
    assert not check_precision_recall('high')
    assert check_logsumexp(lambda x: torch.logsumexp(x, -1))
    assert 'overflow' in repr(check_logsumexp(lambda x: x.exp().sum(-1).log()))
    assert 'shape' in repr(check_logsumexp(lambda x: torch.logsumexp(x, -1, keepdim=True)))
    assert check_mlp_params(203_530) and 'biases' in repr(check_mlp_params(784 * 256 + 2560))
