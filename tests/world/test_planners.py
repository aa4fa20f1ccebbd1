"""Planners find the optimum of a known cost; the evaluation's statistics are right."""
import pytest
import torch

from jepalab.world.evaluate import Agent, PlanSettings, latent_cost, wilson
from jepalab.world.planners import CEM, MPPI, Gradient, make_planner


@pytest.mark.parametrize("name", ["cem", "mppi", "gradient"])
def test_planners_find_the_minimum_of_a_quadratic(name):
    torch.manual_seed(0)
    target = torch.rand(5, 2) * 1.6 - 0.8
    weights = torch.tensor([1.0, 3.0])

    def cost(plans):
        return ((plans - target).square() * weights).sum(dim=(1, 2))

    plan = make_planner(name).plan(cost, 5, 2)
    assert plan.shape == (5, 2)
    assert (plan - target).abs().max() < 0.05
    assert cost(plan[None]) < 0.01 * cost(torch.zeros(1, 5, 2))


def test_optimum_on_the_boundary_is_reached():
    target = torch.tensor([[2.0, -3.0]])  # outside the box: the best plan is its corner
    plan = CEM().plan(lambda p: (p - target).square().sum(dim=(1, 2)), 1, 2)
    assert torch.allclose(plan, torch.tensor([[1.0, -1.0]]), atol=0.05)


def test_warm_start_is_used_and_checked():
    target = torch.full((3, 2), 0.5)
    cost_calls = []

    def cost(plans):
        cost_calls.append(len(plans))
        return (plans - target).square().sum(dim=(1, 2))

    plan = CEM(iterations=1, samples=10, elites=1).plan(cost, 3, 2, mean=target.clone())
    assert torch.allclose(plan, target)  # the mean is always a candidate
    assert cost_calls == [10]
    with pytest.raises(ValueError, match="warm start"):
        MPPI().plan(cost, 3, 2, mean=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="elites"):
        CEM(samples=10, elites=20)
    with pytest.raises(ValueError, match="unknown planner"):
        make_planner("rrt")
    assert isinstance(make_planner("gradient", steps=5), Gradient)


def test_latent_cost_last_sum_ramp_and_l1():
    goal = torch.zeros(1, 2)
    predicted = torch.tensor([[[[1.0, 1.0]], [[2.0, 0.0]]]])  # (N=1, H=2, T=1, D=2)
    assert latent_cost(predicted, goal, "last").item() == pytest.approx(2.0)
    assert latent_cost(predicted, goal, "sum").item() == pytest.approx(1.0 + 2.0)
    assert latent_cost(predicted, goal, "ramp").item() == pytest.approx(1 * 1.0 + 2 * 2.0)
    assert latent_cost(predicted, goal, "l1").item() == pytest.approx((2.0 + 0.0) / 2)
    with pytest.raises(ValueError, match="unknown latent cost 'graph'"):
        latent_cost(predicted, goal, "graph")  # the graph's cost is the graph's own


def test_wilson_interval():
    low, high = wilson(45, 50)
    assert low == pytest.approx(0.7864, abs=1e-3) and high == pytest.approx(0.9565, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


class BlockEcho(torch.nn.Module):
    """A world model whose next latent is the block action itself: planning to a goal
    latent is then a known quadratic in the block's env actions."""
    history = 1

    def encode(self, pixels):
        return torch.zeros(len(pixels), 1, 6)

    def predict(self, latents, actions):
        return actions[:, :, None]


@pytest.mark.parametrize("action_block", ["distinct", "repeat"])
def test_distinct_action_blocks_reach_what_one_repeated_action_cannot(action_block):
    """Blocks of 3 env steps of 2-d actions; the goal asks a different action at each step.
    Distinct blocks (LeWM's) search 6 numbers per block and find it; one repeated action
    can only reach the mean of the three."""
    torch.manual_seed(0)
    goal = torch.tensor([0.6, -0.4, -0.2, 0.5, 0.1, -0.7])
    settings = PlanSettings(horizon=2, execute=2, cost="last", action_block=action_block)
    agent = Agent(BlockEcho(), settings, action_dim=2, frameskip=3)
    agent.goal = goal[None]
    agent.latents, agent.blocks, agent.warm = [torch.zeros(1, 1, 6)], [], None
    blocks = agent.plan()
    assert blocks.shape == (2, 6)             # frameskip * A numbers per executed block
    if action_block == "distinct":
        assert (blocks[-1] - goal).abs().max() < 0.05
    else:
        mean = goal.view(3, 2).mean(0)
        assert torch.allclose(blocks[-1].view(3, 2), mean.expand(3, 2), atol=0.05)
        assert (blocks[-1] - goal).abs().max() > 0.3
