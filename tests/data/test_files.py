"""Loaders for image folders and CIFAR pickles, tested on small files written to tmp_path."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from jepalab.config import DataConfig
from jepalab.data import catalog
from jepalab.data.files import load_cifar, load_imagefolder
from jepalab.data.images import DataError

COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "emu": (0, 0, 255)}


def write_images(folder, n_per_class, colours=COLOURS, size=(12, 20), ext=".png"):
    for name, colour in colours.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.new("RGB", size, colour).save(folder / name / f"{name}{i}{ext}")


def check_colours(data):
    """Every image's mean colour is its class's colour: labels still match pixels."""
    for split in (data.train, data.val, data.test):
        for image, label in zip(split.images, split.labels):
            expected = torch.tensor(COLOURS[data.classes[label]], dtype=torch.float32)
            assert torch.allclose(image.float().mean(dim=(1, 2)), expected, atol=2.0)


def test_imagefolder_flat_layout(tmp_path):
    write_images(tmp_path, 10)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = load_imagefolder(tmp_path, image_size=16, seed=0)
    assert data.name == f"imagefolder:{tmp_path}"
    assert data.classes == ["cat", "dog", "emu"]
    assert (len(data.train), len(data.val), len(data.test)) == (24, 3, 3)
    for split in (data.train, data.val, data.test):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert split.images.shape[1:] == (3, 16, 16)
    assert data.image_size == 16
    check_colours(data)
    again = load_imagefolder(tmp_path, image_size=16, seed=0)
    assert torch.equal(again.test.labels, data.test.labels)
    assert torch.equal(again.train.images, data.train.images)
    orders = {tuple(load_imagefolder(tmp_path, image_size=8, seed=s).train.labels.tolist())
              for s in range(4)}
    assert len(orders) > 1


def test_imagefolder_mixed_formats_and_case(tmp_path):
    write_images(tmp_path, 2, ext=".PNG")
    Image.new("RGBA", (9, 9), (0, 0, 255, 128)).save(tmp_path / "emu" / "x.webp")
    Image.new("L", (9, 9), 0).convert("P").save(tmp_path / "emu" / "y.gif")
    data = load_imagefolder(tmp_path, image_size=4)
    assert len(data.train) + len(data.val) + len(data.test) == 8
    assert data.train.images.shape[1:] == (3, 4, 4)


def test_imagefolder_split_layout(tmp_path):
    write_images(tmp_path / "train", 4)
    write_images(tmp_path / "val", 2)
    write_images(tmp_path / "test", 1, colours={"dog": COLOURS["dog"]})
    data = load_imagefolder(tmp_path, image_size=8)
    assert data.classes == ["cat", "dog", "emu"]
    assert (len(data.train), len(data.val), len(data.test)) == (12, 6, 1)
    assert data.test.labels.tolist() == [1]
    check_colours(data)


def test_imagefolder_carves_missing_val(tmp_path):
    write_images(tmp_path / "train", 10)
    write_images(tmp_path / "test", 2)
    data = load_imagefolder(tmp_path, image_size=8, seed=3)
    assert (len(data.train), len(data.val), len(data.test)) == (27, 3, 6)
    check_colours(data)
    other = load_imagefolder(tmp_path, image_size=8, seed=4)
    assert not torch.equal(other.train.labels, data.train.labels)


def test_imagefolder_class_only_in_val_is_an_error(tmp_path):
    write_images(tmp_path / "train", 2)
    write_images(tmp_path / "val", 1, colours={"yak": (9, 9, 9)})
    with pytest.raises(DataError, match="yak"):
        load_imagefolder(tmp_path, image_size=8)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_imagefolder(tmp_path / "nope", image_size=8)
    with pytest.raises(DataError, match="no class subfolders"):
        load_imagefolder(tmp_path, image_size=8)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class.*no images"):
        load_imagefolder(tmp_path, image_size=8)


def test_imagefolder_corrupt_image_names_file(tmp_path):
    write_images(tmp_path, 2)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x00garbage, not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_imagefolder(tmp_path, image_size=8)


def test_imagefolder_converts_grey_palette_alpha_and_16_bit_images(tmp_path):
    write_images(tmp_path, 3)
    red = tmp_path / "cat"
    Image.new("L", (8, 8), 128).save(red / "grey.png")
    Image.new("RGBA", (8, 8), (255, 0, 0, 40)).save(red / "alpha.png")
    Image.new("RGB", (8, 8), (255, 0, 0)).convert("P").save(red / "palette.png")
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(red / "sixteen.png")  # 128 * 257
    assert Image.open(red / "sixteen.png").mode.startswith("I")
    data = load_imagefolder(tmp_path, image_size=4)
    pixels = torch.cat([data.train.images, data.val.images, data.test.images])
    assert len(pixels) == 13 and pixels.shape[1:] == (3, 4, 4)
    means = pixels.float().mean(dim=(2, 3))
    # the 16-bit grey is mid grey, not clipped to white; the grey PNG likewise
    assert (((means - 128).abs() < 2).all(dim=1)).sum() == 2


def test_imagefolder_bad_files_are_named_or_skipped_and_counted(tmp_path):
    write_images(tmp_path, 4)
    good = tmp_path / "dog" / "dog0.png"
    (tmp_path / "dog" / "truncated.png").write_bytes(good.read_bytes()[:40])
    (tmp_path / "emu" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"(truncated|empty)\.(png|jpg).*on_bad_file=skip"):
        load_imagefolder(tmp_path, image_size=8)
    data = load_imagefolder(tmp_path, image_size=8, skip_bad=True)
    assert data.skipped == 2 and len(data.train) + len(data.val) + len(data.test) == 12
    assert data.describe()["skipped_files"] == 2
    loaded = catalog.load(DataConfig(f"imagefolder:{tmp_path}", 8, on_bad_file="skip"))
    assert loaded.skipped == 2
    check_colours(data)


def test_imagefolder_empty_class_folder_is_named(tmp_path):
    write_images(tmp_path, 3)
    (tmp_path / "yak").mkdir()
    with pytest.raises(DataError, match="yak.*holds no images"):
        load_imagefolder(tmp_path, image_size=8)


def cifar_images(labels):
    """CIFAR rows (N, 3072): R, G, B planes; image i is the pure colour of its label."""
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    planes = palette[labels][:, :, None].repeat(1024, axis=2)
    return planes.reshape(len(labels), 3072)


def dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(folder, n=10):
    folder.mkdir(exist_ok=True)
    for i in range(1, 6):
        labels = [(i + j) % 3 for j in range(n)]
        dump(folder / f"data_batch_{i}", {b"batch_label": b"x", b"labels": labels,
                                          b"data": cifar_images(labels)})
    dump(folder / "test_batch", {b"labels": [0, 1, 2, 0], b"data": cifar_images([0, 1, 2, 0])})
    dump(folder / "batches.meta", {b"label_names": [b"red", b"green", b"blue"]})


def test_cifar10(tmp_path):
    write_cifar10(tmp_path)
    data = load_cifar(tmp_path, image_size=32, seed=1)
    assert data.name == f"cifar:{tmp_path}"
    assert data.classes == ["red", "green", "blue"]
    assert (len(data.train), len(data.val), len(data.test)) == (45, 5, 4)
    assert data.test.labels.tolist() == [0, 1, 2, 0]
    red = data.test.images[0]
    assert red.shape == (3, 32, 32) and red.dtype == torch.uint8
    assert (red[0] == 255).all() and (red[1:] == 0).all()
    for split in (data.train, data.val, data.test):
        expected = torch.eye(3)[split.labels] * 255
        assert torch.equal(split.images.float().mean(dim=(2, 3)), expected)
    small = load_cifar(tmp_path, image_size=16, seed=1)
    assert small.train.images.shape == (45, 3, 16, 16)
    assert torch.equal(small.val.labels, data.val.labels)
    assert not torch.equal(load_cifar(tmp_path, image_size=8, seed=2).val.labels,
                           data.val.labels)


def test_cifar100_str_keys_and_arrays(tmp_path):
    labels = np.array([2, 0, 1] * 7, dtype=np.int64)
    dump(tmp_path / "train", {"fine_labels": labels.tolist(), "coarse_labels": [0] * 21,
                              "data": cifar_images(labels)})
    dump(tmp_path / "test", {b"fine_labels": np.array([1, 2]), b"data": cifar_images([1, 2])})
    dump(tmp_path / "meta", {b"fine_label_names": [b"apple", b"bee", b"cup"],
                             b"coarse_label_names": [b"things"]})
    data = load_cifar(tmp_path, image_size=32)
    assert data.classes == ["apple", "bee", "cup"]
    assert (len(data.train), len(data.val), len(data.test)) == (19, 2, 2)
    assert data.test.labels.tolist() == [1, 2]
    assert (data.test.images[0, 1] == 255).all() and (data.test.images[0, [0, 2]] == 0).all()


def test_cifar_missing_batch_lists_expected_files(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3") as err:
        load_cifar(tmp_path, image_size=32)
    assert "test_batch" in str(err.value) and "fine" not in str(err.value)
    assert "meta" in str(err.value)
    with pytest.raises(DataError, match="data_batch_1.*not a folder"):
        load_cifar(tmp_path / "data_batch_1", image_size=32)


def test_cifar_empty_folder_and_bad_shape(tmp_path):
    with pytest.raises(DataError, match="data_batch_1.*train"):
        load_cifar(tmp_path, image_size=32)
    write_cifar10(tmp_path)
    dump(tmp_path / "test_batch", {b"labels": [0], b"data": np.zeros((1, 1024), np.uint8)})
    with pytest.raises(DataError, match=r"test_batch.*\(N, 3072\)"):
        load_cifar(tmp_path, image_size=32)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_refuses_code_in_pickle(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    dump(tmp_path / "data_batch_2", {b"data": Evil(marker), b"labels": [0]})
    with pytest.raises(DataError, match="data_batch_2"):
        load_cifar(tmp_path, image_size=32)
    assert not marker.exists()


def test_the_catalogue_loads_files_by_name(tmp_path):
    write_images(tmp_path, 10)
    data = catalog.load(DataConfig("imagefolder:" + str(tmp_path), image_size=16))
    assert data.name == f"imagefolder:{tmp_path}"
    assert data.train.images.shape[1:] == (3, 16, 16)
    assert data.declares == len(data.classes) and data.describe()["kind"] == "images"
    assert data.monitor_inputs(3).shape == (3, 3, 16, 16)
    with pytest.raises(DataError, match="nonexistent"):
        catalog.load(DataConfig("cifar:/nonexistent", image_size=32))


@pytest.mark.parametrize("name, words", [
    ("digts", ["unknown data set 'digts'", "did you mean 'digits'", "imagefolder:PATH"]),
    ("imagefolder", ["unknown data set 'imagefolder'", "imagefolder:PATH"]),
    ("shapes:/tmp/x", ["unknown data set 'shapes:/tmp/x'", "shapes, "]),
])
def test_the_catalogue_names_what_is_valid(name, words):
    with pytest.raises(DataError) as caught:
        catalog.source(name)
    for word in words:
        assert word in str(caught.value)


def test_every_source_has_a_kind():
    assert catalog.kind_of("shapes") == "images"
    assert catalog.kind_of("trajectories:/x.h5") == "trajectories"
    assert "trajectories:FILE.h5" in catalog.example("trajectories")
