"""Batched views: the crop runs as one batched warp, with the draws of kornia's own crop."""
import kornia.augmentation as K
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from jepalab.data.views import crop_flip, normalise


class _OpCount(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def ops_for(view, batch: int) -> int:
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    with _OpCount() as count:
        view(images)
    return count.ops


def test_the_crop_runs_the_same_ops_whatever_the_batch():
    """No Python loop over the images: kornia's default crop runs a few ops per image
    (about 1,900 for 256 images against 580 for 64), ours a fixed number."""
    view = crop_flip(16, (0.3, 1.0), hflip=True)
    assert ops_for(view, 4) == ops_for(view, 64) == ops_for(view, 256)


def test_the_batched_crop_cuts_the_boxes_the_per_image_crop_cuts():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(3)
    ours = crop_flip(16, (0.3, 1.0))(images)
    torch.manual_seed(3)
    per_image = K.RandomResizedCrop((16, 16), scale=(0.3, 1.0), cropping_mode="slice")
    expected = normalise(per_image(images.float() / 255))
    assert torch.allclose(ours, expected, atol=1e-4)
