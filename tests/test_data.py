"Contracts of `imgcls.data`: every resolution step, integrity checks, offline misses, bad files, idempotency."
import gzip, json, os, shutil, tarfile
from pathlib import Path
import numpy as np
import pytest
from PIL import Image

import imgcls.data as D
from conftest import has_full_mnist

SHARED = Path(os.environ.get('IMGCLS_DATA', '/nonexistent'))


def make_mnist_sample_layout(root: Path, n=3):
    "A tiny fake MNIST_SAMPLE layout at `root`."
    for d in D.LAYOUT_DIRS['mnist_sample']:
        (root/d).mkdir(parents=True, exist_ok=True)
        for i in range(n): Image.fromarray(np.full((28, 28), (i*40) % 256, np.uint8)).save(root/d/f'{i}.png')
    return root


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown dataset 'bogus'.*mnist_sample"): D.locate('bogus')


def test_explicit_path_wins(isolated_data):
    lay = make_mnist_sample_layout(isolated_data/'mine')
    ds = D.get_dataset('mnist_sample', path=lay, verbose=False)
    assert (ds.source, ds.path, ds.subset) == ('explicit', lay, False)


def test_explicit_path_that_does_not_exist_is_reported(isolated_data):
    loc = D.locate('dogscats', path=isolated_data/'nope')
    assert not loc.found and 'does not exist' in loc.tried[0]


def test_fastai_cache_step(isolated_data):
    make_mnist_sample_layout(isolated_data/'fastai'/'data'/'mnist_sample')
    ds = D.get_dataset('mnist_sample', verbose=False)
    assert ds.source == 'fastai-cache' and not ds.subset


def test_download_step_uses_fastai_untar_data(isolated_data, monkeypatch):
    "Online, a missing dataset is fetched through fastai's `untar_data` (mocked: no test touches the network)."
    import fastai.data.external as ext
    dl = make_mnist_sample_layout(isolated_data/'downloaded')
    calls = []
    monkeypatch.setattr(ext, 'untar_data', lambda url, *a, **k: calls.append(url) or dl)
    monkeypatch.delenv('IMGCLS_OFFLINE')
    ds = D.get_dataset('mnist_sample', verbose=False)
    assert ds.source == 'download' and calls == [D.FASTAI_URLS['mnist_sample']] and not ds.subset


def test_failed_download_falls_back_to_embedded_subset(isolated_data, monkeypatch):
    import fastai.data.external as ext
    def boom(*a, **k): raise OSError('no network')
    monkeypatch.setattr(ext, 'untar_data', boom)
    monkeypatch.delenv('IMGCLS_OFFLINE')
    ds = D.get_dataset('mnist_sample', verbose=False)
    assert ds.source == 'embedded' and ds.subset and 'EMBEDDED 5k SUBSET' in ds.describe()


def test_embedded_subset_layout_and_idempotent_rebuild(isolated_data):
    ds = D.get_dataset('mnist_sample', verbose=False)
    assert ds.source == 'embedded' and ds.subset and ds.path.name == 'mnist_sample-embedded5k'
    marker = ds.path/D.MARKER
    meta = json.loads(marker.read_text())
    assert meta['subset'] is True
    n3 = len(list((ds.path/'train'/'3').glob('*.png')))
    assert n3 == 400                        # 400 of each digit train, 100 held out
    rows = (ds.path/'labels.csv').read_text().splitlines()
    assert rows[0] == 'name,label' and len(rows) - 1 == sum(len(list((ds.path/d).glob('*.png'))) for d in D.LAYOUT_DIRS['mnist_sample'])
    mtime = marker.stat().st_mtime_ns
    ds2 = D.get_dataset('mnist_sample', verbose=False)
    assert ds2.path == ds.path and marker.stat().st_mtime_ns == mtime   # nothing rebuilt


def test_embedded_arrays_are_labelled_as_a_subset(isolated_data):
    a = D.load_arrays('mnist')
    assert a.subset and (len(a.train), len(a.test)) == (4000, 1000) and '5k' in a.describe()
    assert a.train.x.dtype == np.uint8 and a.train.x.shape[1:] == (28, 28)


