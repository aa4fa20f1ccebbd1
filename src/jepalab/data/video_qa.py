"""Video question answering (CLEVRER-style) on procedural clips of several shapes.

Each clip shows 2-4 shapes on a flat grey background, each in its own colour from a
named palette (so a question can name it), each either still, sliding (left, right, up,
down: straight, no wrap, it stays on the canvas) or turning on the spot (clockwise or
anticlockwise), starting to move at its own frame (moving shapes of a clip never start
on the same frame). Every shape draws its outline, size, position, angle, speed and
motion from the same distributions. Five question types, worded from fixed templates:

  descriptive  what colour is the object that slides left ?           (a colour)
  counting     how many objects turn ?                                (0-3)
  temporal     which colour starts moving first ? (or last)           (a colour)
  interaction  do the red and the blue objects touch ?                (yes / no: their
               shapes overlap on the canvas in some frame)
  predictive   will the red object reach a wall soon ?                (yes / no, asked of
               sliding shapes: going on as it goes, its edge reaches the wall it heads for
               within half a clip's frames after the last one)

A question is asked only where the clip answers it clearly at its resolution: the first
(last) mover starts two frames or more before (after) the others; two shapes touch when
they share 4 pixels or more in some frame and do not when they never share one; a shape
reaches the wall "soon" when it would take under 2/3 of the horizon and not when over 3/2.

Answers are **balanced**: within each question (the same words), each answer its type
allows is asked equally often, so a model that reads the question but not the video can
do no better than chance among its type's answers; `VideoQAData.prior` holds that rate.

Rendered like `moving_shapes` (numpy, twice the resolution averaged 2x2), each shape
only inside a small window round it, all clips of a chunk at once; cached on disk.
"""
from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, fields

import numpy as np
import torch

from jepalab.data.images import DataError
from jepalab.data.moving_shapes import OUTLINES
from jepalab.data.shapes import _inside, cached

PALETTE = {"red": (0.92, 0.16, 0.12), "green": (0.15, 0.8, 0.2), "blue": (0.2, 0.35, 1.0),
           "yellow": (0.95, 0.85, 0.1), "white": (0.95, 0.95, 0.95)}
COLOURS = tuple(PALETTE)
MOTIONS = ("stays still", "slides left", "slides right", "slides up", "slides down",
           "turns clockwise", "turns anticlockwise")
SLIDES = {"slides left": (-1, 0), "slides right": (1, 0), "slides up": (0, -1),
          "slides down": (0, 1)}
TURNS = {"turns clockwise": 1, "turns anticlockwise": -1}  # a positive angle turns clockwise
_HEADING = np.array([SLIDES.get(m, (0, 0)) for m in MOTIONS], np.float32)  # per motion
_TURNING = np.array([TURNS.get(m, 0) for m in MOTIONS], np.float32)
COUNTED = {"slide": (1, 2, 3, 4), "turn": (5, 6), "stay still": (0,)}  # motion indices
TYPES = ("descriptive", "counting", "temporal", "interaction", "predictive")
ANSWERS = (*COLOURS, "0", "1", "2", "3", "yes", "no")
TYPE_ANSWERS = {"descriptive": COLOURS, "counting": ("0", "1", "2", "3"), "temporal": COLOURS,
                "interaction": ("yes", "no"), "predictive": ("yes", "no")}
MAX_OBJECTS, MIN_OBJECTS = 4, 2
SCALE = (0.24, 0.3)    # shape radius, image half-widths (about 4-5 px at 32 px)
EXTENT = 1.3           # an outline reaches at most this far from its centre, in radii
SPEED = (0.09, 0.15)   # sliding, half-widths per frame
TURN = (0.3, 0.45)     # turning, radians per frame
ONSET_GAP = 2          # frames by which the first (last) mover leads (trails) the others
TOUCH_PIXELS = 4       # pixels two shapes share in some frame (at the clip's resolution)
CLEAR = 1.5            # "soon": wall reached within horizon / CLEAR; "not": beyond x CLEAR
QUESTION_LENGTH = 12   # tokens, padded with <pad>
VERSION = 1            # bump when rendering or questions change
SPLIT_SIZES = {"train": 24000, "val": 1000, "test": 1000}
QUESTIONS_PER_CLIP = 4.0  # at most, on average: caps each type's share of the questions


