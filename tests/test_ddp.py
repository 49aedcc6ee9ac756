"Data-parallel training with PyTorch DDP (gloo, 2 CPU processes) gives the single-process result, and saves once."
import json, os, re, subprocess, sys
from pathlib import Path
import pytest
import torch

from imgcls.core import set_seed
from imgcls.practical import fit, accuracy, predict_tensor
from imgcls.deploy import build_model, fit_ddp, load_model, load_train_data, norm_stats, normalize

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason='torch.distributed with gloo is not available')


@pytest.fixture(scope='module')
def data():
    td = load_train_data('mnist_sample', n_train=1536, n_valid=500, verbose=False)
    st = norm_stats(td.x_train)
    return td, st, normalize(td.x_train, st), normalize(td.x_valid, st)


def test_ddp_matches_single_process_and_saves_once(data, tmp_path):
    td, st, xt, xv = data
    torch.set_num_threads(1)
    set_seed(42)
    single = fit(build_model('tiny_cnn', 1, 2, 28), xt, td.y_train, epochs=2, bs=64, lr=1e-2, valid=(xv, td.y_valid), progress=False)
    meta = dict(arch='tiny_cnn', classes=td.classes, input_size=28, normalization=st, in_channels=1)
    res = fit_ddp('tiny_cnn', xt, td.y_train, (xv, td.y_valid), procs=2, epochs=2, bs=64, lr=1e-2, out=tmp_path/'ddp', meta=meta)
    ranks = res['ranks']
    assert [r['rank'] for r in ranks] == [0, 1] and len({r['pid'] for r in ranks}) == 2   # both ranks finished, in two processes
    assert res['saved_by'] == [0]                                                         # saved once, by rank 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ddp.json', 'ddp.safetensors']
    for r in ranks:
        assert len(r['train_loss']) == 2
        assert abs(r['train_loss'][-1] - single.train_loss[-1]) < 1e-3
        assert abs(r['valid_loss'][-1] - single.valid_loss[-1]) < 1e-3
        assert abs(r['valid_acc'][-1] - single.valid_acc[-1]) <= 0.004    # at most 2 of 500 images
    assert single.valid_acc[-1] > 0.9
    model, meta = load_model(tmp_path/'ddp')
    assert abs(accuracy(predict_tensor(model, xv), td.y_valid) - single.valid_acc[-1]) <= 0.004
    assert meta['metrics']['procs'] == 2


def test_ddp_rejects_uneven_batches(data):
    td, st, xt, _ = data
    with pytest.raises(ValueError, match='divisible by procs=2'): fit_ddp('tiny_cnn', xt, td.y_train, procs=2, bs=63)
    with pytest.raises(ValueError, match='needs `meta`'): fit_ddp('tiny_cnn', xt, td.y_train, procs=2, out='x')


def test_train_command_with_two_processes(tmp_path):
    exe = Path(sys.executable).with_name('imgcls')
    p = subprocess.run([str(exe), 'train', 'mnist_sample', '--arch', 'tiny_cnn', '--n_train', '1024', '--n_valid', '300',
                        '--procs', '2', '--out', str(tmp_path/'m'), '--no_progress'],
                       capture_output=True, text=True, timeout=300, env={**os.environ, 'IMGCLS_OFFLINE': '1'})
    assert p.returncode == 0, p.stderr
    assert '2 process(es)' in p.stdout and float(re.search(r'valid accuracy ([0-9.]+)', p.stdout).group(1)) > 0.85
    assert json.loads((tmp_path/'m.json').read_text())['metrics']['procs'] == 2
