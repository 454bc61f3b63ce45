"""data/dataset.py: ImageFolderDataset reads NVIDIA-made zips, our zips and plain folders lazily and exactly,
mirrors and subsets like NVIDIA's, fails clearly on unusable sets, and works under multi-worker DataLoaders."""
import io
import json
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from data import DatasetError
from data.convert import convert
from data.dataset import ImageFolderDataset


def nvidia_zip(path, images, labels=None, meta=None):
    """Exactly NVIDIA's dataset_tool layout: stored zip, uncompressed PNGs, dataset.json."""
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_STORED) as z:
        names = []
        for idx, img in enumerate(images):
            name = f'{idx:08d}'[:5] + f'/img{idx:08d}.png'
            buf = io.BytesIO()
            PIL.Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(buf, format='png', compress_level=0)
            z.writestr(name, buf.getvalue())
            names.append(name)
        if meta is None:
            meta = {'labels': [[n, v] for n, v in zip(names, labels)] if labels is not None else None}
        z.writestr('dataset.json', json.dumps(meta))


@pytest.fixture
def images():
    return np.random.RandomState(0).randint(0, 256, size=(10, 16, 16, 3)).astype(np.uint8)


def test_reads_nvidia_zip_exactly(tmp_path, images):
    labels = [3, 0, 1, 2, 3, 0, 1, 2, 3, 0]
    nvidia_zip(tmp_path / 'set.zip', images, labels)
    ds = ImageFolderDataset(str(tmp_path / 'set.zip'), use_labels=True)
    assert (len(ds), ds.resolution, ds.num_channels, ds.image_shape, ds.label_dim) == (10, 16, 3, [3, 16, 16], 4)
    assert ds.name == 'set' and ds.has_labels and ds.has_onehot_labels
    for i in range(10):
        img, label = ds[i]
        assert img.dtype == np.uint8 and img.flags['C_CONTIGUOUS']
        assert np.array_equal(img, images[i].transpose(2, 0, 1))
        assert label.dtype == np.float32 and np.array_equal(label, np.eye(4, dtype=np.float32)[labels[i]])
    unlabelled = ImageFolderDataset(str(tmp_path / 'set.zip'))
    assert unlabelled.label_dim == 0 and unlabelled[0][1].shape == (0,)


def test_folder_vector_labels_and_greyscale(tmp_path, images):
    root = tmp_path / 'set'
    (root / 'a').mkdir(parents=True)
    PIL.Image.fromarray(images[0]).save(root / 'a' / 'x.png')
    PIL.Image.fromarray(images[1, :, :, 0], 'L').save(root / 'y.png')   # greyscale in a colour set
    rgba = np.concatenate([images[2], np.full([16, 16, 1], 255, np.uint8)], axis=2)
    PIL.Image.fromarray(rgba, 'RGBA').save(root / 'z.png')
    (root / 'dataset.json').write_text(json.dumps({'labels': [['a/x.png', [1, 2]], ['y.png', [3, 4]], ['z.png', [5, 6]]]}))
    ds = ImageFolderDataset(str(root), use_labels=True)
    assert ds.num_channels == 3 and ds.label_shape == [2]
    assert np.array_equal(ds[0][0], images[0].transpose(2, 0, 1))
    assert np.array_equal(ds[1][0], np.repeat(images[1, None, :, :, 0], 3, axis=0))
    assert np.array_equal(ds[2][0], images[2].transpose(2, 0, 1))
    assert [ds.get_label(i).tolist() for i in range(3)] == [[1, 2], [3, 4], [5, 6]]


def test_greyscale_dataset_has_one_channel(tmp_path, images):
    nvidia_zip(tmp_path / 'g.zip', images[:, :, :, :1])
    ds = ImageFolderDataset(str(tmp_path / 'g.zip'))
    assert ds.image_shape == [1, 16, 16] and np.array_equal(ds[3][0][0], images[3, :, :, 0])


def test_xflip_doubles_and_mirrors(tmp_path, images):
    nvidia_zip(tmp_path / 'set.zip', images)
    ds = ImageFolderDataset(str(tmp_path / 'set.zip'), xflip=True)
    assert len(ds) == 20
    for i in range(10):
        assert np.array_equal(ds[i][0], images[i].transpose(2, 0, 1))
        assert np.array_equal(ds[10 + i][0], images[i, :, ::-1].transpose(2, 0, 1))
        assert ds.get_details(10 + i) == dict(raw_idx=i, fname=f'00000/img{i:08d}.png', xflip=True, raw_label=None)


