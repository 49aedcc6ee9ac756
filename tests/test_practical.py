"The chapter helpers of imgcls.practical: models, fit, diagnose_fit, imbalance metrics, two heads, exercise checks."
import math
import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from imgcls.core import set_seed
from imgcls.practical import (TwoHeadNet, accuracy, balanced_accuracy, check_balanced_accuracy, check_class_weights, check_diagnosis,
                              class_report, class_weights, diagnose_fit, fit, measure_speed, mlp, n_params, oversample_indices,
                              predict_tensor, random_shift_scale, size_on_disk, tiny_cnn, two_head_loss)

torch.set_num_threads(1)


def test_models_take_any_size_and_count_params():
    m = tiny_cnn()
    for s in (7, 28, 64): assert m(torch.zeros(2, 1, s, s)).shape == (2, 10)
    assert tiny_cnn(3, 4, bn=True, p_drop=0.5)(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    assert n_params(mlp()) == 784*128 + 128 + 128*10 + 10
    assert 4*n_params(m) < size_on_disk(m) < 4*n_params(m) + 10_000
    with pytest.raises(ValueError, match='must be >= 1'): tiny_cnn(width=0)


def test_fit_learns_repeats_and_validates_input():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 8, 8, generator=g); y = (x.mean((1, 2, 3)) > 0.5).long()
    x[y == 1] += 0.5                                                  # an easy, learnable signal
    set_seed(0); m = tiny_cnn(width=4, bn=True, n_classes=2)
    r = fit(m, x, y, epochs=3, bs=32, lr=1e-2, valid=(x, y), progress=False)
    assert len(r.train_loss) == len(r.valid_loss) == 3 and r.valid_acc[-1] > 0.9
    set_seed(0); r2 = fit(tiny_cnn(width=4, bn=True, n_classes=2), x, y, epochs=3, bs=32, lr=1e-2, valid=(x, y), progress=False)
    assert r2.valid_loss == r.valid_loss                               # seeded: the same run
    with pytest.raises(TypeError, match='float tensor'): fit(m, (x*255).byte(), y)
    with pytest.raises(ValueError, match='fewer than one batch'): fit(m, x[:5], y[:5], bs=32)
    with pytest.raises(ValueError, match='divisible'): fit(m, x, y, bs=31, world=2)


