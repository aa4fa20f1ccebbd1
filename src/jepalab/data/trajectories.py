"""Trajectories in HDF5, and windows of them for world models.

File layout (format "jepalab-trajectories/1"), episodes laid end to end:
  pixels          uint8 (F, S, S, 3)   every frame of every episode
  actions         float32 (F, A)       the action taken at that frame (zeros at an
                                       episode's last frame, which has none)
  proprio         float32 (F, P)       the agent's own state (positions, velocities)
  state           float64 (F, S)       the simulator's whole state (env.state()), from which
                                       an episode can be restarted (world/protocol.py);
                                       optional: files from before it lack it
  episode_starts  int64 (E + 1,)       episode e is frames [starts[e], starts[e + 1])
  attrs           format, env, env_kwargs (JSON), policy, policy_kwargs (JSON), seed,
                  episodes, steps, version

`TrajectoryData` serves windows: `window` frames `frameskip` apart, and between each two
the `frameskip` actions taken, flattened into one block action (frameskip * A numbers).
`load_trajectory_clips` serves the same windows as unlabelled clips (a `VideoData`), for
pretraining a video encoder (V-JEPA) on an environment's own episodes.
With `stream` (data.stream=true) the pixels stay in the file (`FileFrames`): a batch reads
its windows' frames, each once, and resizes them; actions and proprio are read whole.
"""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from jepalab.data.images import DataError, ImageData, Split, resize_uint8
from jepalab.data.streaming import LazyRows, select

FORMAT = "jepalab-trajectories/1"
KEYS = ("pixels", "actions", "proprio")


class EpisodeWriter:
    """Appends episodes to a new HDF5 file written under a temporary name and moved into
    place by `close()`, so a killed collection never leaves a file that looks complete."""

    def __init__(self, path: str | Path, attrs: dict):
        import h5py

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.file = h5py.File(self.tmp, "w")
        self.file.attrs.update({"format": FORMAT, **{k: _attr(v) for k, v in attrs.items()}})
        self.starts = [0]

    def add(self, pixels: np.ndarray, actions: np.ndarray, proprio: np.ndarray,
            state: np.ndarray | None = None) -> None:
        """One episode: pixels (T+1, S, S, 3) uint8, actions (T, A), proprio (T+1, P) and,
        if given, state (T+1, S)."""
        rows = {len(proprio)} | ({len(state)} if state is not None else set())
        if rows != {len(pixels)} or len(pixels) != len(actions) + 1:
            raise ValueError(f"an episode needs T+1 frames, proprio and state rows for T "
                             f"actions, got {len(pixels)} frames, {len(actions)} actions, "
                             f"{len(proprio)} proprio rows"
                             + (f", {len(state)} state rows" if state is not None else ""))
        actions = np.concatenate([actions, np.zeros_like(actions[:1])]).astype(np.float32)
        arrays = {"pixels": np.asarray(pixels, np.uint8), "actions": actions,
                  "proprio": np.asarray(proprio, np.float32)}
        if state is not None:
            arrays["state"] = np.asarray(state, np.float64)
        for key, value in arrays.items():
            if key not in self.file:  # a frame per chunk: a streamed run reads by window
                chunk = (1 if key == "pixels" else min(64, len(value)),) + value.shape[1:]
                self.file.create_dataset(key, data=value, maxshape=(None,) + value.shape[1:],
                                         chunks=chunk, compression="lzf")
            else:
                data = self.file[key]
                data.resize(len(data) + len(value), axis=0)
                data[-len(value):] = value
        self.starts.append(self.starts[-1] + len(pixels))

    def close(self) -> Path:
        self.file.create_dataset("episode_starts", data=np.asarray(self.starts, np.int64))
        self.file.attrs["episodes"] = len(self.starts) - 1
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def _attr(value):
    return json.dumps(value) if isinstance(value, (dict, list)) else value


