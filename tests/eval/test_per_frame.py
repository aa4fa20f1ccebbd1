"""The per-frame baseline: an image encoder read frame by frame on clips, its tokens tagged
with their frame, or averaged over time; wired into `jepalab probe --per-frame`."""
import pytest
import torch

from jepalab.config import ConfigError, load_config
from jepalab.data import moving_shapes
from jepalab.eval.per_frame import PerFrame
from jepalab.nn.vit import VisionTransformer, ViTSpec
from jepalab.probe import probe_run
from jepalab.train import train


def encoder():
    torch.manual_seed(0)
    return VisionTransformer(ViTSpec("vit_nano", 16, 4)).eval()


def test_every_frame_is_encoded_alone_and_tagged_with_its_index():
    image, clips = encoder(), torch.rand(2, 3, 3, 16, 16)
    tokens = PerFrame(image, average_time=False).patch_tokens(clips)
    assert tokens.shape == (2, 3 * 16, 128 + 4)  # 3 frames of 16 tokens, one-hot padded to 4
    frame1 = tokens[:, 16:32]
    torch.testing.assert_close(frame1[..., :128], image.patch_tokens(clips[:, 1]))
    assert frame1[..., 128:].tolist() == [[[0.0, 1.0, 0.0, 0.0]] * 16] * 2
    pooled = PerFrame(image, average_time=False).features(clips)
    torch.testing.assert_close(pooled[:, 128:256], image.features(clips[:, 1]))


def test_time_averaging_forgets_the_order_of_the_frames():
    averaged, clips = PerFrame(encoder(), average_time=True), torch.rand(2, 4, 3, 16, 16)
    reversed_clips = clips.flip(1)
    torch.testing.assert_close(averaged.features(clips), averaged.features(reversed_clips))
    torch.testing.assert_close(averaged.patch_tokens(clips), averaged.patch_tokens(reversed_clips))
    assert averaged.patch_tokens(clips).shape == (2, 16, 128)


def test_probe_adds_the_per_frame_rows_and_the_confusion_matrix(tmp_path, monkeypatch,
                                                                 capsys):
    # the wiring, not the figures: 100-clip val and test splits instead of 1,000 (the probes
    # read every clip of them; about 5x cheaper)
    monkeypatch.setattr(moving_shapes, "SPLIT_SIZES", {"train": 32, "val": 100, "test": 100})
    tiny = ["data.image_size=16", "model.patch_size=4", "train.steps=2", "train.batch_size=8",
            "data.num_train=32", "train.monitor_every=0"]
    frames, video = tmp_path / "frames", tmp_path / "video"
    train(load_config("ijepa-moving-shapes-frames", tiny + ["data.frames=4",
                                                            "method.predictor_depth=1"]),
          frames, show_progress=False)
    train(load_config("vjepa-moving-shapes", tiny + ["data.frames=4", "method.predictor_depth=1",
                                                     "method.predictor_width=32"]),
          video, show_progress=False)
    result = probe_run(video, seeds=1, train_ceiling_if_missing=False, show_progress=True,
                       per_frame_dir=frames)
    rows = {row["name"]: row for row in result["rows"]}
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("probe: ")]
    probed = ["vjepa", "random init", "raw pixels", "ijepa per frame (every frame's tokens)",
              "ijepa per frame (averaged over time)"]            # off a terminal: a line each
    assert printed == [f"probe: {i}/5 {name} probed" for i, name in enumerate(probed, 1)]
    for name in ("ijepa per frame (every frame's tokens)", "ijepa per frame (averaged over time)"):
        assert 0 <= rows[name]["linear"] <= 1 and 0 <= rows[name]["attentive"] <= 1
    assert (video / "confusion.png").stat().st_size > 0  # the run's attentive probe, per class
    with pytest.raises(ConfigError, match="needs an image run"):
        probe_run(video, seeds=1, train_ceiling_if_missing=False, show_progress=False,
                  per_frame_dir=video)


def test_one_pass_reads_the_pooled_features_and_the_tokens_of_every_chunk():
    """The probes read pooled features and tokens from one forward pass per chunk: the same
    as reading each alone (mean-pooled ViT; a class-token ViT; frames read one by one)."""
    from jepalab.data.views import to_float
    from jepalab.eval.attentive import extract_pooled_and_tokens, extract_tokens
    from jepalab.eval.probes import extract_features

    torch.manual_seed(0)
    cls = VisionTransformer(ViTSpec("vit_nano", 16, 4, class_token=True)).eval()
    images = torch.randint(0, 256, (7, 3, 16, 16), dtype=torch.uint8)
    clips = torch.randint(0, 256, (5, 3, 3, 16, 16), dtype=torch.uint8)
    for model, inputs in ((encoder(), images), (cls, images),
                          (PerFrame(encoder(), average_time=False), clips)):
        pooled, tokens = extract_pooled_and_tokens(model, inputs, batch_size=3)  # 3 chunks
        torch.testing.assert_close(pooled, extract_features(model, inputs, batch_size=7))
        torch.testing.assert_close(tokens, extract_tokens(model, inputs, batch_size=7))
        assert len(pooled) == len(tokens) == len(inputs)
    tokens = cls.forward(to_float(images[:2]))  # with a class token, features are its output
    torch.testing.assert_close(extract_pooled_and_tokens(cls, images[:2])[0], tokens[:, 0])