def _question_words() -> list[str]:
    """Every question the templates can ask (the vocabulary is read from these)."""
    pairs = itertools.combinations(COLOURS, 2)
    return ([f"what colour is the object that {m} ?" for m in MOTIONS]
            + [f"how many objects {c} ?" for c in COUNTED]
            + [f"which colour starts moving {w} ?" for w in ("first", "last")]
            + [f"do the {a} and the {b} objects touch ?" for a, b in pairs]
            + [f"will the {c} object reach a wall soon ?" for c in COLOURS])


VOCAB = ("<pad>", *sorted({w for q in _question_words() for w in q.split()}))
_WORD_INDEX = {word: i for i, word in enumerate(VOCAB)}


@dataclass
class Scenes:
    """N clips of up to MAX_OBJECTS shapes, one slot each, arrays (N, K[, 2])."""
    present: np.ndarray   # bool: the slot holds a shape
    colour: np.ndarray    # index into COLOURS, distinct within a clip
    outline: np.ndarray   # shapes.CLASSES index
    scale: np.ndarray
    start: np.ndarray     # (N, K, 2) centre at frame 0, (x, y) in [-1, 1], y down
    angle: np.ndarray     # radians at frame 0
    motion: np.ndarray    # index into MOTIONS
    speed: np.ndarray     # half-widths per frame (sliding) or radians per frame (turning)
    onset: np.ndarray     # the frame it starts moving

    def __getitem__(self, index) -> Scenes:
        return Scenes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def __len__(self) -> int:
        return len(self.present)

    @property
    def velocity(self) -> np.ndarray:
        """(N, K, 2) half-widths per frame once moving."""
        return _HEADING[self.motion] * self.speed[..., None]

    @property
    def spin(self) -> np.ndarray:
        """(N, K) radians per frame once moving (on screen, positive is clockwise)."""
        return _TURNING[self.motion] * self.speed

    def moved(self, t: int) -> np.ndarray:
        """(N, K) frames each shape has been moving for at frame t."""
        return np.maximum(t - self.onset, 0).astype(np.float32)

    def centre(self, t: int) -> np.ndarray:
        return self.start + self.velocity * self.moved(t)[..., None]

    def to_wall(self, frames: int) -> np.ndarray:
        """(N, K): frames after the clip's last one until a sliding shape's edge (one radius
        from its centre) reaches the wall it heads for, over the horizon (frames // 2)."""
        gap = (1 - self.scale) - (self.centre(frames - 1) * np.sign(self.velocity)).sum(-1)
        return gap / (self.speed * (frames // 2))


def draw_scenes(n: int, frames: int, rng: np.random.Generator) -> Scenes:
    """Random scenes; each sliding shape's start is drawn so that it stays on the canvas."""
    k = MAX_OBJECTS
    present = np.arange(k) < rng.integers(MIN_OBJECTS, k + 1, n)[:, None]
    kind = rng.integers(0, 3, (n, k))  # still, sliding, turning: a third each
    motion = np.select([kind == 0, kind == 1], [0, 1 + rng.integers(0, 4, (n, k))],
                       5 + rng.integers(0, 2, (n, k)))
    scale = rng.uniform(*SCALE, (n, k)).astype(np.float32)
    speed = np.where(kind == 2, rng.uniform(*TURN, (n, k)), rng.uniform(*SPEED, (n, k)))
    scenes = Scenes(present, np.argsort(rng.random((n, len(COLOURS))), 1)[:, :k],
                    rng.choice(OUTLINES, (n, k)), scale, np.zeros((n, k, 2), np.float32),
                    rng.uniform(0, 2 * np.pi, (n, k)).astype(np.float32), motion,
                    speed.astype(np.float32),
                    np.argsort(rng.random((n, frames // 2 + 1)), 1)[:, :k])
    travel = scenes.velocity * scenes.moved(frames - 1)[..., None]
    low = -1 + scale[..., None] - np.minimum(travel, 0)
    high = 1 - scale[..., None] - np.maximum(travel, 0)
    scenes.start = (low + rng.random((n, k, 2)) * (high - low)).astype(np.float32)
    return scenes


def _shape_pixels(scenes: Scenes, slot: int, t: int, axis: np.ndarray, window: int):
    """Where the shapes in `slot` lie at frame t: flat indices into an (N, S, S) canvas of
    the pixels they cover, and the clip of each pixel. Only a W x W window round each
    shape is tested, which makes several small shapes cheap to draw."""
    clips = np.flatnonzero(scenes.present[:, slot])
    centre = scenes.centre(t)[clips, slot]
    angle = scenes.angle[clips, slot] + scenes.spin[clips, slot] * scenes.moved(t)[clips, slot]
    size = len(axis)
    corner = np.clip(np.round((centre + 1) / 2 * size).astype(int) - window // 2, 0,
                     size - window)
    cols, rows = (corner[:, i, None] + np.arange(window) for i in (0, 1))
    dx = axis[cols][:, None, :] - centre[:, 0, None, None]
    dy = axis[rows][:, :, None] - centre[:, 1, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    scale = scenes.scale[clips, slot][:, None, None]
    u, v = (cos * dx + sin * dy) / scale, (-sin * dx + cos * dy) / scale
    outline = scenes.outline[clips, slot]
    inside = np.zeros(u.shape, dtype=bool)
    for label in np.unique(outline):
        inside[outline == label] = _inside(int(label), u[outline == label], v[outline == label])
    flat = (clips[:, None, None] * size + rows[:, :, None]) * size + cols[:, None, :]
    return flat[inside], np.repeat(clips, inside.sum(axis=(1, 2)))


def render(scenes: Scenes, frames: int, image_size: int, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 clips (N, T, 3, S, S), and overlap (N, K, K): for slots a < b, the most
    pixels their shapes share in a frame (on the twice-resolution canvas, where later
    slots are drawn on top)."""
    n, size, k = len(scenes), 2 * image_size, MAX_OBJECTS
    axis = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
    window = min(size, 2 * int(np.ceil(EXTENT * SCALE[1] * size / 2)) + 2)
    colours = np.array(list(PALETTE.values()), np.float32)
    grey = rng.uniform(0.1, 0.3, n).astype(np.float32)
    overlap = np.zeros((n, k, k), dtype=np.int64)
    clips = np.empty((n, frames, 3, image_size, image_size), dtype=np.uint8)
    for t in range(frames):
        canvas = np.broadcast_to(grey[:, None, None, None], (n, size, size, 3)).copy()
        occupied = np.zeros((n, size, size), dtype=np.uint8)  # bit `slot` set under a shape
        for slot in range(k):
            pixel, clip = _shape_pixels(scenes, slot, t, axis, window)
            canvas.reshape(-1, 3)[pixel] = colours[scenes.colour[clip, slot]]
            occupied.reshape(-1)[pixel] |= np.uint8(1 << slot)
        clip, *pixel = np.nonzero(occupied & (occupied - 1))  # two shapes or more there
        bits = occupied[(clip, *pixel)]
        for a, b in itertools.combinations(range(k), 2):
            shared = np.bincount(clip[((bits >> a) & (bits >> b) & 1) == 1], minlength=n)
            overlap[:, a, b] = np.maximum(overlap[:, a, b], shared)
        canvas = canvas[:, 0::2] + canvas[:, 1::2]  # 2 x 2 means, faster than a reshape's
        canvas = (canvas[:, :, 0::2] + canvas[:, :, 1::2]) / 4
        canvas += 0.02 * rng.standard_normal(canvas.shape, dtype=np.float32)
        clips[:, t] = (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8).transpose(0, 3, 1, 2)
    return clips, overlap


def candidates(scenes: Scenes, overlap: np.ndarray, to_wall: np.ndarray, i: int):
    """Every (type, question, answer) the templates ask of clip i, where it answers them
    clearly; `overlap` from `render` (twice-resolution pixels), `to_wall` from `Scenes`."""
    here = np.flatnonzero(scenes.present[i])
    colour = {s: COLOURS[scenes.colour[i, s]] for s in here}
    motion = {s: MOTIONS[scenes.motion[i, s]] for s in here}
    for m in MOTIONS:
        holders = [s for s in here if motion[s] == m]
        if len(holders) == 1:
            yield "descriptive", f"what colour is the object that {m} ?", colour[holders[0]]
    for word, indices in COUNTED.items():
        count = int(np.isin(scenes.motion[i, here], indices).sum())
        if count <= 3:
            yield "counting", f"how many objects {word} ?", str(count)
    moving = sorted((scenes.onset[i, s], s) for s in here if motion[s] != "stays still")
    if len(moving) >= 2 and moving[1][0] - moving[0][0] >= ONSET_GAP:
        yield "temporal", "which colour starts moving first ?", colour[moving[0][1]]
    if len(moving) >= 2 and moving[-1][0] - moving[-2][0] >= ONSET_GAP:
        yield "temporal", "which colour starts moving last ?", colour[moving[-1][1]]
    for a, b in itertools.combinations(sorted(here, key=lambda s: scenes.colour[i, s]), 2):
        shared = overlap[i, min(a, b), max(a, b)]
        if shared == 0 or shared >= TOUCH_PIXELS * 4:
            yield ("interaction", f"do the {colour[a]} and the {colour[b]} objects touch ?",
                   "yes" if shared else "no")
    for s in here:
        if motion[s] in SLIDES and not 1 / CLEAR <= to_wall[i, s] <= CLEAR:
            yield ("predictive", f"will the {colour[s]} object reach a wall soon ?",
                   "yes" if to_wall[i, s] < 1 else "no")


def ask(scenes: Scenes, overlap: np.ndarray, frames: int, rng: np.random.Generator,
        per_clip: float = QUESTIONS_PER_CLIP) -> dict[str, np.ndarray]:
    """Balanced questions: for each question, every answer its type allows is drawn
    equally often (as often as the rarest allows, within the type's share of questions);
    a question one of whose answers never occurs is not asked. Arrays: clip (Q,),
    questions (Q, L), answers (Q,), types (Q,)."""
    pool = defaultdict(list)  # (type, question, answer) -> clips
    to_wall = scenes.to_wall(frames)
    for i in range(len(scenes)):
        for kind, question, answer in candidates(scenes, overlap, to_wall, i):
            pool[kind, question, answer].append(i)
    asked = sorted({(kind, question) for kind, question, _ in pool})
    rows = []
    for kind, question in asked:
        answers = TYPE_ANSWERS[kind]
        share = per_clip * len(scenes) / len(TYPES)
        per_answer = int(share / (sum(k == kind for k, _ in asked) * len(answers)))
        per_answer = min([per_answer] + [len(pool[kind, question, a]) for a in answers])
        for answer in answers:
            for clip in rng.choice(pool[kind, question, answer], per_answer, replace=False):
                rows.append((clip, encode(question), ANSWERS.index(answer), TYPES.index(kind)))
    rows = [rows[j] for j in rng.permutation(len(rows))]
    clip, questions, answers, types = (np.array(column, dtype=np.int64) for column in zip(*rows))
    return {"clip": clip, "questions": questions, "answers": answers, "types": types}


def encode(question: str) -> list[int]:
    words = question.split()
    return [_WORD_INDEX[w] for w in words] + [0] * (QUESTION_LENGTH - len(words))


def decode(tokens) -> str:
    return " ".join(VOCAB[int(t)] for t in tokens if int(t) != 0)


@dataclass
class QASplit:
    """Clips and the questions asked of them (several questions may share a clip)."""
    clips: torch.Tensor      # uint8 (N, T, 3, S, S)
    clip: torch.Tensor       # int64 (Q,): the clip each question is about
    questions: torch.Tensor  # int64 (Q, QUESTION_LENGTH): VOCAB indices, 0-padded
    answers: torch.Tensor    # int64 (Q,): ANSWERS indices
    types: torch.Tensor      # int64 (Q,): TYPES indices

    def __len__(self) -> int:
        return len(self.answers)


@dataclass
class VideoQAData:
    name: str
    train: QASplit
    val: QASplit
    test: QASplit
    vocab: list[str]
    answers: list[str]
    types: list[str]
    prior: dict[str, float]  # test accuracy per type of the question's most frequent
    #                          training answer: the best a model blind to the video does


def question_prior(train: QASplit, test: QASplit) -> dict[str, float]:
    """Per type, the test accuracy of answering each question with its most frequent
    training answer (ties: the first in ANSWERS)."""
    counts = defaultdict(lambda: np.zeros(len(ANSWERS), dtype=np.int64))
    for question, answer in zip(train.questions.tolist(), train.answers.tolist()):
        counts[tuple(question)][answer] += 1
    hits = np.array([int(np.argmax(counts[tuple(q)])) == a for q, a in
                     zip(test.questions.tolist(), test.answers.tolist())])
    types = test.types.numpy()
    return {kind: float(hits[types == i].mean()) if (types == i).any() else float("nan")
            for i, kind in enumerate(TYPES)}


def make_split(size: int, frames: int, image_size: int, seed: int, chunk: int = 500
               ) -> QASplit:
    rng = np.random.default_rng(seed)
    scenes = draw_scenes(size, frames, rng)
    parts = [render(scenes[i:i + chunk], frames, image_size, rng) for i in range(0, size, chunk)]
    clips, overlap = (np.concatenate(p) for p in zip(*parts))
    asked = ask(scenes, overlap, frames, rng)
    return QASplit(torch.from_numpy(clips), *(torch.from_numpy(asked[k]) for k in
                                               ("clip", "questions", "answers", "types")))


def load_video_qa(image_size: int = 32, frames: int = 8, seed: int = 0,
                  sizes: dict[str, int] | None = None) -> VideoQAData:
    """Fixed train/val/test splits (24000/1000/1000 clips by default, about three balanced
    questions a clip) drawn from seeds derived from `seed`; rendered on the first call
    and cached on disk."""
    if frames < 6:
        raise DataError(f"video_qa needs at least 6 frames (four shapes start moving on "
                        f"different frames, with time left to move), got {frames}")
    if image_size < 16:
        raise DataError(f"video_qa image_size must be >= 16 (shapes 2 pixels across or more), "
                        f"got {image_size}")
    sizes = dict(SPLIT_SIZES, **(sizes or {}))
    names = ("train", "val", "test")
    key = (f"video-qa-v{VERSION}-{frames}f-{image_size}px-seed{seed}-"
           + "-".join(str(sizes[k]) for k in names))

    def make() -> dict[str, np.ndarray]:
        arrays = {}
        for i, k in enumerate(names):
            split = make_split(sizes[k], frames, image_size, 1000 * seed + 700 + i)
            arrays.update({f"{k}_{f.name}": getattr(split, f.name).numpy()
                           for f in fields(split)})
        return arrays

    arrays = cached(key, make)
    train, val, test = (QASplit(**{f.name: torch.from_numpy(arrays[f"{k}_{f.name}"])
                                   for f in fields(QASplit)}) for k in names)
    return VideoQAData("video_qa", train, val, test, list(VOCAB), list(ANSWERS), list(TYPES),
                       question_prior(train, test))
