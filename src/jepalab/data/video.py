"""Video data sets held in memory as uint8 tensors: the types every video loader returns.

A `VideoData` has train, val and test splits of clips uint8 (N, T, 3, H, W) with labels
int64 (N,), plus class names. Clips of a data set share T, H and W, so a batch is one
index operation, as for images. Data sets are named and loaded through `catalog.py`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from jepalab.data.images import DataError


@dataclass
class VideoSplit:
    clips: torch.Tensor   # uint8 (N, T, 3, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __post_init__(self):
        if self.clips.dtype != torch.uint8 or self.clips.ndim != 5 or self.clips.shape[2] != 3:
            raise DataError(f"clips must be uint8 (N, T, 3, H, W), got {self.clips.dtype} "
                            f"{tuple(self.clips.shape)}")
        if self.labels.shape != (self.clips.shape[0],):
            raise DataError(f"labels must be ({self.clips.shape[0]},), got "
                            f"{tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.clips.shape[0]

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"clips": self.clips[index], "labels": self.labels[index]}

    @property
    def images(self) -> torch.Tensor:
        """The clips, under the name probes and the collapse monitor read."""
        return self.clips


@dataclass
class VideoData:
    name: str
    train: VideoSplit
    val: VideoSplit
    test: VideoSplit
    classes: list[str]
    skipped: int = 0          # files left out as unreadable (videofolder with skip_bad)

    @property
    def frames(self) -> int:
        return self.train.clips.shape[1]

    @property
    def image_size(self) -> int:
        return self.train.clips.shape[-1]

    @property
    def declares(self) -> int:
        """What a method is told of this data: its number of classes."""
        return len(self.classes)

    def monitor_inputs(self, n: int) -> torch.Tensor:
        """The validation clips the collapse monitor encodes."""
        return self.val.clips[:n]

    def describe(self) -> dict:
        """What a run trained on (its data.json)."""
        return {"kind": "videos", "name": self.name, "frames": self.frames,
                "image_size": self.image_size, "classes": list(self.classes),
                "train": len(self.train), "val": len(self.val), "test": len(self.test),
                "skipped_files": self.skipped}
