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


class Model(Chained):
    """The smallest world model an Agent plans with: a fixed random 'encoder' and a
    predictor with a cached rollout."""

    def __init__(self, predictor):
        super().__init__(predictor)
        self.pixels_to_latent = torch.randn(3 * 4 * 4, 8)

    def encode(self, pixels, proprio=None):  # (1, 3, 4, 4) uint8 -> (1, 1, 8)
        return (pixels.float().flatten(1) / 255 @ self.pixels_to_latent)[:, None]

    def cached_rollout(self, context, context_actions, plan):
        return self.predictor.rollout(context, context_actions, plan)


@pytest.mark.slow  # about 2 minutes on 2 cores: three compiles
def test_compiled_rollout_plans_as_the_eager_one():
    """`jepalab plan --compile`: the agent's rollout under torch.compile gives the plan the
    eager one gives, from every context length of an episode (one graph each)."""
    import numpy as np

    from jepalab.world.evaluate import Agent, PlanSettings

    torch.manual_seed(0)
    predictor = action_predictor(3, 1)
    with torch.no_grad():
        for p in predictor.parameters():
            p.normal_(0, 0.3)
    model = Model(predictor)
    frames = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    options = {"samples": 32, "elites": 4, "iterations": 3}
    plans = {}
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for compiled in (False, True):
        agent = Agent(model, PlanSettings(compile=compiled, planner_options=options), 2, 3)
        proprio = np.zeros(2, np.float32)
        agent.reset({"goal": frames[-1], "goal_proprio": proprio})
        torch.manual_seed(1)
        chosen, block = [], None
        for frame in frames[:4]:  # contexts of 1, 2, 3 and again 3 frames
            agent.observe({"pixels": frame, "proprio": proprio}, block)
            block = agent.plan()[0]
            chosen.append(block)
        plans[compiled] = torch.stack(chosen)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 3  # one per context
    assert plans[False].abs().sum() > 0
    torch.testing.assert_close(plans[True], plans[False], rtol=1e-4, atol=1e-4)
