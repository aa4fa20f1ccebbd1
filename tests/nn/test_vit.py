import torch

from jepalab.nn.predictor import MaskedPredictor
from jepalab.nn.vit import ARCHS, VisionTransformer, ViTSpec, sincos_2d


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
