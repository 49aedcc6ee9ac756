"The `imgcls` console script, run as a user runs it."
import os, subprocess, sys
from pathlib import Path

BIN = Path(sys.executable).with_name('imgcls')


def run(*args, env=None):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_help_lists_commands():
    r = run('--help')
    assert r.returncode == 0 and 'usage: imgcls COMMAND' in r.stdout and 'data' in r.stdout


def test_unknown_command_fails_clearly():
    r = run('frobnicate')
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr


def test_data_help():
    r = run('data', '--help')
    assert r.returncode == 0 and 'prepare' in r.stdout and '--path' in r.stdout


def test_data_lists_every_dataset(tmp_path):
    r = run('data', env={'IMGCLS_DATA': str(tmp_path), 'IMGCLS_CACHE': str(tmp_path/'c'), 'FASTAI_HOME': str(tmp_path/'f'), 'IMGCLS_OFFLINE': '1'})
    assert r.returncode == 0, r.stderr
    for name in ('mnist_sample', 'mnist', 'fashion_mnist', 'dogscats', 'pets', 'cifar10'): assert name in r.stdout
    assert 'embedded (5k subset)' in r.stdout and 'NOT AVAILABLE' in r.stdout


def test_data_prepare_unavailable_is_one_clear_error(tmp_path):
    r = run('data', 'prepare', 'dogscats', env={'IMGCLS_DATA': str(tmp_path), 'IMGCLS_CACHE': str(tmp_path/'c'), 'FASTAI_HOME': str(tmp_path/'f'), 'IMGCLS_OFFLINE': '1'})
    assert r.returncode != 0 and 'is not available here' in r.stderr and 'Traceback' not in r.stderr
