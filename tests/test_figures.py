"""Pictures: a tube mask drawn over clips, frames tiled and written as a GIF, the
row-normalised confusion matrix and its PNG."""
import numpy as np
import pytest
import torch
from PIL import Image

from jepalab import figures


def test_a_tube_mask_tints_its_targets_dims_the_cut_and_leaves_the_context():
    clips = np.random.default_rng(0).integers(0, 200, (1, 4, 8, 8, 3), dtype=np.uint8)
    grid = (2, 2, 2)  # tubelets of 2 frames x 4 x 4 pixels, tokens t*4 + row*2 + column
    target = np.array([[5]])  # t=1, row 0, column 1: frames 2-3, rows 0-3, columns 4-7
    context = np.array([[0, 1, 2, 3, 4, 6]])  # token 7 is in neither
    out = figures.masked_clips(clips, context, target, grid, scale=2)
    assert out.shape == (1, 4, 16, 16, 3) and out.dtype == np.uint8
    big = clips.repeat(2, 2).repeat(2, 3).astype(float)
    inside = big[0, 2, 3, 11]  # within the target tubelet, off its outline and hatch
    assert np.array_equal(out[0, 2, 3, 11], np.round(0.5 * inside + 0.5 * figures.TINT))
    assert np.array_equal(out[0, 3, 0, 8], figures.TINT)  # its outline
    assert np.array_equal(out[0, 2, 4, 12], figures.TINT)  # its hatch: 4 + 12 = 0 mod 8
    assert np.array_equal(out[0, 1, 3, 11], clips[0, 1, 1, 5])  # same place, first tubelet
    assert np.array_equal(out[0, 2, 3, 3], clips[0, 2, 1, 1])  # context
    assert np.array_equal(out[0, 3, 12, 12], np.round(figures.DIM * big[0, 3, 12, 12]))


def test_rows_of_clips_tile_into_frames_and_a_gif():
    rows = [np.full((3, 5, 6, 7, 3), 10 * r + c, dtype=np.uint8) for r, c in ((0, 1), (1, 2))]
    for r in range(2):
        rows[r][:, :, 0, 0] = np.arange(5)[None, :, None]  # frames differ (GIF keeps each)
    frames = figures.grid_frames(rows)
    gap = figures.GAP
    assert frames.shape == (5, 2 * 6 + gap, 3 * 7 + 2 * gap, 3)
    assert frames[0, 6 + gap + 1, 2 * (7 + gap) + 1, 0] == 12  # row 1, clip 2
    assert tuple(frames[0, 6, 0]) == figures.BACKGROUND  # the gap between rows
    labelled = figures.grid_frames(rows, ["short", "long"])
    assert labelled.shape[:2] == frames.shape[:2] and labelled.shape[2] > frames.shape[2]
    assert np.array_equal(labelled[:, :, -frames.shape[2]:], frames)


def test_write_gif_keeps_every_frame(tmp_path):
    frames = np.zeros((6, 10, 12, 3), dtype=np.uint8)
    frames[:, 0, 0] = np.arange(6)[:, None] * 40
    path = figures.write_gif(frames, tmp_path / "clips.gif")
    with Image.open(path) as gif:
        assert (gif.format, gif.n_frames, gif.size, gif.info["loop"]) == ("GIF", 6, (12, 10), 0)
    assert [p.name for p in tmp_path.iterdir()] == ["clips.gif"]  # no partial file left


def test_confusion_rows_are_shares_of_each_true_class():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    predictions = torch.tensor([0, 1, 0, 1, 1, 0])
    matrix = figures.confusion_matrix(labels, predictions, 4)
    assert matrix == pytest.approx(np.array([[2 / 3, 1 / 3, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0],
                                             [0, 0, 0, 0]]))
    assert matrix[:3].sum(1) == pytest.approx(np.ones(3))  # class 3 has no examples


def test_confusion_png_is_a_png(tmp_path):
    labels = torch.arange(30) % 3
    path = figures.confusion_png(labels, labels.roll(1), ["left", "right", "up"],
                                 tmp_path / "confusion.png", "attentive probe")
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_the_planning_gif_is_upscaled_to_about_128_pixels_and_keeps_every_frame(tmp_path):
    from jepalab.world.evaluate import write_gif as write_episodes

    frames = [np.full((32, 64, 3), 40 * i, dtype=np.uint8) for i in range(5)]
    path = tmp_path / "plan" / "episodes.gif"  # its folder is made
    write_episodes(path, frames)
    gif = Image.open(path)
    assert gif.n_frames == 5 and gif.size == (256, 128) and gif.info["duration"] == 100
    gif.seek(3)
    assert np.asarray(gif.convert("RGB"))[0, 0].tolist() == [120, 120, 120]