@contextmanager
def open_trajectories(path: str | Path):
    """A trajectory file, open and checked: yields (h5py file, episode_starts, attrs), for
    readers that need only part of it."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"trajectory file {path} does not exist; write one with "
                        "`jepalab collect ENV --out FILE.h5`")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path} could not be read as HDF5: {e}") from None
    with f:
        attrs = dict(f.attrs)
        if attrs.get("format") != FORMAT:
            raise DataError(f"{path} is not a jepalab trajectory file (format "
                            f"{attrs.get('format')!r}, expected {FORMAT!r})")
        missing = [k for k in (*KEYS, "episode_starts") if k not in f]
        if missing:
            raise DataError(f"{path} lacks the dataset(s) {', '.join(missing)}")
        starts, frames = f["episode_starts"][:], len(f["pixels"])
        # one row per frame (the last action of an episode is padding)
        for key in (*KEYS[1:], *(["state"] if "state" in f else [])):
            if len(f[key]) != frames:
                raise DataError(f"{path}: dataset {key!r} has {len(f[key])} rows, but "
                                f"'pixels' has {frames}; the file is damaged or was not "
                                "written by `jepalab collect`")
        if f["pixels"].ndim != 4 or f["pixels"].shape[-1] != 3:
            raise DataError(f"{path}: dataset 'pixels' must be (frames, S, S, 3), got "
                            f"{f['pixels'].shape}")
        if starts[0] != 0 or starts[-1] != frames or np.any(np.diff(starts) < 2):
            raise DataError(f"{path}: episode_starts does not cut the {frames} frames into "
                            "episodes of at least 2 frames")
        for key in ("env_kwargs", "policy_kwargs"):
            attrs[key] = json.loads(attrs.get(key, "{}"))
        yield f, starts, attrs


def read_trajectories(path: str | Path, keys: tuple[str, ...] = KEYS
                      ) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """(arrays `keys`, episode_starts, attrs) of a trajectory file, checked."""
    with open_trajectories(path) as (f, starts, attrs):
        try:
            arrays = {k: f[k][:] for k in keys}
        except OSError as e:
            raise DataError(f"{path} could not be read as HDF5: {e}") from None
    return arrays, starts, attrs


def read_rows(dataset, rows: np.ndarray) -> np.ndarray:
    """Rows `rows` (increasing, unique) of an HDF5 dataset, one contiguous read per chunk
    they touch: HDF5 decompresses a whole chunk for any row of it, and its own point
    selections cost far more than the reads (256 rows: 611 ms vs 6 ms)."""
    out = np.empty((len(rows), *dataset.shape[1:]), dataset.dtype)
    chunk = dataset.chunks[0] if dataset.chunks else len(dataset)
    for part in np.split(np.arange(len(rows)), np.flatnonzero(np.diff(rows // chunk)) + 1):
        if len(part):
            first, last = rows[part[0]], rows[part[-1]]
            out[part] = dataset[first:last + 1][rows[part] - first]
    return out


class FileFrames(LazyRows):
    """Frames `rows` of a trajectory file's pixels, read when indexed: a lazy uint8
    (N, 3, size, size) array. A read takes each row it needs once (`read_rows`) and resizes
    them. Files from `jepalab collect` hold a frame per chunk, so a batch of 64 windows of 4
    frames at 64 px reads in about 40 ms (12 ms from memory); files chunked 64 frames
    apiece, as before, decompress a whole chunk per window (about 0.4 s)."""

    CHUNK_CACHE = 64 << 20  # bytes of decompressed chunks kept per open file

    def __init__(self, path: str | Path, rows: np.ndarray, size: int):
        super().__init__(len(rows), (3, size, size))
        self.path, self.rows, self.size = str(path), np.asarray(rows, np.int64), size
        self._file, self._lock = None, threading.Lock()

    def __repr__(self) -> str:
        return f"FileFrames({len(self)} frames of {self.path} at {self.size} px)"

    def __getstate__(self) -> dict:  # an open HDF5 file does not travel to another process
        return {**self.__dict__, "_file": None, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def subset(self, key) -> FileFrames:
        """The frames `key` selects, still in the file."""
        return FileFrames(self.path, self.rows[self._positions(key).reshape(-1).numpy()],
                          self.size)

    def read(self, positions: list[int]) -> torch.Tensor:
        import h5py

        wanted, inverse = np.unique(self.rows[positions], return_inverse=True)
        try:
            with self._lock:  # the prefetch thread and the monitor may both read
                if self._file is None:
                    self._file = h5py.File(self.path, "r", rdcc_nbytes=self.CHUNK_CACHE)
                pixels = read_rows(self._file["pixels"], wanted)
        except OSError as e:
            raise DataError(f"{self.path}: reading frames failed ({e}); a streamed trajectory "
                            "file (data.stream=true) is read as batches need it: it must stay "
                            "in place, unchanged, while the run trains") from None
        frames = resize_uint8(torch.from_numpy(pixels).permute(0, 3, 1, 2), self.size)
        return frames[torch.from_numpy(inverse.reshape(-1))]


@dataclass
class TrajectorySplit:
    """Frames of some episodes, and the windows that fit in them."""
    images: torch.Tensor      # uint8 (F, 3, S, S): every frame (what the collapse monitor
    #                           reads); a FileFrames when streamed
    actions: torch.Tensor     # float32 (F, A)
    proprio: torch.Tensor     # float32 (F, P)
    starts: torch.Tensor      # int64 (W,): first frame of each window
    window: int
    frameskip: int

    def __len__(self) -> int:
        return len(self.starts)

    def frame_rows(self, index: torch.Tensor) -> torch.Tensor:
        """(B, window) positions in `images` of the frames of windows `index`."""
        return self.starts[index][:, None] + torch.arange(self.window) * self.frameskip

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Windows `index`: frames uint8 (B, window, 3, S, S), actions (B, window - 1,
        frameskip * A) (the block taken after each frame but the last), proprio (B, window, P)."""
        frames = self.frame_rows(index)                                      # (B, W)
        steps = frames[:, :-1, None] + torch.arange(self.frameskip)          # (B, W-1, k)
        actions = self.actions[steps].flatten(2)
        return {"frames": self.images[frames], "actions": actions,
                "proprio": self.proprio[frames]}


