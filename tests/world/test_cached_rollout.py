"""The planners' cached rollout gives the same predictions as chaining the predictor."""
import pytest
import torch
import torch.nn.functional as F

from jepalab.nn.predictor import ActionPredictor
from jepalab.world import plan_rollout, rollout


class Chained:
    """A world model with only `predict`: `plan_rollout` falls back to `rollout`."""

    def __init__(self, predictor, post=None):
        self.predictor, self.post, self.history = predictor, post, predictor.history

    def predict(self, latents, actions):
        out = self.predictor(latents, actions)
        return self.post(out) if self.post else out


def layer_norm(x):
    return F.layer_norm(x, x.shape[-1:])


@pytest.mark.parametrize("history,context,tokens,post", [
    (3, 3, 1, None),        # LeWM with a full history: two frames shared by every plan
    (3, 1, 1, None),        # the first plan of an episode
    (3, 2, 1, None),
    (1, 1, 1, None),        # Two-Room's history 1
    (3, 3, 4, layer_norm),  # V-JEPA 2-AC: patch tokens, layer norm on each prediction
    (2, 2, 4, layer_norm),
])
def test_cached_rollout_is_the_chained_one(history, context, tokens, post):
    torch.manual_seed(0)
    grid = (2, 2) if tokens == 4 else None
    predictor = ActionPredictor(8, 6, width=16, depth=3, num_heads=2, history=history,
                                grid=grid)
    with torch.no_grad():  # trained-looking weights: open gates, outputs of unit scale
        for p in predictor.parameters():
            p.normal_(0, 0.3)
    latents = torch.randn(1, context, tokens, 8)
    past = torch.randn(1, context - 1, 6)
    plans = torch.randn(9, 5, 6)
    chained = plan_rollout(Chained(predictor, post), latents, past, plans)
    cached = predictor.rollout(latents, past, plans, post=post)
    assert chained.shape == cached.shape == (9, 5, tokens, 8)
    assert chained.std() > 0.3 and (chained[:, 1:] - chained[:, :-1]).abs().mean() > 0.1
    torch.testing.assert_close(cached, chained, rtol=1e-5, atol=1e-5)
    # and it is what one candidate alone gives: nothing leaks across the batch
    alone = rollout(Chained(predictor, post), latents, past, plans[3:4])
    torch.testing.assert_close(cached[3:4], alone, rtol=1e-5, atol=1e-5)


def test_cached_rollout_checks_its_context():
    predictor = ActionPredictor(8, 6, width=16, depth=1, num_heads=2, history=2)
    with pytest.raises(ValueError, match="one shared context"):
        predictor.rollout(torch.randn(2, 2, 1, 8), torch.randn(2, 1, 6), torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="more than history 2"):
        predictor.rollout(torch.randn(1, 3, 1, 8), torch.randn(1, 2, 6), torch.randn(2, 3, 6))
