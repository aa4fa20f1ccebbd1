"""The planners' cached rollout gives the same predictions as chaining the predictor."""
import pytest
import torch
import torch.nn.functional as F

from jepalab.nn.predictor import ActionPredictor
from jepalab.world import plan_rollout, rollout
from jepalab.world.dino_wm import ConcatPredictor


class Chained:
    """A world model with only `predict`: `plan_rollout` falls back to `rollout`."""

    def __init__(self, predictor, post=None):
        self.predictor, self.post, self.history = predictor, post, predictor.history

    def predict(self, latents, actions):
        out = self.predictor(latents, actions)
        return self.post(out) if self.post else out


def layer_norm(x):
    return F.layer_norm(x, x.shape[-1:])


def action_predictor(history, tokens):
    grid = (2, 2) if tokens == 4 else None
    return ActionPredictor(8, 6, width=16, depth=3, num_heads=2, history=history, grid=grid)


def concat_predictor(history, tokens):  # DINO-WM's: the action concatenated to each token
    return ConcatPredictor(8, 6, tokens, action_embed_dim=4, width=16, depth=3, num_heads=2,
                           history=history)


@pytest.mark.parametrize("make,history,context,tokens,post", [
    (action_predictor, 3, 3, 1, None),        # LeWM, a full history: two frames shared
    (action_predictor, 3, 1, 1, None),        # the first plan of an episode
    (action_predictor, 3, 2, 1, None),
    (action_predictor, 1, 1, 1, None),        # Two-Room's history 1
    (action_predictor, 3, 3, 4, layer_norm),  # V-JEPA 2-AC: patch tokens, layer norm
    (action_predictor, 2, 2, 4, layer_norm),
    (concat_predictor, 3, 3, 4, None),        # DINO-WM: patch tokens, no modulation
    (concat_predictor, 3, 1, 4, None),
    (concat_predictor, 2, 2, 4, None),
])
def test_cached_rollout_is_the_chained_one(make, history, context, tokens, post):
    torch.manual_seed(0)
    predictor = make(history, tokens)
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
