"""Video data: moving_shapes (motion is the only label), its catalogue entry and cache."""
import numpy as np
import pytest
import torch

from jepalab.config import ConfigError, DataConfig, load_config
from jepalab.data import catalog, moving_shapes
from jepalab.data.images import DataError
from jepalab.data.views import Augment, ViewSpec, crop_flip
from jepalab.eval.probes import linear_probe


def frames_of(split, which, grey=False):
    clips = split.clips.float() / 255
    clips = clips.mean(-3, keepdim=True) if grey else clips
    return clips[:, which].flatten(1)


@pytest.mark.first(30)
def test_a_single_frame_carries_no_label():
    """A linear probe on one frame, in colour, sits at chance (10 classes); on all four
    frames it does not (the control in grey, 3x cheaper: measured 15.9% grey, 17.7% in
    colour, against 9.3% for one frame)."""
    train, val, test = (moving_shapes.make_split(n, 4, 16, seed) for n, seed in
                        ((3000, 1), (500, 2), (1000, 3)))
    one = linear_probe(frames_of(train, 2), train.labels, frames_of(val, 2), val.labels,
                       frames_of(test, 2), test.labels, num_classes=10).test_acc
    assert abs(one - 0.1) < 0.05, one
    every = [frames_of(split, slice(None), grey=True) for split in (train, val, test)]
    every = linear_probe(every[0], train.labels, every[1], val.labels, every[2], test.labels,
                         num_classes=10).test_acc
    assert every > one + 0.04, (every, one)


def test_motion_follows_the_class():
    labels = np.arange(len(moving_shapes.CLASSES))
    velocity, spin = moving_shapes._motion(labels, np.random.default_rng(0))
    for label, name in enumerate(moving_shapes.CLASSES):
        dx, dy = np.sign(velocity[label])
        assert (dx < 0) == ("left" in name) and (dx > 0) == ("right" in name), name
        assert (dy < 0) == ("up" in name) and (dy > 0) == ("down" in name), name
        assert np.sign(spin[label]) == {"clockwise": 1, "anticlockwise": -1}.get(name, 0)


def test_a_moving_shape_is_the_same_shape_shifted_on_the_torus():
    """Frame t + 1 of a translating shape is frame t rolled by its velocity (with wrap)."""
    size = 64
    axis = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    step = 6 / (size / 2)  # six pixels a frame, right and down
    shape = moving_shapes._Objects(1, np.random.default_rng(0), (0.5, 0.5),
                                   np.array([[step, step]], np.float32), np.zeros(1, np.float32))
    shape.start[:] = 0.8  # near the corner: the shape wraps round both edges
    now, later = shape.inside(0, xx, yy)[0], shape.inside(1, xx, yy)[0]
    assert now.sum() > 100
    assert (np.roll(now, (6, 6), axis=(0, 1)) == later).mean() > 0.995


def test_clockwise_turns_clockwise_on_screen():
    """A tee's bar (drawn below the centre at angle 0) moves left, from six towards nine
    o'clock, when it turns clockwise."""
    size = 64
    axis = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    labels = np.array([moving_shapes.CLASSES.index("clockwise")])
    _, spin = moving_shapes._motion(labels, np.random.default_rng(0))
    tee = moving_shapes._Objects(1, np.random.default_rng(0), (0.5, 0.5),
                                 np.zeros((1, 2), np.float32), spin)
    tee.outline[:], tee.start[:], tee.angle[:] = 8, 0, 0
    x_now = axis[np.nonzero(tee.inside(0, xx, yy)[0])[1]].mean()
    x_later = axis[np.nonzero(tee.inside(2, xx, yy)[0])[1]].mean()
    assert abs(x_now) < 0.02 and x_later < -0.03


def test_the_catalogue_loads_and_caches_clips():
    cfg = DataConfig("moving_shapes", image_size=16, frames=4, num_train=64)
    data = catalog.load(cfg)
    assert catalog.kind_of("moving_shapes") == "videos"
    assert data.train.clips.shape == (64, 4, 3, 16, 16) and data.train.clips.dtype == torch.uint8
    assert (len(data.val), len(data.test)) == (1000, 1000)
    assert data.declares == 10 and data.classes == list(moving_shapes.CLASSES)
    assert data.describe()["kind"] == "videos" and data.describe()["frames"] == 4
    assert data.monitor_inputs(5).shape == (5, 4, 3, 16, 16)
    batch = data.train.batch(torch.tensor([3, 1]))
    assert torch.equal(batch["clips"], data.train.clips[[3, 1]])
    again = catalog.load(cfg)  # read back from the cache
    assert torch.equal(again.train.clips, data.train.clips)
    assert torch.equal(again.test.labels, data.test.labels)


def test_the_frames_set_is_every_frame_of_the_same_clips_as_images():
    cfg = DataConfig("moving_shapes_frames", image_size=16, frames=4, num_train=64)
    frames, clips = catalog.load(cfg), catalog.load(DataConfig("moving_shapes", image_size=16,
                                                               frames=4, num_train=64))
    assert catalog.kind_of("moving_shapes_frames") == "images"
    assert frames.train.images.shape == (64 * 4, 3, 16, 16)
    assert torch.equal(frames.train.images[4 * 3 + 2], clips.train.clips[3, 2])
    assert frames.train.labels[4 * 3:4 * 4].tolist() == [int(clips.train.labels[3])] * 4
    assert frames.name == "moving_shapes_frames" and frames.declares == 10


def test_hard_clips_hold_distractors():
    rng = np.random.default_rng(0)
    labels = np.zeros(200, dtype=int)
    easy = moving_shapes.render(labels, 2, 16, rng, "easy")
    hard = moving_shapes.render(labels, 2, 16, np.random.default_rng(0), "hard")
    # easy clips: one flat background and one shape; hard ones vary far more within a frame
    assert hard[:, 0].reshape(200, 3, -1).std(-1).mean() > easy[:, 0].reshape(
        200, 3, -1).std(-1).mean() * 1.2


def test_bad_video_settings_are_refused():
    with pytest.raises(DataError, match="difficulty 'medium'"):
        moving_shapes.load_moving_shapes(difficulty="medium")
    with pytest.raises(ConfigError, match="data.frames must be >= 2"):
        load_config("ijepa-shapes", ["data.frames=1"])
    with pytest.raises(ConfigError, match="data.name: unknown data set 'moving_shape'"):
        load_config("ijepa-shapes", ["data.name=moving_shape"])


def test_a_clip_gets_one_crop_for_all_its_frames():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (4, 1, 3, 16, 16), dtype=torch.uint8)
    clips = frame.expand(-1, 6, -1, -1, -1).contiguous()  # every frame the same
    views = crop_flip(12, (0.2, 0.6), hflip=True)(clips)
    assert views.shape == (4, 6, 3, 12, 12)
    assert torch.allclose(views, views[:, :1].expand_as(views), atol=1e-5)  # one draw a clip
    assert not torch.allclose(views[0, 0], views[1, 0])  # another clip, another draw
    with pytest.raises(ValueError, match="clips take crop / flip views only"):
        Augment(ViewSpec(12))(clips)
