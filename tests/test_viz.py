"Contracts of imgcls.viz: the plotting helpers every chapter imports."
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from imgcls.viz import (to_numpy_image, show_image, show_images, pixel_heatmap_df, plot_channels, plot_curves,
                        check_greyscale, check_brightest_channel, check_crop_to_ink)

@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close('all')

@pytest.mark.parametrize('img, shape', [
    (torch.rand(28, 28), (28, 28)), (torch.rand(1, 28, 28), (28, 28)), (torch.rand(3, 5, 7), (5, 7, 3)),
    (np.zeros((5, 7, 3), np.uint8), (5, 7, 3)), (Image.new('L', (7, 5)), (5, 7)), (Image.new('RGB', (7, 5)), (5, 7, 3))])
def test_to_numpy_image_shapes(img, shape):
    assert to_numpy_image(img).shape == shape

def test_to_numpy_image_rescales_out_of_range_colour_floats():
    a = to_numpy_image(torch.randn(3, 4, 4) * 5)
    assert a.min() >= 0 and a.max() <= 1

def test_to_numpy_image_bad_input():
    with pytest.raises(ValueError, match='show_images'): to_numpy_image(torch.rand(4, 1, 28, 28))
    with pytest.raises(ValueError, match='H×W'): to_numpy_image(torch.rand(28))
    with pytest.raises(TypeError, match='got list'): to_numpy_image([[0, 1]])
    with pytest.raises(TypeError, match='real numbers'): to_numpy_image(np.array([['a', 'b']]))

def test_show_image_returns_axes_with_title():
    ax = show_image(torch.rand(28, 28), title='hi')
    assert isinstance(ax, matplotlib.axes.Axes) and ax.get_title() == 'hi'
    assert ax.images[0].get_cmap().name == 'gray'

def test_show_image_uses_given_axes_and_colour():
    fig, ax = plt.subplots()
    assert show_image(torch.rand(3, 8, 8), ax=ax, cmap='viridis') is ax
    assert ax.images[0].get_array().shape == (8, 8, 3)

def test_show_images_grid():
    fig = show_images(torch.rand(10, 28, 28), titles=[str(i) for i in range(10)], ncols=4, suptitle='grid')
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 12 and len([a for a in fig.axes if a.images]) == 10
    assert [a.get_title() for a in fig.axes[:3]] == ['0', '1', '2']
    assert fig._suptitle.get_text() == 'grid'

def test_show_images_mixed_list():
    fig = show_images([torch.rand(28, 28), np.zeros((5, 5, 3)), Image.new('L', (9, 9))])
    assert len([a for a in fig.axes if a.images]) == 3

def test_show_images_bad_input():
    with pytest.raises(ValueError, match='no images'): show_images([])
    with pytest.raises(ValueError, match='2 images but 1 titles'): show_images([torch.rand(4, 4)] * 2, titles=['a'])
    with pytest.raises(ValueError, match='use `show_image`'): show_images(torch.rand(4, 4))
    with pytest.raises(TypeError): show_images(3)

def test_pixel_heatmap_df():
    img = torch.arange(100, dtype=torch.uint8).view(10, 10)
    sty = pixel_heatmap_df(img, rows=slice(2, 5), cols=range(3, 7))
    assert isinstance(sty, pd.io.formats.style.Styler)
    assert sty.data.shape == (3, 4) and list(sty.data.index) == [2, 3, 4] and list(sty.data.columns) == [3, 4, 5, 6]
    assert (sty.data.values == img[2:5, 3:7].numpy()).all()
    assert 'background-color' in sty.to_html()
    assert pixel_heatmap_df(torch.rand(1, 6, 6), cols=(0, 3)).data.shape == (6, 3)

def test_pixel_heatmap_df_bad_input():
    with pytest.raises(ValueError, match='grey-scale'): pixel_heatmap_df(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match='selects no pixels'): pixel_heatmap_df(torch.rand(8, 8), rows=slice(20, 30))
    with pytest.raises(TypeError, match='slice'): pixel_heatmap_df(torch.rand(8, 8), rows=3)

def test_plot_channels():
    from skimage import data as skdata
    fig = plot_channels(skdata.astronaut())
    assert len(fig.axes) == 3 and 'red' in fig.axes[0].get_title() and 'blue' in fig.axes[2].get_title()
    red = fig.axes[0].images[0].get_array()
    assert red[..., 1:].max() == 0 and red[..., 0].max() > 0  # only the red channel is lit
    assert len(plot_channels(torch.rand(3, 6, 6)).axes) == 3

def test_plot_channels_bad_input():
    with pytest.raises(ValueError, match='3 channels'): plot_channels(torch.rand(28, 28))

def test_plot_curves():
    fig = plot_curves({'loss': [1.0, 0.5, 0.2], 'acc': torch.tensor([0.5, 0.8, 0.9])}, xlabel='step', title='t')
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and ax.get_xlabel() == 'step' and ax.get_title() == 't'
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ['loss', 'acc']

def test_plot_curves_bad_input():
    n = len(plt.get_fignums())
    with pytest.raises(TypeError, match='non-empty dict'): plot_curves({})
    with pytest.raises(TypeError, match='non-empty dict'): plot_curves([1, 2])
    with pytest.raises(ValueError, match='non-empty'): plot_curves({'loss': []})
    with pytest.raises(TypeError, match='list of numbers'): plot_curves({'loss': ['a']})
    assert len(plt.get_fignums()) == n  # no half-drawn figures left behind

def test_exercise_checks():
    from skimage import data as skdata
    grey = torch.from_numpy(skdata.chelsea()).float() @ torch.tensor([0.299, 0.587, 0.114]) / 255
    assert check_greyscale(grey) and not check_greyscale(grey * 255) and not check_greyscale(grey[None])
    assert 'shape' in repr(check_greyscale(grey[None]))
    assert check_brightest_channel('red') and not check_brightest_channel('blue') and not check_brightest_channel('x')
    def crop(img):
        r, c = (img != 0).any(1).nonzero().flatten(), (img != 0).any(0).nonzero().flatten()
        return img[:0, :0] if len(r) == 0 else img[r[0]:r[-1] + 1, c[0]:c[-1] + 1]
    assert check_crop_to_ink(crop)
    assert not check_crop_to_ink(lambda x: x) and not check_crop_to_ink(42)
    assert 'raised' in repr(check_crop_to_ink(lambda x: 1 / 0))
