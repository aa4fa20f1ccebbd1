import pytest
import torch

from jepalab.nn.predictor import MaskedPredictor
from jepalab.nn.vit import ARCHS, VisionTransformer, ViTSpec, sincos_2d, sincos_3d


def test_sincos_positions_by_hand():
    pos = sincos_2d(4, (2, 3))  # quarter = 1, omega = 1: [sin r, cos r, sin c, cos c]
    assert pos.shape == (6, 4)
    row, col = 1, 2  # token index 1 * 3 + 2 = 5
    expected = torch.tensor([row, row, col, col], dtype=torch.float64)
    expected = torch.stack([expected[0].sin(), expected[1].cos(), expected[2].sin(),
                            expected[3].cos()]).float()
    assert torch.allclose(pos[5], expected)


def test_token_subset_equals_full_encoding_when_all_kept():
    torch.manual_seed(0)
    encoder = VisionTransformer(ViTSpec("vit_nano", 16, 4))
    images = torch.randn(2, 3, 16, 16)
    keep = torch.arange(16).expand(2, -1)
    assert torch.allclose(encoder(images), encoder(images, keep=keep), atol=1e-6)
    subset = torch.tensor([[0, 5, 9], [1, 2, 15]])
    assert encoder(images, keep=subset).shape == (2, 3, 128)


def test_subset_encoding_ignores_dropped_patches():
    torch.manual_seed(0)
    encoder = VisionTransformer(ViTSpec("vit_nano", 16, 4))
    images = torch.randn(1, 3, 16, 16)
    changed = images.clone()
    changed[:, :, 12:, 12:] += 5.0  # only the last patch (index 15)
    keep = torch.tensor([[0, 1, 2, 3]])
    assert torch.allclose(encoder(images, keep=keep), encoder(changed, keep=keep))
    assert not torch.allclose(encoder(images), encoder(changed))


def test_parameter_names_follow_timm():
    names = set(VisionTransformer(ViTSpec("vit_nano", 16, 4)).state_dict())
    for name in ("patch_embed.proj.weight", "pos_embed", "blocks.0.norm1.weight",
                 "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.bias", "blocks.3.mlp.fc1.weight",
                 "blocks.3.mlp.fc2.bias", "blocks.3.norm2.weight", "norm.weight"):
        assert name in names


def test_architecture_sizes():
    for arch, (dim, depth, heads) in ARCHS.items():
        encoder = VisionTransformer(ViTSpec(arch, 32, 8))
        assert encoder.embed_dim == dim and len(encoder.blocks) == depth
        assert encoder.blocks[0].attn.num_heads == heads


def test_predictor_shapes_and_mask_token_positions_matter():
    torch.manual_seed(0)
    predictor = MaskedPredictor(128, (4, 4), width=32, depth=2, num_heads=4)
    context = torch.randn(2, 5, 128)
    context_idx = torch.tensor([[0, 1, 2, 3, 4], [3, 5, 7, 9, 11]])
    target_idx = torch.tensor([[[10, 11], [14, 15], [5, 6]], [[0, 1], [2, 4], [6, 8]]])
    out = predictor(context, context_idx, target_idx)
    assert out.shape == (2, 3, 2, 128)
    moved = predictor(context, context_idx, target_idx.flip(-1))
    assert torch.allclose(out.flip(2), moved, atol=1e-5)  # a prediction follows its position
    assert not torch.allclose(out[:, :, 0], out[:, :, 1])


CLIP = ViTSpec("vit_nano", image_size=16, patch_size=4, frames=8, tubelet=2)


def test_tubelets_make_time_row_column_tokens():
    vit = VisionTransformer(CLIP)
    assert CLIP.grid == (4, 4, 4) and vit.num_patches == 64
    assert tuple(vit.patch_embed.proj.weight.shape) == (128, 3, 2, 4, 4)
    clips = torch.randn(2, 8, 3, 16, 16)
    assert vit(clips).shape == (2, 64, 128) and vit.features(clips).shape == (2, 128)
    keep = torch.tensor([[0, 17, 63], [5, 6, 7]])
    kept = vit(clips, keep)
    assert kept.shape == (2, 3, 128)
    # only the kept tubelets matter: changing a dropped frame pair changes nothing
    other = clips.clone()
    other[:, 6:] = torch.randn(2, 2, 3, 16, 16)  # the last tubelet (tokens 48..63)
    assert torch.allclose(vit(other, keep)[1], kept[1])
    assert not torch.allclose(vit(other, keep)[0], kept[0])  # token 63 is in the last one


def test_3d_positions_split_time_and_space():
    table = sincos_3d(128, (4, 3, 3))
    assert table.shape == (36, 128)
    assert torch.unique(table, dim=0).shape[0] == 36  # every position distinct
    grid = table.view(4, 9, 128)  # (time, place, channels)
    # time owns the first half of the channels, space the second half
    assert torch.allclose(grid[:, :1, :64].expand(-1, 9, -1), grid[..., :64])
    assert torch.allclose(grid[:1, :, 64:].expand(4, -1, -1), grid[..., 64:])
    # position 0: sin 0, cos 1 in each part (time 32 + 32 channels, rows and columns 16 + 16)
    zero = torch.tensor([0.0, 1, 0, 1, 0, 1]).repeat_interleave(torch.tensor([32, 32, 16, 16,
                                                                              16, 16]))
    assert torch.equal(table[0], zero)


def test_an_image_is_the_one_frame_case():
    """Frames 1 is the image ViT; the clip ViT differs only in its patch projection, and a
    static clip through a kernel spread evenly over the tubelet embeds like its frame."""
    image, clip = VisionTransformer(ViTSpec("vit_nano", 16, 4)), VisionTransformer(CLIP)
    assert isinstance(image.patch_embed.proj, torch.nn.Conv2d)
    assert image.state_dict().keys() == clip.state_dict().keys()
    different = {k for k, v in image.state_dict().items() if v.shape != clip.state_dict()[k].shape}
    assert different == {"patch_embed.proj.weight", "pos_embed"}
    with torch.no_grad():
        clip.patch_embed.proj.weight.copy_(image.patch_embed.proj.weight[:, :, None] / 2)
        clip.patch_embed.proj.bias.copy_(image.patch_embed.proj.bias)
    frame = torch.randn(1, 3, 16, 16)
    flat = image.patch_embed.proj(frame).flatten(2)
    tubes = clip.patch_embed.proj(frame[:, :, None].expand(-1, -1, 8, -1, -1)).flatten(3)
    assert torch.allclose(tubes[:, :, 0], flat, atol=1e-5)
    with pytest.raises(ValueError, match="takes clips"):
        clip(frame)
    with pytest.raises(ValueError, match="multiple of tubelet"):
        VisionTransformer(ViTSpec("vit_nano", 16, 4, frames=5, tubelet=2))
