"End to end: the real `imgcls` console script, run in a subprocess (train, evaluate, predict, --help)."
import json, os, re, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from PIL import Image

IMGCLS = Path(sys.executable).with_name('imgcls')
ENV = {**os.environ, 'IMGCLS_OFFLINE': '1', 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}


def imgcls(*args, cwd=None):
    cmd = [str(IMGCLS) if IMGCLS.exists() else 'imgcls', *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "One short real training run of the 3s-vs-7s model, shared by the tests below."
    d = tmp_path_factory.mktemp('cli')
    p = imgcls('train', 'mnist_sample', '--arch', 'tiny_cnn_bn', '--n_train', 1500, '--n_valid', 400, '--epochs', 1,
               '--out', d/'m37', '--no_progress')
    assert p.returncode == 0, p.stderr
    return d, p


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
    "Real MNIST test 3s and 7s as PNG files, plus a bad file."
    from imgcls.data import load_arrays
    d = tmp_path_factory.mktemp('digits')
    t = load_arrays('mnist').test
    keep = [i for i in range(100) if t.y[i] in (3, 7)][:4]
    for n, i in enumerate(keep): Image.fromarray(t.x[i]).save(d/f'{n}_{t.y[i]}.png')
    Image.fromarray(t.x[keep[0]]).convert('RGBA').save(d/f'rgba_{t.y[keep[0]]}.png')
    (d/'broken.png').write_bytes((d/f'0_{t.y[keep[0]]}.png').read_bytes()[:100])
    return d


@pytest.mark.parametrize('cmd,opts', [('train', ['--arch', '--epochs', '--lr', '--size', '--out', '--procs']),
                                      ('evaluate', ['--cm', '--json', 'model', 'data']),
                                      ('predict', ['--k', '--json', '--strict', 'images'])])
def test_help(cmd, opts):
    p = imgcls(cmd, '--help')
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f'usage: imgcls {cmd}') and all(o in p.stdout for o in opts)


def test_top_level_help_lists_commands():
    p = imgcls('--help')
    assert p.returncode == 0 and all(c in p.stdout for c in ('train', 'evaluate', 'predict', 'data'))


def test_train_reports_and_saves(trained):
    d, p = trained
    acc = float(re.search(r'valid accuracy ([0-9.]+)', p.stdout).group(1))
    assert acc > 0.9, p.stdout                 # 3 vs 7 is easy; one short epoch is enough
    assert 'mnist_sample' in p.stdout and 'source: ' in p.stdout   # it says which data it used
    assert (d/'m37.safetensors').is_file() and json.loads((d/'m37.json').read_text())['classes'] == ['3', '7']


def test_predict_table_with_a_bad_file(trained, digits):
    d, _ = trained
    p = imgcls('predict', d/'m37', digits, digits/'missing.png', '--k', 2, '--no_progress')
    assert p.returncode == 1                   # some files failed ...
    lines = {Path(l.split()[0]).name: l for l in p.stdout.splitlines()[2:]}
    for f in digits.glob('*_*.png'):           # ... but every good one was predicted, correctly
        assert lines[f.name].split()[1] == f.stem.split('_')[1], lines[f.name]
    assert 'alpha channel dropped' in lines[next(digits.glob('rgba_*')).name]
    assert 'ERROR' in lines['broken.png'] and 'ERROR' in lines['missing.png']
    assert 'missing.png: file not found' in p.stderr and '2 of 7 file(s) failed' in p.stderr


def test_predict_json_and_glob(trained, digits):
    d, _ = trained
    p = imgcls('predict', f"{d/'m37'}.json", str(digits/'[0-9]_*.png'), '--json', '--k', 1)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert len(out) == 4 and all(r['ok'] and len(r['predictions']) == 1 for r in out)
    assert all(r['predictions'][0]['label'] == Path(r['file']).stem.split('_')[1] for r in out)
    assert 'predicting' in p.stderr            # the progress bar goes to stderr, so --json stays parseable


def test_predict_strict_and_bad_model(trained, digits, tmp_path):
    d, _ = trained
    p = imgcls('predict', d/'m37', next(digits.glob('rgba_*')), '--strict', '--no_progress')
    assert p.returncode == 1 and 'mode RGBA' in p.stderr
    p = imgcls('predict', tmp_path/'nomodel', digits)
    assert p.returncode == 2 and 'nomodel.json not found' in p.stderr


def test_evaluate(trained, tmp_path):
    d, _ = trained
    p = imgcls('evaluate', d/'m37', 'mnist_sample', '--n_valid', 500, '--cm', tmp_path/'cm.png', '--json')
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r['n'] == 500 and 0.9 < r['accuracy'] <= 1 and 0.9 < r['balanced_accuracy'] <= 1
    assert np.array(r['confusion']).sum() == 500 and set(r['per_class']) == {'3', '7'}
    assert (tmp_path/'cm.png').read_bytes()[:4] == b'\x89PNG'
    p = imgcls('evaluate', d/'m37', 'fashion_mnist', '--n_valid', 10)
    assert p.returncode == 2 and 'differ from the model' in p.stderr


def test_train_on_a_folder_and_bad_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for c, v in (('dark', 40), ('light', 210)):
        for s in ('train', 'valid'):
            (tmp_path/'ds'/s/c).mkdir(parents=True)
            for i in range(24 if s == 'train' else 8):
                Image.fromarray(np.clip(rng.normal(v, 20, (16, 16, 3)), 0, 255).astype(np.uint8)).save(tmp_path/'ds'/s/c/f'{i}.png')
    p = imgcls('train', tmp_path/'ds', '--size', 16, '--bs', 8, '--epochs', 2, '--out', tmp_path/'m', '--no_progress')
    assert p.returncode == 0, p.stderr
    meta = json.loads((tmp_path/'m.json').read_text())
    assert meta['classes'] == ['dark', 'light'] and meta['in_channels'] == 3 and meta['input_size'] == [16, 16]
    assert float(re.search(r'valid accuracy ([0-9.]+)', p.stdout).group(1)) >= 0.9
    p = imgcls('train', 'imagenet22k', '--out', tmp_path/'x')
    assert p.returncode == 2 and 'unknown dataset' in p.stderr and not (tmp_path/'x.json').exists()