def test_diagnose_fit():
    assert diagnose_fit([1.0, 0.5, 0.2, 0.05], [0.9, 0.6, 0.7, 0.9]).verdict == 'overfitting'
    assert diagnose_fit([0.3, 0.1, 0.02], [0.6, 0.55, 0.55]).verdict == 'overfitting'
    assert diagnose_fit([2.2, 1.8, 1.4], [2.1, 1.7, 1.35]).verdict == 'underfitting'
    d = diagnose_fit([2.0, 1.9], [2.0, 1.95], chance_loss=math.log(10))
    assert d.verdict == 'underfitting' and 'bigger model' in repr(d)
    good = diagnose_fit([0.5, 0.3, 0.28], [0.45, 0.33, 0.32])
    assert good.verdict == 'good' and good.remedies == []
    with pytest.raises(ValueError, match='at least 2 epochs'): diagnose_fit([1], [1])
    with pytest.raises(ValueError, match='equal length'): diagnose_fit([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match='diverged'): diagnose_fit([1, float('inf')], [1, 1])


def test_imbalance_metrics():
    yt, yp = np.array([0]*95 + [1]*5), np.zeros(100, int)
    assert balanced_accuracy(yt, yp) == 0.5
    rng = np.random.default_rng(0); a, b = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    assert balanced_accuracy(a, b) == pytest.approx(balanced_accuracy_score(a, b))
    rep = class_report(yt, yp, ['common', 'rare'])
    assert rep.loc['rare', 'recall'] == 0 and rep.attrs['accuracy'] == 0.95 and rep.attrs['balanced_accuracy'] == 0.5
    y = torch.tensor([0]*20 + [1])
    w = class_weights(y)
    assert w[1]/w[0] == pytest.approx(20) and w[y].mean() == pytest.approx(1)
    with pytest.raises(ValueError, match='no samples'): class_weights(torch.tensor([0, 2]))
    oi = oversample_indices(torch.tensor([0]*20 + [1]*3 + [2]*7))
    assert torch.bincount(torch.tensor([0]*20 + [1]*3 + [2]*7)[oi]).tolist() == [20, 20, 20]
    with pytest.raises(ValueError, match='same length'): balanced_accuracy([0, 1], [0])


def test_augmentation_and_two_heads():
    x = torch.rand(4, 1, 28, 28)
    assert random_shift_scale(x, seed=1).shape == x.shape
    assert torch.allclose(random_shift_scale(x, 0, 0), x, atol=1e-5)
    with pytest.raises(ValueError, match='N, C, H, W'): random_shift_scale(x[0])
    m = TwoHeadNet()
    a, b = m(x)
    assert a.shape == (4, 10) and b.shape == (4, 4)
    y = torch.tensor([[1, 0], [2, 1], [3, 2], [4, 3]])
    assert two_head_loss((a, b), y).ndim == 0
    assert accuracy((a, b), y) == accuracy(a, y[:, 0])
    assert isinstance(predict_tensor(m, x), tuple)
    with pytest.raises(ValueError, match=r'\(N, 2\)'): two_head_loss((a, b), y[:, 0])


def test_speed_measurement():
    sp = measure_speed(tiny_cnn(), reps=3)
    assert sp['latency_ms'] > 0 and sp['throughput'] > 0
    with pytest.raises(ValueError, match='channels, height, width'): measure_speed(tiny_cnn(), shape=(28, 28))


def test_exercise_checks():
    tr, va = [1.2, 0.6, 0.3, 0.1, 0.04], [1.1, 0.7, 0.5, 0.55, 0.7]
    assert check_diagnosis('overfitting', tr, va) and not check_diagnosis('good', tr, va)
    assert 'one of' in repr(check_diagnosis(3, tr, va))
    yt, yp = [0]*90 + [1]*10, [0]*88 + [1]*2 + [1]*4 + [0]*6
    assert check_balanced_accuracy((88/90 + 0.4)/2, yt, yp)
    assert 'plain accuracy' in repr(check_balanced_accuracy(0.92, yt, yp))
    y = torch.tensor([0]*300 + [1]*60 + [2]*15)
    assert check_class_weights(class_weights(y), y)
    assert 'scale' in repr(check_class_weights(1/torch.tensor([300., 60., 15.]), y))
    assert not check_class_weights('heavy', y)


def test_benchmark_tables_read_the_committed_results():
    "The committed bench JSON files parse into the tables the practical chapter and the README show."
    import json
    from pathlib import Path
    from imgcls.practical import benchmark_runs, course_timing
    bench = Path(__file__).resolve().parents[1]/'bench'
    res = json.loads((bench/'results.json').read_text())
    runs = benchmark_runs(res)
    assert len(runs) >= 6 and {'precision', 'train_s', 'img_per_s', 'pct_peak', 't_to_99_4'} <= set(runs.columns)
    assert set(res['targets']) >= {'lean_99_4_within_30s', 'seed_99_0_in_half_book_time'}
    assert (bench/'time_vs_accuracy.png').stat().st_size > 10_000
    timing = course_timing(json.loads((bench/'course_time.json').read_text()))
    assert 'index.ipynb' in timing.index and abs(timing['share %'].sum() - 100) < 0.5
    assert list(timing.seconds) == sorted(timing.seconds, reverse=True)
    with pytest.raises(ValueError, match='make bench'): benchmark_runs({'info': {}})
    with pytest.raises(ValueError, match='course_time.py'): course_timing([])
