import math

import numpy as np
import pytest

pytest.importorskip("pymunk")

from jepalab.envs import make  # noqa: E402
from jepalab.envs.pusht import (  # noqa: E402
    AGENT_COLOUR,
    AGENT_RADIUS,
    ANGLE_TOL,
    ARENA,
    BACKGROUND,
    BLOCK_COLOUR,
    POSITION_TOL,
    WALL_INSIDE,
    t_corners,
    t_distance,
)

# A T lying flat in the middle, the agent left of its bar, the goal 0.1 to the right.
FLAT = {"block": (0.5, 0.4, 0.0), "agent": (0.2, 0.44), "goal": (0.6, 0.4, 0.0)}


def physical(pose):
    """Arena units -> the physics' 512 units."""
    return np.asarray(pose) * np.array([ARENA, ARENA, 1.0][: len(pose)])


def rollout(env, actions):
    for action in actions:
        env.step(np.asarray(action, np.float32))


def test_observations_follow_the_contract():
    env = make("pusht", size=64)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["pixels"].shape == obs["goal"].shape == (64, 64, 3)
    assert obs["pixels"].dtype == obs["goal"].dtype == np.uint8
    assert obs["proprio"].shape == (4,) and obs["proprio"].dtype == np.float32
    assert info["success"] is False and info["category"] in ("shift", "turn")
    assert env.action_space.shape == (2,)
    np.testing.assert_array_equal(env.render(), obs["pixels"])
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and isinstance(reward, float)
    assert set(info) >= {"success"}


def test_same_seed_same_episode_and_other_seeds_differ():
    actions = np.random.default_rng(3).uniform(-1, 1, (15, 2))
    first, reused = make("pusht", size=32), make("pusht", size=32)
    reused.reset(seed=7)
    rollout(reused, actions)                 # an earlier episode must leave no trace
    runs = []
    for env in (first, reused):
        obs, _ = env.reset(seed=11)
        rollout(env, actions)
        runs.append((obs, env.render(), env.proprio(), env.block_pose()))
    for a, b in zip(*runs):
        if isinstance(a, dict):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
        else:
            np.testing.assert_array_equal(a, b)
    other, _ = first.reset(seed=12)
    assert not np.array_equal(other["pixels"], runs[0][0]["pixels"])
    assert not np.array_equal(other["goal"], runs[0][0]["goal"])


def test_truncates_at_the_budget():
    env = make("pusht", size=16)
    env.reset(seed=1)
    assert env.max_episode_steps == 50
    for step in range(1, 51):
        _, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
        assert not terminated and reward == 0.0 and not info["success"]
        assert truncated == (step == 50)


def test_reaching_the_goal_terminates_with_reward_one():
    env = make("pusht", size=16)
    env.reset(seed=0, options=FLAT)
    env.set_block_pose((0.6 - 10 / ARENA, 0.4, 0.1))      # inside both tolerances
    _, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert terminated and reward == 1.0 and not truncated and info["success"]


def test_success_is_the_pose_within_tolerance():
    env = make("pusht", size=16)
    env.reset(seed=5)
    x, y, angle = env.goal_pose()
    env.set_agent((0.05, 0.05))
    cases = [((0, 0, 0), True),
             ((0.9 * POSITION_TOL, 0, 0), True),
             ((0, 0, 0.9 * ANGLE_TOL), True),
             ((0.6 * POSITION_TOL, -0.6 * POSITION_TOL, -0.9 * ANGLE_TOL), True),
             ((1.1 * POSITION_TOL, 0, 0), False),
             ((0, -1.1 * POSITION_TOL, 0), False),
             ((0, 0, 1.1 * ANGLE_TOL), False),
             ((0, 0, 2 * math.pi), True),                 # angles compare modulo a turn
             ((0, 0, math.pi), False)]
    for (dx, dy, turn), expected in cases:
        env.set_block_pose((x + dx / ARENA, y + dy / ARENA, angle + turn))
        assert env.success() is expected, (dx, dy, turn)


def test_the_agent_pushes_the_t_and_the_walls_stop_it():
    env = make("pusht", size=16)
    env.reset(seed=0, options=FLAT)
    start = env.block_pose()
    rollout(env, [(1.0, 0.0)] * 6)
    moved = env.block_pose() - start
    assert moved[0] > 40.0 / ARENA                          # pushed right
    agent = np.array(env.agent.position)
    assert t_distance(agent, physical(env.block_pose())) > AGENT_RADIUS - 3.0  # no tunnelling
    assert env.proprio()[0] > 0.3
    rollout(env, [(1.0, 0.0)] * 20)                         # on into the right wall
    assert t_corners(physical(env.block_pose()))[:, 0].max() < WALL_INSIDE[1] + 1.0


