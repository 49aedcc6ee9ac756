"Shared pytest set-up: never touch the network; use the local data directory when there is one."
import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ['IMGCLS_OFFLINE'] = '1'
if not os.environ.get('IMGCLS_DATA') and (ROOT.parent/'shared'/'data').is_dir():
    os.environ['IMGCLS_DATA'] = str(ROOT.parent/'shared'/'data')
os.environ.setdefault('MPLBACKEND', 'Agg')

@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    "Point every data source (local dir, cache, fastai cache) at empty folders under `tmp_path`."
    for var, sub in (('IMGCLS_DATA', 'local'), ('IMGCLS_CACHE', 'cache'), ('FASTAI_HOME', 'fastai')):
        (tmp_path/sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path/sub))
    monkeypatch.setenv('IMGCLS_OFFLINE', '1')
    return tmp_path

def has_full_mnist():
    d = os.environ.get('IMGCLS_DATA')
    return bool(d) and (Path(d)/'mnist'/'train-images-idx3-ubyte.gz').is_file()