@dataclass
class TrajectoryData:
    name: str
    train: TrajectorySplit
    val: TrajectorySplit
    env: str
    env_kwargs: dict
    action_dim: int           # per env step; a block action has frameskip times as many
    frameskip: int

    @property
    def block_action_dim(self) -> int:
        return self.action_dim * self.frameskip

    @property
    def declares(self) -> int:
        """What a method is told of this data: the block action's size."""
        return self.block_action_dim

    def monitor_inputs(self, n: int) -> torch.Tensor:
        """The validation frames the collapse monitor encodes."""
        return self.val.images[:n]

    def describe(self) -> dict:
        """What a run trained on (its data.json): what planning needs to know."""
        return {"kind": "trajectories", "path": self.name, "env": self.env,
                "env_kwargs": self.env_kwargs, "action_dim": self.action_dim,
                "frameskip": self.frameskip}


def load_trajectories(path: str | Path, *, image_size: int, window: int, frameskip: int,
                      val_fraction: float = 0.05, seed: int = 0,
                      stream: bool = False) -> TrajectoryData:
    """Read a trajectory file, resize its frames to `image_size`, and split its episodes
    into train and val (a `val_fraction` of them, chosen by `seed`). With `stream` the
    frames stay in the file and are read as batches need them (`FileFrames`)."""
    arrays, starts, attrs = read_trajectories(path, KEYS[1:] if stream else KEYS)
    lengths = np.diff(starts)
    span = (window - 1) * frameskip + 1
    if lengths.max() < span:
        raise DataError(f"{path}: episodes have at most {lengths.max()} frames, fewer than a "
                        f"window of {window} frames {frameskip} apart needs ({span}); lower "
                        "data.window or data.frameskip, or collect longer episodes")
    images = FileFrames(path, np.arange(starts[-1]), image_size) if stream else \
        resize_uint8(torch.from_numpy(arrays["pixels"]).permute(0, 3, 1, 2), image_size)
    actions = torch.from_numpy(arrays["actions"]).float()
    proprio = torch.from_numpy(arrays["proprio"]).float()
    order = np.random.default_rng(seed).permutation(len(lengths))
    n_val = int(round(len(lengths) * val_fraction))
    if val_fraction > 0 and len(lengths) > 1:  # at least one episode each side
        n_val = min(max(n_val, 1), len(lengths) - 1)
    splits = []
    for episodes in (np.sort(order[n_val:]), np.sort(order[:n_val])):
        frames = [np.arange(starts[e], starts[e + 1]) for e in episodes]
        keep = torch.from_numpy(np.concatenate(frames)) if frames else torch.zeros(0, dtype=int)
        # window starts, renumbered into the split's own frame positions
        offsets = np.cumsum([0] + [len(f) for f in frames])
        window_starts = [offsets[i] + np.arange(max(0, len(f) - span + 1))
                         for i, f in enumerate(frames)]
        splits.append(TrajectorySplit(
            select(images, keep), actions[keep], proprio[keep],
            torch.from_numpy(np.concatenate(window_starts or [np.zeros(0, int)])).long(),
            window, frameskip))
    return TrajectoryData(str(path), splits[0], splits[1], env=str(attrs.get("env", "")),
                          env_kwargs=attrs["env_kwargs"], action_dim=actions.shape[1],
                          frameskip=frameskip)


