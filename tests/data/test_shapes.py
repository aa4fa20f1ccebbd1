import numpy as np
import torch

from jepalab.config import DataConfig
from jepalab.data import catalog, shapes


def test_splits_are_fixed_by_seed_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("JEPALAB_CACHE", str(tmp_path))
    first = shapes.load_shapes(image_size=16, seed=3, num_train=200)
    assert len(list(tmp_path.glob("shapes-*.npz"))) == 1
    again = shapes.load_shapes(image_size=16, seed=3, num_train=200)  # from the cache
    fresh = shapes.make_split(200, 16, seed=3000)                      # rendered anew
    assert torch.equal(first.train.images, again.train.images)
    assert torch.equal(first.train.images, fresh.images)
    other = shapes.load_shapes(image_size=16, seed=4, num_train=200)
    assert not torch.equal(first.train.images, other.train.images)
    assert not torch.equal(first.train.images[:50], first.val.images[:50])
    assert first.classes == list(shapes.CLASSES) and len(first.classes) >= 10
    assert first.train.images.shape == (200, 3, 16, 16)
    assert (first.val.images.shape[0], first.test.images.shape[0]) == (2000, 2000)


def test_every_class_drawn_and_nuisances_vary():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(shapes.CLASSES)), 20)
    images = torch.from_numpy(shapes.render(labels, 32, rng)).float()
    assert images.shape == (200, 3, 32, 32)
    # colour is a nuisance: within one class the mean colour varies widely
    per_image_colour = images.mean(dim=(2, 3))
    assert per_image_colour[labels == 0].std(0).min() > 20
    # the shape is there: each image has a region that differs from its background
    assert (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3))).min() > 60


def test_shape_regions_differ_between_classes():
    # the same pose in every class: the silhouettes must all be different
    axis = np.linspace(-1, 1, 48)
    v, u = np.meshgrid(axis, axis, indexing="ij")
    masks = [shapes._inside(label, u / 0.9, v / 0.9) for label in range(len(shapes.CLASSES))]
    for a in range(len(masks)):
        assert masks[a].mean() > 0.1
        for b in range(a):
            assert (masks[a] != masks[b]).mean() > 0.05, (shapes.CLASSES[a], shapes.CLASSES[b])


def test_digits_are_built_in():
    data = catalog.load(DataConfig("digits", image_size=16))
    assert data.train.images.shape[1:] == (3, 16, 16) and data.image_size == 16
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert set(data.test.labels.tolist()) == set(range(10))


MAKE_ONCE = """
import sys, time
import numpy as np
from jepalab.data.shapes import cached
def make():
    with open(sys.argv[1], "a") as log:
        log.write("made\\n")
    time.sleep(1.0)  # long enough for the other process to ask meanwhile
    return {"x": np.arange(3)}
assert list(cached("lock-test", make)["x"]) == [0, 1, 2]
"""


def test_processes_asking_for_the_same_data_at_once_render_it_once(tmp_path):
    """Parallel test workers (or two runs) share the cache: one renders, the other waits
    and reads what it wrote."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, JEPALAB_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join(sys.path))
    log = tmp_path / "log"
    workers = [subprocess.Popen([sys.executable, "-c", MAKE_ONCE, str(log)], env=env)
               for _ in range(2)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    assert log.read_text() == "made\n"
