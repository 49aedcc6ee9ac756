"Model files (safetensors + JSON), loading without pickle, image preparation and batch prediction (imgcls.deploy)."
import json, os, pickle
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.core import set_seed
from imgcls.practical import tiny_cnn, mlp
from imgcls.deploy import (ARCHS, ModelFileError, ImageInputError, atomic_write, available_archs, build_model, expand_inputs,
                           load_model, load_train_data, model_paths, norm_stats, normalize, predict_files, prepare_image,
                           read_meta, register_arch, save_model)

torch.set_num_threads(1)
NORM = dict(mean=[0.13], std=[0.31])
DIGITS = list('0123456789')


@pytest.fixture
def saved(tmp_path):
    set_seed(0); m = tiny_cnn()
    save_model(m, tmp_path/'m', 'tiny_cnn', DIGITS, 28, NORM, metrics=dict(valid_acc=0.5))
    return m, tmp_path/'m'


def test_registry_builds_checks_and_reports():
    register_arch('fixed28', lambda n_in=1, n_classes=10: mlp(n_in, n_classes, size=28))   # a fixed-size net, for the size check
    assert build_model('tiny_cnn', 3, 2, 32)(torch.zeros(1, 3, 32, 32)).shape == (1, 2)
    assert {'tiny_cnn', 'tiny_cnn_bn', 'mlp', 'lean_cnn', 'seed_cnn'} <= set(available_archs())
    with pytest.raises(ModelFileError, match="unknown architecture 'vgg99'"): build_model('vgg99')
    with pytest.raises(ModelFileError, match='cannot take 1-channel 40x40'): build_model('fixed28', 1, 10, 40)
    register_arch('gone', 'imgcls.no_such_module:f')
    try:
        with pytest.raises(ModelFileError, match='not available here'): build_model('gone')
        assert 'not available' in available_archs()['gone']
    finally: del ARCHS['gone'], ARCHS['fixed28']


