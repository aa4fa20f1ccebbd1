"""The question-conditioned QA probe: it reads the answer from the tokens the question
points at, and without the video it learns the answer prior and nothing more."""
from dataclasses import dataclass

import pytest
import torch

from jepalab.data.video_qa import question_prior
from jepalab.eval.qa import QAProbe, qa_probe

COLOURS, ANSWERS, LENGTH = 4, 4, 3  # words: 0 pad, 1 "what", 2 "is", 3.. a colour


@dataclass
class Split:
    clip: torch.Tensor
    questions: torch.Tensor
    answers: torch.Tensor
    types: torch.Tensor


def _questions(colour: torch.Tensor) -> torch.Tensor:
    """'what is <colour>' as word indices, one word short of LENGTH + 1 (padding kept)."""
    return torch.stack([torch.ones_like(colour), 2 * torch.ones_like(colour), 3 + colour], 1)


def colour_clips(n: int, generator: torch.Generator):
    """Tokens (n, COLOURS, 16): token c says it is colour c (dims 0-3) and holds the answer
    to 'what is c' as a one-hot (dims 4-7), plus noise; two questions per clip."""
    value = torch.randint(0, ANSWERS, (n, COLOURS), generator=generator)
    tokens = 0.3 * torch.randn(n, COLOURS, 16, generator=generator)
    tokens[..., :COLOURS] += torch.eye(COLOURS)
    tokens[..., COLOURS:COLOURS + ANSWERS] += torch.nn.functional.one_hot(value, ANSWERS)
    clip = torch.arange(n).repeat_interleave(2)
    colour = torch.randint(0, COLOURS, (2 * n,), generator=generator)
    return tokens, Split(clip, _questions(colour), value[clip, colour], colour % 2)


def test_the_probe_reads_the_token_the_question_names():
    generator = torch.Generator().manual_seed(0)
    (train_x, train), (val_x, val), (test_x, test) = (colour_clips(n, generator)
                                                      for n in (400, 100, 150))
    settings = dict(vocab_size=3 + COLOURS, num_answers=ANSWERS, num_types=2, epochs=10,
                    width=32, lrs=(3e-3,), weight_decays=(0.01,), clips_per_batch=32)
    video = qa_probe(train, val, test, (train_x, val_x, test_x), **settings)
    blind = qa_probe(train, val, test, None, **settings)
    assert blind.test_acc < 0.35  # answers are uniform whatever the question
    assert video.test_acc > blind.test_acc + 0.4, (video, blind)
    assert min(video.per_type) > 0.6


def test_the_question_only_model_reaches_the_prior_of_skewed_answers():
    """Two questions, each with a skewed answer: 70% answer 0 to one, 80% answer 2 to the
    other. Blind to the video, the best is each question's most frequent answer."""
    generator = torch.Generator().manual_seed(1)

    def split(n):
        colour = torch.randint(0, 2, (n,), generator=generator)
        skewed = torch.rand(n, generator=generator)
        answer = torch.where(colour == 0, torch.where(skewed < 0.7, 0, 1),
                             torch.where(skewed < 0.8, 2, 3))
        return Split(torch.arange(n), _questions(colour), answer, colour)

    train, val, test = split(800), split(300), split(1000)
    blind = qa_probe(train, val, test, None, vocab_size=3 + COLOURS, num_answers=ANSWERS,
                     num_types=2, epochs=5, width=32, lrs=(3e-3,), weight_decays=(0.01,))
    prior = question_prior(train, test)
    assert blind.test_acc == pytest.approx(0.75, abs=0.04)
    assert blind.per_type == pytest.approx([prior["descriptive"], prior["counting"]], abs=0.01)


def test_padding_changes_nothing_and_the_blind_model_has_no_cross_attention():
    torch.manual_seed(0)
    probe = QAProbe(3 + COLOURS, 6, ANSWERS, token_dim=16, width=32).eval()
    questions = _questions(torch.tensor([0, 3]))
    padded = torch.cat([questions, torch.zeros(2, 3, dtype=torch.long)], 1)
    tokens = torch.randn(2, 5, 16)
    assert torch.allclose(probe(questions, tokens), probe(padded, tokens), atol=1e-5)
    shared = probe(questions, tokens[:1], torch.tensor([0, 0]))  # both about clip 0
    assert torch.allclose(shared, probe(questions, tokens[[0, 0]]), atol=1e-6)
    assert len(QAProbe(3 + COLOURS, 6, ANSWERS, token_dim=None).looks) == 0
