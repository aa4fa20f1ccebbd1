"""Every data set by name: its kind and its loader, the one place that maps one to the other.

A data set's name is `NAME` (built in) or `NAME:PATH` (read from disk):
  digits               scikit-learn's bundled handwritten digits (8x8, 10 classes), upsampled
  shapes               procedural shapes with nuisance variation (see `shapes.py`)
  stereograms          random-dot stereograms of curved surfaces, 1 x image_size strips,
                       labels = binned disparity (see `stereograms.py`)
  imagefolder:PATH     PATH/<class>/<image> (or PATH/{train,val,test}/<class>/<image>);
                       with data.stream=true read from disk as batches need it
  cifar:PATH           CIFAR-10 or CIFAR-100 python-pickle batches in PATH
  moving_shapes        procedural clips whose 10 action classes differ only by motion
                       (see `moving_shapes.py`); moving_shapes_hard with distractors
  moving_shapes_frames every frame of moving_shapes' clips as an image (the per-frame
                       baseline's training data); moving_shapes_hard_frames likewise
  videofolder:PATH     PATH/<class>/<video>, decoded with PyAV (see `video_files.py`);
                       with data.stream=true a clip is decoded when a batch needs it
  npyvideo:FILE        a uint8 array of clips (N, T, H, W[, C]), labels beside it
  trajectories:FILE    HDF5 episodes from `jepalab collect` (windows for world models);
                       with data.stream=true frames are read by window as batches need them
  trajectoryclips:FILE the same windows (data.frames frames, data.frameskip apart) as
                       unlabelled clips, to pretrain a video encoder (V-JEPA) on episodes
  trajectoryframes:FILE every frame of the episodes as an unlabelled image, to train an
                       image encoder (I-JEPA, ...) on them

Its kind says what it serves and so which methods it can train: "images" (ImageData),
"videos" (VideoData) or "trajectories" (TrajectoryData). Each loaded data set answers
what the trainer asks of it the same way whatever its kind: `declares` (what the method
is told: the number of classes, the block action's size), `monitor_inputs(n)` (what the
collapse monitor encodes) and `describe()` (written to the run's data.json).
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from jepalab.data.images import DataError


@dataclass(frozen=True)
class Source:
    kind: str                 # what it serves: "images", "videos" or "trajectories"
    path: bool                # named NAME:PATH (on disk) rather than NAME (built in)
    load: Callable            # (path, data config) -> the data set
    example: str = ""         # how a user names it, for messages
    streams: bool = False     # can read from disk as batches need it (data.stream=true)


def _digits(path, cfg):
    from jepalab.data.images import load_digits

    return load_digits(cfg.image_size, cfg.seed)


def _shapes(path, cfg):
    from jepalab.data.shapes import load_shapes

    return load_shapes(image_size=cfg.image_size, seed=cfg.seed,
                       **({"num_train": cfg.num_train} if cfg.num_train else {}))


def _stereograms(path, cfg):
    from jepalab.data.stereograms import load_stereograms

    return load_stereograms(image_size=cfg.image_size, seed=cfg.seed)


def _moving_shapes(difficulty, as_frames=False):
    def load(path, cfg):
        from jepalab.data.moving_shapes import frames_of, load_moving_shapes

        data = load_moving_shapes(image_size=cfg.image_size, frames=cfg.frames, seed=cfg.seed,
                                  difficulty=difficulty, num_train=cfg.num_train or None)
        return frames_of(data) if as_frames else data
    return load


def _imagefolder(path, cfg):
    from jepalab.data.files import load_imagefolder

    return load_imagefolder(path, image_size=cfg.image_size, seed=cfg.seed,
                            skip_bad=cfg.on_bad_file == "skip", stream=cfg.stream)


def _cifar(path, cfg):
    from jepalab.data.files import load_cifar

    return load_cifar(path, image_size=cfg.image_size, seed=cfg.seed)


def _videofolder(path, cfg):
    from jepalab.data.video_files import load_videofolder

    return load_videofolder(path, image_size=cfg.image_size, frames=cfg.frames,
                            stride=cfg.frameskip, seed=cfg.seed,
                            skip_bad=cfg.on_bad_file == "skip", stream=cfg.stream)


def _npyvideo(path, cfg):
    from jepalab.data.video_files import load_npyvideo

    return load_npyvideo(path, image_size=cfg.image_size, frames=cfg.frames, seed=cfg.seed)


def _trajectories(path, cfg):
    from jepalab.data.trajectories import load_trajectories

    return load_trajectories(path, image_size=cfg.image_size, window=cfg.window,
                             frameskip=cfg.frameskip, seed=cfg.seed, stream=cfg.stream)


def _trajectory_clips(path, cfg):
    from jepalab.data.trajectories import load_trajectory_clips

    return load_trajectory_clips(path, image_size=cfg.image_size, frames=cfg.frames,
                                 frameskip=cfg.frameskip, seed=cfg.seed, stream=cfg.stream)


def _trajectory_frames(path, cfg):
    from jepalab.data.trajectories import load_trajectory_frames

    return load_trajectory_frames(path, image_size=cfg.image_size, seed=cfg.seed,
                                  stream=cfg.stream)


SOURCES = {
    "digits": Source("images", False, _digits),
    "shapes": Source("images", False, _shapes),
    "stereograms": Source("images", False, _stereograms),
    "imagefolder": Source("images", True, _imagefolder, streams=True),
    "cifar": Source("images", True, _cifar),
    "moving_shapes": Source("videos", False, _moving_shapes("easy"), "moving_shapes"),
    "moving_shapes_hard": Source("videos", False, _moving_shapes("hard")),
    "moving_shapes_frames": Source("images", False, _moving_shapes("easy", as_frames=True)),
    "moving_shapes_hard_frames": Source("images", False, _moving_shapes("hard", as_frames=True)),
    "videofolder": Source("videos", True, _videofolder, streams=True),
    "npyvideo": Source("videos", True, _npyvideo),
    "trajectories": Source("trajectories", True, _trajectories,
                           "trajectories:FILE.h5 (from `jepalab collect`)", streams=True),
    "trajectoryclips": Source("videos", True, _trajectory_clips, streams=True),
    "trajectoryframes": Source("images", True, _trajectory_frames, streams=True),
}


def valid_names(kind: str | None = None) -> list[str]:
    """How each data set (of `kind`, or every one) is named: NAME or NAME:PATH."""
    return [f"{name}:PATH" if source.path else name for name, source in SOURCES.items()
            if kind in (None, source.kind)]


def source(name: str) -> Source:
    """The source of data set `name`; DataError naming what is valid if there is none."""
    prefix, _, path = name.partition(":")
    found = SOURCES.get(prefix)
    if found is None or found.path != bool(path):
        near = difflib.get_close_matches(prefix, list(SOURCES), n=1)
        hint = f"; did you mean {near[0]!r}?" if near and near[0] != prefix else ""
        raise DataError(f"unknown data set {name!r}; valid: {', '.join(valid_names())}{hint}")
    return found


def streaming_names() -> list[str]:
    """How each data set that can stream (data.stream=true) is named."""
    return [f"{name}:PATH" for name, source in SOURCES.items() if source.streams]


def kind_of(name: str) -> str:
    return source(name).kind


def example(kind: str) -> str:
    """How to name data of `kind`, for a message."""
    named = [s.example for s in SOURCES.values() if s.kind == kind and s.example]
    return named[0] if named else ", ".join(valid_names(kind)[:3]) + ", ..."


def load(cfg):
    """The data set of a data config (`name`, `image_size`, `seed`, and what its kind reads:
    `num_train` for the built-in generated sets; `frames` for videos; `window`,
    `frameskip` for trajectories; `on_bad_file` and `stream` for folders)."""
    return source(cfg.name).load(cfg.name.partition(":")[2], cfg)