def test_lean_and_seed_cnn_from_the_cnn_chapter():
    pytest.importorskip('imgcls.cnn')
    assert build_model('lean_cnn', 1, 10, 28)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert build_model('seed_cnn', 1, 3, 28)(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


def test_round_trip_is_exact_and_atomic(saved, tmp_path):
    m, path = saved
    m2, meta = load_model(path)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad(): assert torch.equal(m2(x), m.eval()(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m.json', 'm.safetensors']
    assert meta['arch'] == 'tiny_cnn' and meta['classes'] == DIGITS and meta['input_size'] == [28, 28]
    assert meta['normalization'] == NORM and meta['metrics']['valid_acc'] == 0.5 and meta['in_channels'] == 1
    assert not m2.training
    for p in (path, str(path) + '.json', str(path) + '.safetensors'): assert load_model(p)[1]['weights_sha256'] == meta['weights_sha256']
    assert model_paths('a/b.json') == (Path('a/b.safetensors'), Path('a/b.json'))


def test_loading_never_unpickles(saved, monkeypatch):
    def boom(*a, **k): raise AssertionError('unpickling attempted')
    for mod, name in ((pickle, 'load'), (pickle, 'loads'), (pickle, 'Unpickler'), (torch, 'load')):
        monkeypatch.setattr(mod, name, boom)
    model, meta = load_model(saved[1])
    assert meta['arch'] == 'tiny_cnn'


def test_weights_must_match_metadata(saved, tmp_path):
    _, path = saved
    save_model(tiny_cnn(width=4), tmp_path/'small', 'tiny_cnn', DIGITS, 28, NORM, arch_kwargs=dict(width=4))
    (tmp_path/'m.safetensors').write_bytes((tmp_path/'small.safetensors').read_bytes())
    with pytest.raises(ModelFileError, match='SHA-256 differs'): load_model(path)
    with pytest.raises(ModelFileError, match=r'shape mismatches: 0\.weight: file \(4, 1, 3, 3\) vs model \(8, 1, 3, 3\)'): load_model(path, verify_hash=False)
    save_model(mlp(), tmp_path/'mlp', 'mlp', DIGITS, 28, NORM)
    (tmp_path/'m.safetensors').write_bytes((tmp_path/'mlp.safetensors').read_bytes())
    with pytest.raises(ModelFileError, match='missing keys'): load_model(path, verify_hash=False)
    (tmp_path/'m.safetensors').write_bytes(b'\x00garbage' * 10)
    with pytest.raises(ModelFileError, match='not a valid safetensors file'): load_model(path, verify_hash=False)


def test_bad_metadata(saved, tmp_path):
    _, path = saved
    meta = json.loads((tmp_path/'m.json').read_text())
    (tmp_path/'m.json').write_text(json.dumps({**meta, 'arch': 'resnet9000'}))
    with pytest.raises(ModelFileError, match="unknown architecture 'resnet9000'"): load_model(path)
    (tmp_path/'m.json').write_text(json.dumps({**meta, 'classes': ['a', 'b', 'c']}))
    with pytest.raises(ModelFileError, match='shape mismatches'): load_model(path)
    (tmp_path/'m.json').write_text(json.dumps({**meta, 'format': 'other/9'}))
    with pytest.raises(ModelFileError, match="reads 'imgcls-model/1'"): read_meta(path)
    del meta['classes']; (tmp_path/'m.json').write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"lacks \['classes'\]"): load_model(path)
    (tmp_path/'m.json').write_text('{oops')
    with pytest.raises(ModelFileError, match='not valid JSON'): load_model(path)


def test_missing_files(saved, tmp_path):
    with pytest.raises(ModelFileError, match='metadata file .*nothing.json not found'): load_model(tmp_path/'nothing')
    (tmp_path/'m.safetensors').unlink()
    with pytest.raises(ModelFileError, match='weights file .*m.safetensors not found'): load_model(saved[1])


def test_save_rejects_bad_input(tmp_path):
    m = tiny_cnn()
    with pytest.raises(ValueError, match='10 outputs but 2 classes'): save_model(m, tmp_path/'x', 'tiny_cnn', ['a', 'b'], 28, NORM)
    with pytest.raises(ValueError, match='one per channel'): save_model(m, tmp_path/'x', 'tiny_cnn', DIGITS, 28, dict(mean=[0, 0], std=[1, 1]))
    with pytest.raises(ValueError, match="keys 'mean' and 'std'"): save_model(m, tmp_path/'x', 'tiny_cnn', DIGITS, 28, [0.1, 0.3])
    with pytest.raises(ValueError, match='distinct'): save_model(m, tmp_path/'x', 'tiny_cnn', ['a']*10, 28, NORM)
    with pytest.raises(ValueError, match='unknown architecture'): save_model(m, tmp_path/'x', 'nope', DIGITS, 28, NORM)
    with pytest.raises(TypeError, match='nn.Module'): save_model('weights', tmp_path/'x', 'tiny_cnn', DIGITS, 28, NORM)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_old_file_on_crash(tmp_path):
    (tmp_path/'f.txt').write_text('old')
    def crash(p): p.write_text('half'); raise OSError('disk full')
    with pytest.raises(OSError, match='disk full'): atomic_write(tmp_path/'f.txt', crash)
    assert (tmp_path/'f.txt').read_text() == 'old' and [p.name for p in tmp_path.iterdir()] == ['f.txt']


@pytest.fixture
def images(tmp_path):
    d = tmp_path/'imgs'; d.mkdir()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (28, 28), dtype=np.uint8)
    Image.fromarray(a).save(d/'grey.png')
    Image.fromarray(a).convert('RGBA').save(d/'rgba.png')
    Image.fromarray(a).convert('RGB').resize((56, 40)).save(d/'rgb_big.jpg')
    good = (d/'grey.png').read_bytes(); (d/'truncated.png').write_bytes(good[:len(good)//2])
    (d/'notes.txt').write_text('hello'); (d/'empty.png').write_bytes(b'')
    return d


def test_prepare_image_converts_and_reports(images):
    x, notes = prepare_image(images/'grey.png', 1, 28); assert x.shape == (1, 28, 28) and notes == [] and 0 <= x.min() and x.max() <= 1
    x, notes = prepare_image(images/'rgba.png', 1, 28)
    assert notes == ['RGBA: alpha channel dropped', 'RGBA->L: converted to grey']
    assert torch.allclose(x, prepare_image(images/'grey.png', 1, 28)[0])   # grey stored as RGBA comes back unchanged
    x, notes = prepare_image(images/'grey.png', 3, 28); assert x.shape == (3, 28, 28) and notes == ['L->RGB: grey repeated in 3 channels']
    x, notes = prepare_image(images/'rgb_big.jpg', 1, 28); assert notes == ['RGB->L: converted to grey', 'resized 56x40->28x28']
    with pytest.raises(ImageInputError, match='mode RGBA .* model takes 1'): prepare_image(images/'rgba.png', 1, 28, strict=True)
    with pytest.raises(ImageInputError, match='mode L .* model takes 3'): prepare_image(images/'grey.png', 3, 28, strict=True)


@pytest.mark.parametrize('name,msg', [('truncated.png', 'corrupt or truncated'), ('notes.txt', 'not an image'),
                                      ('empty.png', 'empty file'), ('missing.png', 'file not found')])
def test_prepare_image_errors(images, name, msg):
    with pytest.raises(ImageInputError, match=msg): prepare_image(images/name, 1, 28)


def test_expand_inputs(images, tmp_path):
    got = expand_inputs([images, str(images/'*.jpg'), str(tmp_path/'*.zzz'), tmp_path/'nope.png'])
    names = [Path(f).name for f, _ in got]
    assert names[:5] == ['empty.png', 'grey.png', 'rgb_big.jpg', 'rgba.png', 'truncated.png']   # the folder's image files, sorted
    assert names[5] == 'rgb_big.jpg' and got[6][1] == 'pattern matched no files' and got[7] == (str(tmp_path/'nope.png'), None)
    (tmp_path/'e').mkdir(); assert expand_inputs([tmp_path/'e'])[0][1] == 'folder holds no image files'


def test_predict_files_one_bad_file_never_stops_the_others(saved, images):
    model, meta = load_model(saved[1])
    res = predict_files(model, meta, [images, images/'notes.txt', images/'missing.png'], k=3, progress=False)
    by = {Path(r['file']).name: r for r in res}
    assert [n for n, r in by.items() if r['ok']] == ['grey.png', 'rgb_big.jpg', 'rgba.png']
    for n in ('empty.png', 'truncated.png', 'notes.txt', 'missing.png'): assert not by[n]['ok'] and by[n]['error']
    for r in res:
        if r['ok']:
            ps = [p['prob'] for p in r['predictions']]
            assert len(ps) == 3 and ps == sorted(ps, reverse=True) and 0 < sum(ps) <= 1 + 1e-6
            assert all(p['label'] in DIGITS for p in r['predictions'])
    assert by['grey.png']['predictions'] == by['rgba.png']['predictions']   # same pixels, same answer
    assert predict_files(model, meta, [images/'grey.png'], k=50, progress=False)[0]['predictions'].__len__() == 10
    with pytest.raises(ValueError, match='k must be >= 1'): predict_files(model, meta, [images], k=0)


def test_normalisation():
    x = torch.rand(10, 3, 8, 8)
    st = norm_stats(x)
    xn = normalize(x, st)
    assert torch.allclose(xn.mean((0, 2, 3)), torch.zeros(3), atol=1e-5) and torch.allclose(xn.std((0, 2, 3)), torch.ones(3), atol=1e-4)
    with pytest.raises(ValueError, match='3 channels but the normalisation has 1'): normalize(x, NORM)


def test_load_train_data_from_a_folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in ('cats', 'dogs'):
        (tmp_path/'pets'/c).mkdir(parents=True)
        for i in range(10): Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path/'pets'/c/f'{i}.png')
    (tmp_path/'pets'/'dogs'/'bad.png').write_bytes(b'nope')
    td = load_train_data(str(tmp_path/'pets'), size=16, verbose=False)
    assert td.classes == ['cats', 'dogs'] and td.in_channels == 3 and td.size == 16
    assert len(td.x_train) + len(td.x_valid) == 20 and len(td.x_valid) in (3, 4)   # 20% of 21 files held out; the bad file skipped
    assert td.x_train.dtype == torch.float32 and 0 <= td.x_train.min() and td.x_train.max() <= 1
    with pytest.raises(ValueError, match='unknown dataset'): load_train_data(str(tmp_path/'nowhere'))
    (tmp_path/'one'/'a').mkdir(parents=True); Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path/'one'/'a'/'x.png')
    with pytest.raises(ValueError, match='at least 2 class sub-folders'): load_train_data(str(tmp_path/'one'))


def test_load_train_data_mnist_sample():
    td = load_train_data('mnist_sample', n_train=100, n_valid=50, verbose=False)
    assert td.classes == ['3', '7'] and td.x_train.shape == (100, 1, 28, 28) and set(td.y_valid.tolist()) <= {0, 1}
    assert 'mnist' in td.description
    with pytest.raises(ValueError, match='grey-scale'): load_train_data('mnist', in_channels=3)