def test_the_t_stays_put_when_untouched():
    env = make("pusht", size=16)
    env.reset(seed=0, options=FLAT)
    rollout(env, [(1.0, 0.0)] * 4)                          # push, then back off
    rollout(env, [(-1.0, 0.0)] * 4)
    rest = env.block_pose()
    assert rest[0] > 0.5 + 40.0 / ARENA
    assert t_distance(np.array(env.agent.position), physical(rest)) > 30.0
    rollout(env, [(-0.5, 1.0)] * 5 + [(0.0, -1.0)] * 5 + [(0.0, 0.0)] * 5)
    np.testing.assert_allclose(env.block_pose(), rest, atol=1e-9)
    assert env.block.velocity.length == 0.0


def test_proprio_is_the_agent_in_arena_units_and_walls_hold_it():
    env = make("pusht", size=16)
    env.reset(seed=0, options=FLAT)
    np.testing.assert_allclose(env.proprio(), [0.2, 0.44, 0.0, 0.0], atol=1e-6)
    rollout(env, [(-1.0, -1.0)] * 20)                       # into the top-left corner
    x, y, vx, vy = env.proprio()
    assert 0.0 < x < 0.1 and 0.0 < y < 0.1 and abs(vx) < 1.0 and abs(vy) < 1.0
    np.testing.assert_allclose(env.proprio()[:2], np.array(env.agent.position) / ARENA,
                               rtol=1e-6)


def test_pixels_are_anti_aliased_on_a_light_background():
    env = make("pusht", size=64)
    obs, _ = env.reset(seed=2)
    np.testing.assert_array_equal(obs["pixels"][0, 0], BACKGROUND.astype(np.uint8))
    colours = {tuple(c) for c in obs["pixels"].reshape(-1, 3)}
    assert len(colours) > 10                                # edges blend, not 3 colours
    assert not np.array_equal(obs["pixels"], obs["goal"])
    blue = obs["goal"][..., 2].astype(int) - obs["goal"][..., 0]
    assert (blue > 100).sum() >= 3                          # the goal image shows the agent
    goal_agent = physical(env.goal_agent_position())
    assert abs(t_distance(goal_agent, physical(env.goal_pose())) - AGENT_RADIUS - 2.0) < 0.5


def test_pixels_draw_the_t_and_the_agent_where_they_are():
    env = make("pusht", size=64)                            # 8 units of 512 per pixel
    obs, _ = env.reset(seed=0, options=FLAT)                # bar x 176-336, goal's 227-387
    np.testing.assert_array_equal(obs["pixels"][28, 32], BLOCK_COLOUR.astype(np.uint8))
    np.testing.assert_array_equal(obs["pixels"][28, 12], AGENT_COLOUR.astype(np.uint8))
    np.testing.assert_array_equal(obs["pixels"][28, 45], BACKGROUND.astype(np.uint8))
    np.testing.assert_array_equal(obs["goal"][28, 32], BLOCK_COLOUR.astype(np.uint8))
    np.testing.assert_array_equal(obs["goal"][28, 45], BLOCK_COLOUR.astype(np.uint8))
    np.testing.assert_array_equal(obs["goal"][28, 12], BACKGROUND.astype(np.uint8))


def test_the_expert_solves_most_episodes():
    env = make("pusht", size=16)
    rng = np.random.default_rng(0)
    solved = 0
    for seed in range(10):
        env.reset(seed=seed)
        for _ in range(env.max_episode_steps):
            *_, terminated, truncated, _ = env.step(env.expert_action(rng))
            if terminated or truncated:
                break
        solved += terminated
    assert solved >= 7              # measured 20/20 on seeds 0-19


def test_clear_errors():
    with pytest.raises(ValueError, match="size"):
        make("pusht", size=4)
    env = make("pusht", size=16)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2))
    with pytest.raises(ValueError, match="valid: block"):
        env.reset(seed=0, options={"start": (0.5, 0.5, 0.0)})
    with pytest.raises(ValueError, match="3 finite numbers"):
        env.reset(seed=0, options={"block": (0.5, 0.5)})
    with pytest.raises(ValueError, match="finite"):
        env.reset(seed=0, options={"goal": (0.5, float("nan"), 0.0)})
    with pytest.raises(ValueError, match="wall"):
        env.reset(seed=0, options={"block": (0.02, 0.5, 0.0)})
    with pytest.raises(ValueError, match="overlaps"):
        env.reset(seed=0, options={"block": (0.5, 0.5, 0.0), "agent": (0.5, 0.52)})
    env.reset(seed=0)
    for bad in (np.zeros(3), np.array([np.nan, 0.0]), np.zeros((1, 2))):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
