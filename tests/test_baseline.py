"Contracts of imgcls.baseline, and the pixel-similarity accuracy band on the real mnist_sample validation split."
import pytest
import torch
import torch.nn.functional as F
from imgcls.baseline import (read_png_stack, load_threes_sevens, ThreesSevens, mean_image, l1_distance, rmse_distance,
                             PixelSimilarity, pixel_similarity_accuracy, check_broadcast_shape, check_distance_fn,
                             check_median_accuracy, median_accuracy)

@pytest.fixture(scope='module')
def data():
    return load_threes_sevens()

def test_load_threes_sevens(data):
    assert isinstance(data, ThreesSevens)
    for t in (data.train3, data.train7, data.valid3, data.valid7):
        assert t.dtype == torch.float32 and t.shape[1:] == (28, 28) and 0 <= t.min() and t.max() <= 1
    assert 'mnist_sample' in data.describe() and 'valid' in data.describe()
    assert load_threes_sevens() is data  # read once, then cached

def test_read_png_stack(tmp_path):
    import numpy as np
    from PIL import Image
    for i in (10, 2): Image.fromarray(np.full((4, 5), i * 10, np.uint8)).save(tmp_path/f'{i}.png')
    x = read_png_stack(tmp_path)
    assert x.shape == (2, 4, 5) and torch.allclose(x[:, 0, 0], torch.tensor([20, 100]) / 255)  # numeric order
    with pytest.raises(FileNotFoundError, match='No PNG'): read_png_stack(tmp_path/'nothing')

def test_mean_image():
    x = torch.stack([torch.zeros(3, 3), torch.ones(3, 3)])
    assert torch.equal(mean_image(x), torch.full((3, 3), 0.5))
    with pytest.raises(TypeError, match='float'): mean_image(x.byte())
    with pytest.raises(ValueError, match='at least 3 axes'): mean_image(torch.rand(3, 3))
    with pytest.raises(TypeError, match='torch tensor'): mean_image([[1.0]])

def test_distances_match_torch():
    a, b = torch.rand(28, 28), torch.rand(28, 28)
    assert torch.allclose(l1_distance(a, b), F.l1_loss(a, b))
    assert torch.allclose(rmse_distance(a, b), F.mse_loss(a, b).sqrt())

def test_distances_broadcast():
    stack, one = torch.rand(6, 28, 28), torch.rand(28, 28)
    d = l1_distance(stack, one)
    assert d.shape == (6,) and torch.allclose(d[2], F.l1_loss(stack[2], one))
    assert rmse_distance(torch.rand(2, 3, 4, 4), torch.rand(4, 4)).shape == (2, 3)

def test_distances_bad_input():
    with pytest.raises(ValueError, match='Cannot compare'): l1_distance(torch.rand(5, 28, 28), torch.rand(20, 20))
    with pytest.raises(TypeError, match='convert it to float'): rmse_distance(torch.ones(4, 4, dtype=torch.uint8), torch.rand(4, 4))
    with pytest.raises(ValueError, match='at least 2 axes'): l1_distance(torch.rand(4), torch.rand(4))

def test_pixel_similarity_contract():
    threes, sevens = torch.zeros(4, 5, 5), torch.ones(4, 5, 5)
    m = PixelSimilarity().fit(threes, sevens)
    assert m.is_3(torch.zeros(5, 5)).item() and not m.is_3(torch.ones(5, 5)).item()
    assert m.predict(torch.stack([torch.zeros(5, 5), torch.ones(5, 5)])).tolist() == [3, 7]
    with pytest.raises(RuntimeError, match='fit'): PixelSimilarity().is_3(torch.zeros(5, 5))
    with pytest.raises(RuntimeError, match='fit'): pixel_similarity_accuracy(threes, sevens, PixelSimilarity())
    acc = pixel_similarity_accuracy(threes, sevens, m)
    assert acc == {'3': 1.0, '7': 1.0, 'mean': 1.0, 'overall': 1.0}

def test_accuracy_band_on_real_data(data):
    for dist in (l1_distance, rmse_distance):
        acc = pixel_similarity_accuracy(data.valid3, data.valid7, PixelSimilarity(dist).fit(data.train3, data.train7))
        assert set(acc) == {'3', '7', 'mean', 'overall'}
        assert acc['overall'] >= 0.93 and acc['mean'] >= 0.93
        assert acc['7'] > acc['3']  # the 7s are the easier class for this baseline
        n3, n7 = len(data.valid3), len(data.valid7)
        assert acc['overall'] == pytest.approx((acc['3'] * n3 + acc['7'] * n7) / (n3 + n7))

def test_exercise_checks(data):
    assert check_broadcast_shape((64, 10, 28, 28), (64, 1, 28, 28), (10, 28, 1))
    assert not check_broadcast_shape((64, 28, 28), (64, 1, 28, 28), (10, 28, 1))
    assert check_broadcast_shape(None, (3, 4), (5, 4)) and not check_broadcast_shape((5, 4), (3, 4), (5, 4))
    assert check_distance_fn(lambda a, b: (a - b).abs().mean((-1, -2)))
    assert not check_distance_fn(lambda a, b: (a - b).abs().mean())
    assert not check_distance_fn(lambda a, b: (a - b).mean((-1, -2)))
    assert not check_distance_fn('l1')
    m = median_accuracy(data)
    assert 0.9 < m <= 1 and check_median_accuracy(m, data) and not check_median_accuracy(m - 0.01, data)
