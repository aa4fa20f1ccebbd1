"""Video data read from disk: a folder of video files by class, or one array of clips.

  videofolder:PATH   PATH/<class>/<video> (any container PyAV decodes: mp4, avi, webm,
                     ...). One clip per video: `frames` frames `stride` apart from the
                     middle of the video, one centre square crop resized to `image_size`
                     (the same crop on every frame). Split 80/10/10 by seed.
  npyvideo:FILE      a uint8 array (N, T, H, W) or (N, T, H, W, C), C 1 or 3, such as
                     Moving-MNIST's (saved clip-major); labels (N,) from FILE's sibling
                     `<stem>.labels.npy` if there is one, else one class. The first
                     `frames` frames of each clip, resized to `image_size`. Split 80/10/10.

A file that cannot be read is named in the error; with `skip_bad` it is left out and
counted instead (`VideoData.skipped`). With `stream` (data.stream=true) a video folder
decodes nothing up front: its splits hold `FileClips`, each clip decoded when a batch needs
it, the same pixels and splits as in memory.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jepalab.data.images import DataError, split_by_seed
from jepalab.data.streaming import FileRows, select
from jepalab.data.video import VideoData, VideoSplit

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def _resize_clip(clip: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (T, C, h, w) -> (T, 3, size, size): centre square crop, antialiased resize."""
    t, c, h, w = clip.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    clip = clip[:, :, top:top + side, left:left + side]
    if c == 1:
        clip = clip.expand(-1, 3, -1, -1)
    if side != size:
        clip = F.interpolate(clip.float(), size=(size, size), mode="bilinear", antialias=True,
                             align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return clip.contiguous()


def read_clip(file: Path, frames: int, stride: int, size: int) -> torch.Tensor:
    """`frames` frames `stride` apart from the middle of a video file -> uint8 (T, 3, S, S)."""
    try:
        import av
    except ImportError as e:
        raise DataError("videofolder: decoding videos needs PyAV; pip install 'jepalab[video]' "
                        "(or pip install av)") from e
    try:
        with av.open(str(file)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except Exception as e:  # PyAV raises its own error types for every container problem
        raise DataError(f"cannot read video file {str(file)!r}: {e}") from e
    span = (frames - 1) * stride + 1
    if len(decoded) < span:
        raise DataError(f"video file {str(file)!r} has {len(decoded)} frames, fewer than "
                        f"{frames} frames {stride} apart need ({span}); lower data.frames")
    start = (len(decoded) - span) // 2
    clip = np.stack(decoded[start:start + span:stride])              # (T, H, W, 3)
    return _resize_clip(torch.from_numpy(clip).permute(0, 3, 1, 2), size)


class FileClips(FileRows):
    """A lazy uint8 (N, T, 3, S, S) array of video files, one clip each as `read_clip`
    takes it; indexing decodes those files (a streamed video folder)."""

    def __init__(self, files: list[Path], frames: int, stride: int, size: int):
        super().__init__(files, (frames, 3, size, size))
        self.frames, self.stride, self.size = frames, stride, size

    def __repr__(self) -> str:
        return f"FileClips({len(self)} videos, {self.frames} frames at {self.size} px)"

    def decode(self, file) -> torch.Tensor:
        return read_clip(file, self.frames, self.stride, self.size)


def _splits(clips, labels: torch.Tensor, seed: int) -> list[VideoSplit]:
    train, val, test = split_by_seed(len(labels), (0.1, 0.1), seed)
    return [VideoSplit(select(clips, torch.as_tensor(i)), labels[torch.as_tensor(i)])
            for i in (train, val, test)]


def _video_files(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """The class names and every (video file, label) of PATH/<class>/<video>, sorted."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{str(folder)!r} has no class subfolders; expected PATH/<class>/<video>")
    found = []
    for label, name in enumerate(classes):
        files = sorted(f for f in (folder / name).iterdir()
                       if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS)
        if not files:
            raise DataError(f"class folder {str(folder / name)!r} holds no videos (expected "
                            f"files ending in {', '.join(VIDEO_EXTENSIONS)})")
        found += [(file, label) for file in files]
    return classes, found


def load_videofolder(path, *, image_size: int, frames: int, stride: int = 2, seed: int = 0,
                     skip_bad: bool = False, stream: bool = False) -> VideoData:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"video folder {str(folder)!r} does not exist or is not a folder")
    if stream and skip_bad:
        raise DataError("a video folder cannot both stream and skip unreadable files: "
                        "skipping needs every file decoded up front")
    classes, found = _video_files(folder)
    if stream:
        clips = FileClips([file for file, _ in found], frames, stride, image_size)
        labels, skipped = [label for _, label in found], 0
    else:
        clips, labels, skipped = [], [], 0
        for file, label in found:
            try:
                clips.append(read_clip(file, frames, stride, image_size))
            except DataError:
                if not skip_bad:
                    raise
                skipped += 1
                continue
            labels.append(label)
    if len(clips) < 3:
        raise DataError(f"{str(folder)!r}: {len(clips)} readable videos, too few for train, "
                        "val and test splits")
    clips = clips if stream else torch.stack(clips)
    return VideoData(f"videofolder:{path}", *_splits(clips, torch.tensor(labels), seed),
                     classes=classes, skipped=skipped)


def load_npyvideo(path, *, image_size: int, frames: int, seed: int = 0) -> VideoData:
    file = Path(path).expanduser()
    try:
        array = np.load(file, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read clip array {str(file)!r}: {e}") from e
    if array.dtype != np.uint8 or array.ndim not in (4, 5) or (
            array.ndim == 5 and array.shape[-1] not in (1, 3)):
        raise DataError(f"{str(file)!r}: expected uint8 clips (N, T, H, W) or (N, T, H, W, C) "
                        f"with C 1 or 3, got {array.dtype} {array.shape}")
    if array.shape[1] < frames:
        raise DataError(f"{str(file)!r}: clips of {array.shape[1]} frames, fewer than "
                        f"data.frames {frames}")
    clips = torch.from_numpy(np.ascontiguousarray(array[:, :frames]))
    clips = clips[:, :, None] if clips.ndim == 4 else clips.permute(0, 1, 4, 2, 3)
    clips = torch.stack([_resize_clip(c, image_size) for c in clips])
    labels_file = file.with_name(file.stem + ".labels.npy")
    if labels_file.exists():
        labels = torch.from_numpy(np.load(labels_file)).long()
        if labels.shape != (len(clips),):
            raise DataError(f"{str(labels_file)!r}: expected labels ({len(clips)},), got "
                            f"{tuple(labels.shape)}")
        classes = [str(c) for c in range(int(labels.max()) + 1)]
    else:
        labels, classes = torch.zeros(len(clips), dtype=torch.long), ["clip"]
    return VideoData(f"npyvideo:{path}", *_splits(clips, labels, seed), classes=classes)