@pytest.mark.skipif(not has_full_mnist(), reason='needs ../shared/data (IMGCLS_DATA) with the full MNIST')
def test_local_data_directory_gives_full_verified_mnist():
    a = D.load_arrays('mnist')
    assert (a.source, len(a.train), len(a.test), a.subset) == ('local', 60000, 10000, False)
    assert a.train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(a.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_checksum_mismatch_names_the_file(isolated_data):
    mn = isolated_data/'local'/'mnist'; mn.mkdir()
    for fn in D.MNIST_IDX: (mn/fn).write_bytes(gzip.compress(b'\x00\x00\x08\x01' + b'\x00\x00\x00\x01' + b'\x07'))
    with pytest.raises(D.ChecksumError, match=r'train-images-idx3-ubyte.gz is corrupt.*expected 440fcabf'):
        D.load_arrays('mnist')


@pytest.mark.skipif(not (SHARED/D.DOGSCATS_TGZ[0]).is_file(), reason='needs the dogscats archive in IMGCLS_DATA')
def test_truncated_known_archive_fails_its_checksum(isolated_data):
    src = SHARED/D.DOGSCATS_TGZ[0]
    (isolated_data/'local'/D.DOGSCATS_TGZ[0]).write_bytes(src.read_bytes()[:1_000_000])
    with pytest.raises(D.ChecksumError, match='dogscats_kaggle_200px_2500.tgz is corrupt'):
        D.get_dataset('dogscats', verbose=False)
    assert not (isolated_data/'cache'/'dogscats').exists()


def test_truncated_archive_without_checksum_is_a_clear_error(isolated_data):
    src = isolated_data/'full.tgz'
    lay = make_mnist_sample_layout(isolated_data/'mnist_sample', n=50)
    with tarfile.open(src, 'w:gz') as tf: tf.add(lay, arcname='mnist_sample')
    bad = isolated_data/'cut.tgz'; bad.write_bytes(src.read_bytes()[:len(src.read_bytes())//2])
    with pytest.raises(D.DataError, match='truncated or corrupt'):
        D.get_dataset('dogscats', path=bad, verbose=False)
    assert not list((isolated_data/'cache').glob('*dogscats*'))   # nothing half-built left behind


def test_offline_miss_says_what_was_tried_and_how_to_fix(isolated_data):
    with pytest.raises(D.DataUnavailableError) as e: D.get_dataset('dogscats', verbose=False)
    msg = str(e.value)
    for part in ('IMGCLS_DATA', 'fastai cache', 'skipped, IMGCLS_OFFLINE', 'To fix it', 'dogscats.tgz'):
        assert part in msg
    assert e.value.__cause__ is None and e.value.__context__ is None   # no chained stack trace


def test_offline_miss_fashion_mentions_debian_package(isolated_data, monkeypatch):
    monkeypatch.setattr(D, 'DEBIAN_FASHION_DIR', isolated_data/'no-debian')
    with pytest.raises(D.DataUnavailableError, match='apt-get install dataset-fashion-mnist'):
        D.load_arrays('fashion_mnist')


def test_stray_and_corrupt_files_in_class_folders(isolated_data):
    lay = make_mnist_sample_layout(isolated_data/'mnist_sample')
    (lay/'train'/'3'/'notes.txt').write_text('not an image')
    bad = D.find_bad_images(lay)
    assert [p.name for p in bad] == ['notes.txt'] and 'not an image' in bad[lay/'train'/'3'/'notes.txt']
    a = D.load_arrays('mnist_sample', path=lay)                       # the stray .txt is not loaded
    assert len(a.train) == 6
    (lay/'train'/'7'/'broken.png').write_bytes(b'\x89PNG half a file')
    assert 'does not decode' in D.find_bad_images(lay)[lay/'train'/'7'/'broken.png']
    with pytest.raises(D.DataError, match=r'broken.png is not a readable image.*find_bad_images'):
        D.load_arrays('mnist_sample', path=lay)


def test_atomic_build_leaves_nothing_after_a_crash(tmp_path):
    def crash(tmp): (tmp/'half').write_text('x'); raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt): D.atomic_build(tmp_path/'ds', crash, {})
    assert list(tmp_path.iterdir()) == []
    (tmp_path/'ds').mkdir(); (tmp_path/'ds'/'stale').write_text('no marker: incomplete')
    D.atomic_build(tmp_path/'ds', lambda t: (t/'ok').write_text('y'), {})
    assert sorted(o.name for o in (tmp_path/'ds').iterdir()) == [D.MARKER, 'ok']


def test_read_idx_rejects_truncated_and_bad_magic(tmp_path):
    (tmp_path/'t.idx').write_bytes(b'\x00\x00\x08\x01' + (10).to_bytes(4, 'big') + b'\x01\x02')
    with pytest.raises(D.DataError, match='truncated'): D.read_idx(tmp_path/'t.idx')
    (tmp_path/'m.idx').write_bytes(b'PK\x03\x04')
    with pytest.raises(D.DataError, match='magic'): D.read_idx(tmp_path/'m.idx')


def test_tensor_dls_shapes_and_ranges(isolated_data):
    dls = D.tensor_dls(D.load_arrays('mnist'), bs=32)
    xb, yb = dls.one_batch()
    assert xb.shape == (32, 1, 28, 28) and 0 <= float(xb.min()) and float(xb.max()) <= 1
    with pytest.raises(ValueError, match='must match'): D.TensorDataset(xb, yb[:3])


def test_data_status_lists_every_dataset(isolated_data):
    rows = {r['dataset']: r for r in D.data_status()}
    assert set(rows) == set(D.DATASETS)
    assert rows['mnist']['source'] == 'embedded (5k subset)' and rows['mnist']['verified'].startswith('yes')
    assert rows['dogscats']['source'] == 'NOT AVAILABLE'


def test_mnist_sample_arrays_are_threes_and_sevens(isolated_data):
    a = D.load_arrays('mnist_sample')
    assert a.classes == ['3', '7'] and set(np.unique(a.train.y)) == {0, 1} and a.subset
    assert (len(a.train), len(a.test)) == (800, 200)