def test_max_size_and_shuffle_are_seeded(tmp_path, images):
    nvidia_zip(tmp_path / 'set.zip', images)

    def picked(**kw):
        ds = ImageFolderDataset(str(tmp_path / 'set.zip'), **kw)
        return [ds.get_details(i)['raw_idx'] for i in range(len(ds))]
    # NVIDIA's subset: shuffle all indices with the seed, keep the first max_size, in ascending order.
    order = np.arange(10)
    np.random.RandomState(7).shuffle(order)
    assert picked(max_size=4, random_seed=7) == sorted(order[:4].tolist())
    assert picked(max_size=4, random_seed=7) != picked(max_size=4, random_seed=8)
    shuffled = picked(shuffle=True, random_seed=1)
    assert shuffled == picked(shuffle=True, random_seed=1) and sorted(shuffled) == list(range(10))
    assert shuffled != list(range(10)) and shuffled != picked(shuffle=True, random_seed=2)
    assert picked(max_size=4, xflip=True, random_seed=7) == sorted(order[:4].tolist()) * 2


def test_attributes_and_class_names_of_synthetic_set(tmp_path):
    convert('synthetic:garments?n=6&resolution=16', str(tmp_path / 's.zip'), progress=False)
    ds = ImageFolderDataset(str(tmp_path / 's.zip'), use_labels=True, xflip=True)
    assert ds.label_dim <= 6 and ds.class_names[:2] == ['t-shirt', 'long-sleeve']
    a = ds.get_attributes(7)
    assert a == ds.get_attributes(1) and np.argmax(ds.get_label(7)) == a['class_idx']


@pytest.mark.parametrize('case, message', [
    ('mixed', r'b\.png is 8x8 but a\.png is 16x16'),
    ('odd', r'a\.png is 12x12; training needs square power-of-two'),
    ('wide', r'a\.png is 16x8'),
    ('empty', 'no images found'),
    ('corrupt', r'cannot read a\.png'),
])
def test_clear_errors(tmp_path, case, message):
    root = tmp_path / 'set'
    root.mkdir()
    size = {'odd': (12, 12), 'wide': (16, 8)}.get(case, (16, 16))
    if case == 'corrupt':
        (root / 'a.png').write_bytes(b'\x89PNG garbage')
    elif case != 'empty':
        PIL.Image.new('RGB', size).save(root / 'a.png')
    if case == 'mixed':
        PIL.Image.new('RGB', (8, 8)).save(root / 'b.png')
    with pytest.raises(DatasetError, match=message) as info:
        ImageFolderDataset(str(root))
    assert '\n' not in str(info.value)


def test_other_errors(tmp_path, images):
    with pytest.raises(DatasetError, match='no such dataset'):
        ImageFolderDataset(str(tmp_path / 'missing.zip'))
    (tmp_path / 'x.tar').write_bytes(b'not a zip')
    with pytest.raises(DatasetError, match='not a folder or a zip'):
        ImageFolderDataset(str(tmp_path / 'x.tar'))
    nvidia_zip(tmp_path / 'set.zip', images)
    with pytest.raises(DatasetError, match='resolution 32 was asked for'):
        ImageFolderDataset(str(tmp_path / 'set.zip'), resolution=32)
    nvidia_zip(tmp_path / 'partial.zip', images, meta={'labels': [['00000/img00000000.png', 1]]})
    with pytest.raises(DatasetError, match='no entry for 00000/img00000001.png'):
        ImageFolderDataset(str(tmp_path / 'partial.zip'), use_labels=True)


def test_dataloader_workers_match_sequential(tmp_path, images):
    nvidia_zip(tmp_path / 'set.zip', images, labels=list(range(10)))
    ds = ImageFolderDataset(str(tmp_path / 'set.zip'), use_labels=True, xflip=True)
    want_x = np.stack([ds[i][0] for i in range(len(ds))])           # opens the zip in this process first
    want_c = np.stack([ds[i][1] for i in range(len(ds))])
    clone = pickle.loads(pickle.dumps(ds))                          # what a spawned worker receives
    assert np.array_equal(clone[5][0], want_x[5])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    got = list(loader)
    assert np.array_equal(torch.cat([x for x, _ in got]).numpy(), want_x)
    assert np.array_equal(torch.cat([c for _, c in got]).numpy(), want_c)
