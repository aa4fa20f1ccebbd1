"""Video QA data: balanced answers, questions that read as words, answers the clips show."""
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

from jepalab.data import video_qa
from jepalab.data.images import DataError
from jepalab.data.shapes import cache_dir

pytestmark = pytest.mark.xdist_group("video-qa")  # module fixtures: built once

FRAMES, SIZE, SEED = 8, 32, 5


@pytest.fixture(scope="module")
def split():
    return video_qa.make_split(1500, FRAMES, SIZE, SEED)


def test_every_question_has_each_of_its_answers_equally_often(split):
    by_question = defaultdict(Counter)
    for question, answer in zip(split.questions.tolist(), split.answers.tolist()):
        by_question[tuple(question)][answer] += 1
    assert len(by_question) >= 20
    for question, counts in by_question.items():
        kind = video_qa.TYPES[int(split.types[split.questions.tolist().index(list(question))])]
        assert {video_qa.ANSWERS[a] for a in counts} == set(video_qa.TYPE_ANSWERS[kind])
        assert len(set(counts.values())) == 1, (video_qa.decode(question), counts)
    types = Counter(split.types.tolist())
    assert len(types) == len(video_qa.TYPES) and min(types.values()) > 0.1 * len(split)
    # so a model blind to the video gets chance within each type, no more
    prior = video_qa.question_prior(split, split)
    for kind, rate in prior.items():
        assert rate == pytest.approx(1 / len(video_qa.TYPE_ANSWERS[kind]), abs=0.01), kind


def test_questions_decode_to_the_templates_words(split):
    asked = {video_qa.decode(q) for q in split.questions}
    assert asked <= set(video_qa._question_words())
    assert "what colour is the object that slides left ?" in asked
    assert "do the red and the blue objects touch ?" in asked
    assert video_qa.decode(video_qa.encode("how many objects turn ?")) == "how many objects turn ?"
    assert split.questions.shape[1] == video_qa.QUESTION_LENGTH


def test_counting_answers_match_the_drawn_motions(split):
    """The scenes behind the split are the first draw of its seed: recount from them."""
    scenes = video_qa.draw_scenes(len(split.clips), FRAMES, np.random.default_rng(SEED))
    counting = (split.types == video_qa.TYPES.index("counting")).nonzero()[:, 0]
    assert len(counting) > 100
    for q in counting.tolist():
        word = video_qa.decode(split.questions[q]).removeprefix("how many objects ")[:-2]
        clip = int(split.clip[q])
        motions = scenes.motion[clip][scenes.present[clip]]
        expected = int(np.isin(motions, video_qa.COUNTED[word]).sum())
        assert video_qa.ANSWERS[int(split.answers[q])] == str(expected)


def test_the_answer_to_which_colour_slides_is_the_colour_that_moves_that_way(split):
    """From the pixels alone: the answer colour's centroid moves the asked direction."""
    palette = torch.tensor(list(video_qa.PALETTE.values()))
    agree, asked = 0, 0
    for q in (split.types == video_qa.TYPES.index("descriptive")).nonzero()[:, 0].tolist():
        motion = video_qa.decode(split.questions[q]).split(" that ")[1][:-2]
        if motion not in video_qa.SLIDES:
            continue
        clip = split.clips[int(split.clip[q])].float() / 255  # (T, 3, S, S)
        colour = palette[int(split.answers[q])]
        near = (clip - colour[None, :, None, None]).abs().sum(1) < 0.3  # (T, S, S)
        rows, cols = torch.meshgrid(torch.arange(float(SIZE)), torch.arange(float(SIZE)),
                                    indexing="ij")
        centroid = [torch.stack([(cols * m).sum(), (rows * m).sum()]) / m.sum()
                    for m in near[[0, -1]].float()]
        moved = torch.sign(centroid[1] - centroid[0]).tolist()
        dx, dy = video_qa.SLIDES[motion]
        axis = 0 if dx else 1
        agree += moved[axis] == (dx or dy)
        asked += 1
    assert asked > 50 and agree / asked > 0.95, (agree, asked)


def _two_shapes(start, motion, onset=(0, 0)):
    """One clip of a red and a blue shape (squares of radius 0.25) at `start` (2, 2)."""
    scenes = video_qa.draw_scenes(1, FRAMES, np.random.default_rng(0))
    scenes.present[:] = [[True, True, False, False]]
    scenes.colour[0, :2], scenes.outline[0, :2], scenes.scale[0, :2] = (0, 2), 3, 0.25
    scenes.start[0, :2], scenes.angle[0, :2] = start, 0
    scenes.motion[0, :2], scenes.speed[0, :2], scenes.onset[0, :2] = motion, 0.1, onset
    return scenes


def test_touch_is_overlap_in_some_frame():
    apart = _two_shapes([[-0.6, 0], [0.6, 0]], [0, 0])
    meet = _two_shapes([[-0.6, 0], [0.6, 0]], [2, 1])  # red slides right, blue left
    _, apart_overlap = video_qa.render(apart, FRAMES, SIZE, np.random.default_rng(0))
    _, meet_overlap = video_qa.render(meet, FRAMES, SIZE, np.random.default_rng(0))
    # squares of half-side 0.72 x 0.25 = 0.18 half-widths, 5.8 twice-resolution pixels
    assert apart_overlap[0, 0, 1] == 0 and meet_overlap[0, 0, 1] > 100
    answers = {q: a for kind, q, a in video_qa.candidates(meet, meet_overlap,
                                                         meet.to_wall(FRAMES), 0)}
    assert answers["do the red and the blue objects touch ?"] == "yes"


def test_a_shape_sliding_near_a_wall_reaches_it_soon_and_a_far_one_does_not():
    """Sliding right at 0.1 a frame from frame 0, each shape's centre is 0.7 further right
    at the last frame; "soon" is within frames // 2 = 4 frames (0.4) of it."""
    scenes = _two_shapes([[-0.2, 0], [-0.6, 0.5]], [2, 2])
    # right edges at the last frame: 0.75 (0.25 from the wall) and 0.35 (0.65 from it)
    assert scenes.to_wall(FRAMES)[0, :2] == pytest.approx([0.25 / 0.4, 0.65 / 0.4])
    answers = {q: a for kind, q, a in video_qa.candidates(scenes, np.zeros((1, 4, 4)),
                                                         scenes.to_wall(FRAMES), 0)}
    assert answers["will the red object reach a wall soon ?"] == "yes"
    assert answers["will the blue object reach a wall soon ?"] == "no"


def test_load_caches_and_checks_its_arguments():
    sizes = {"train": 120, "val": 60, "test": 60}
    first = video_qa.load_video_qa(image_size=16, frames=6, seed=1, sizes=sizes)
    assert len(list(cache_dir().glob("video-qa-*6f-16px-seed1-120-60-60.npz"))) == 1
    again = video_qa.load_video_qa(image_size=16, frames=6, seed=1, sizes=sizes)
    assert torch.equal(first.test.clips, again.test.clips)
    assert torch.equal(first.train.questions, again.train.questions)
    assert first.train.clips.shape == (120, 6, 3, 16, 16)
    assert first.answers == list(video_qa.ANSWERS) and set(first.prior) == set(first.types)
    with pytest.raises(DataError, match="at least 6 frames"):
        video_qa.load_video_qa(frames=4)
    with pytest.raises(DataError, match="image_size"):
        video_qa.load_video_qa(image_size=15)