class WindowClips(LazyRows):
    """The windows of a `TrajectorySplit` as a lazy uint8 (N, window, 3, S, S) array of
    clips: a clip is gathered from the split's frames (in memory or `FileFrames`) when
    indexed, so overlapping windows cost no memory."""

    def __init__(self, split: TrajectorySplit):
        super().__init__(len(split), (split.window, *split.images.shape[1:]))
        self.split = split

    def read(self, positions: list[int]) -> torch.Tensor:
        split = self.split  # the frames alone: no actions or proprio gathered
        return split.images[split.frame_rows(torch.tensor(positions, dtype=torch.long))]

    def subset(self, key) -> WindowClips:
        split = self.split
        starts = split.starts[self._positions(key).reshape(-1)]
        return WindowClips(TrajectorySplit(split.images, split.actions, split.proprio, starts,
                                           split.window, split.frameskip))


def load_trajectory_clips(path: str | Path, *, image_size: int, frames: int, frameskip: int,
                          seed: int = 0, stream: bool = False):
    """A trajectory file's windows of `frames` frames `frameskip` apart as unlabelled clips:
    a `VideoData` (no classes: there is nothing to probe) whose val and test splits are the
    held-out episodes' windows. V-JEPA 2 pretrains its encoder on video before its
    action-conditioned stage; this is that video, from `jepalab collect`."""
    from jepalab.data.video import VideoData, VideoSplit

    data = load_trajectories(path, image_size=image_size, window=frames, frameskip=frameskip,
                             seed=seed, stream=stream)
    if len(data.val) == 0:
        raise DataError(f"{path}: no held-out episode has {frames} frames {frameskip} apart; "
                        "collect more or longer episodes, or lower data.frames")

    def split(part: TrajectorySplit) -> VideoSplit:
        return VideoSplit(WindowClips(part), torch.zeros(len(part), dtype=torch.long))

    held_out = split(data.val)
    return VideoData(f"trajectoryclips:{path}", split(data.train), held_out, held_out, [])


def load_trajectory_frames(path: str | Path, *, image_size: int, seed: int = 0,
                           stream: bool = False) -> ImageData:
    """Every frame of a trajectory file's episodes as an unlabelled image (an `ImageData`
    without classes: there is nothing to probe), val and test the held-out episodes'
    frames: what an image encoder (I-JEPA, ...) trains on to be the frozen encoder of a
    world model that reads the same frames."""
    data = load_trajectories(path, image_size=image_size, window=1, frameskip=1, seed=seed,
                             stream=stream)
    if len(data.val) == 0:
        raise DataError(f"{path}: holds a single episode; collect at least two, so that "
                        "one is held out")

    def split(part: TrajectorySplit) -> Split:
        return Split(part.images, torch.zeros(len(part.images), dtype=torch.long))

    held_out = split(data.val)
    return ImageData(f"trajectoryframes:{path}", split(data.train), held_out, held_out, [])
