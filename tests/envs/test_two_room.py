"""Two-Room: the reset/step/render contract, walls and the door, the success test."""
import numpy as np
import pytest

from jepalab.envs import make
from jepalab.envs.two_room import RADIUS, SUCCESS_DISTANCE, blocked


@pytest.fixture
def env():
    return make("two-room", size=32)


def test_contract(env):
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert obs["pixels"].shape == (32, 32, 3) and obs["pixels"].dtype == np.uint8
    assert info["category"] in ("same-room", "cross-door") and info["success"] is False
    again, _ = make("two-room", size=32).reset(seed=3)
    for key in obs:
        np.testing.assert_array_equal(obs[key], again[key])
    other, _ = env.reset(seed=4)
    assert not np.array_equal(other["pixels"], obs["pixels"])
    np.testing.assert_array_equal(env.render(), other["pixels"])
    for _ in range(env.max_episode_steps - 1):
        *_, terminated, truncated, _ = env.step(np.zeros(2, np.float32))
        assert not (terminated or truncated)
    *_, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert truncated and not terminated and info["success"] is False


def test_goal_image_is_the_agent_at_the_goal(env):
    obs, _ = env.reset(seed=0)
    env.set_position(env.goal)
    np.testing.assert_array_equal(env.render(), obs["goal"])


def test_success_ends_the_episode_with_reward(env):
    env.reset(seed=0, options={"cross_door": False})
    away = 1.5 * SUCCESS_DISTANCE * np.sign(0.5 - env.goal[1])
    env.set_position(env.goal + np.array([0.0, away]))
    assert not env.success()
    for _ in range(10):
        direction = env.goal - env.position
        _, reward, terminated, _, info = env.step(np.clip(direction / 0.04, -1, 1))
        if terminated:
            break
    assert terminated and reward == 1.0 and info["success"] and env.success()


def test_walls_block_and_the_door_lets_through(env):
    env.reset(seed=0)
    env.set_position([0.3, 0.15])          # left room, level with the wall
    for _ in range(20):
        env.step(np.array([1.0, 0.0], np.float32))
    assert env.position[0] < 0.5 - RADIUS  # stopped at the wall
    env.set_position([0.3, 0.5])           # level with the door
    for _ in range(20):
        env.step(np.array([1.0, 0.0], np.float32))
    assert env.position[0] > 0.5 + RADIUS  # through it
    assert blocked(np.array([0.5, 0.1])) and not blocked(np.array([0.5, 0.5]))


def test_half_of_the_evaluation_episodes_cross_the_door(env):
    categories = [env.reset(seed=i, options=env.episode_options(i))[1]["category"]
                  for i in range(10)]
    assert categories.count("cross-door") == 5
    for i in range(10):
        env.reset(seed=i, options=env.episode_options(i))
        crossing = (env.position[0] > 0.5) != (env.goal[0] > 0.5)
        assert crossing == (i % 2 == 1)


def test_noisy_expert_reaches_goals(env):
    rng = np.random.default_rng(0)
    wins = 0
    for i in range(10):
        env.reset(seed=i, options=env.episode_options(i))
        for _ in range(env.max_episode_steps):
            action = np.clip(env.expert_action(rng) + rng.normal(0, 0.3, 2), -1, 1)
            *_, terminated, truncated, _ = env.step(action.astype(np.float32))
            if terminated or truncated:
                break
        wins += terminated
    assert wins >= 9


def test_bad_input_is_refused(env):
    with pytest.raises(RuntimeError, match="reset"):
        make("two-room").step(np.zeros(2, np.float32))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="unknown options"):
        env.reset(seed=0, options={"door": 1})
    with pytest.raises(ValueError, match="size"):
        make("two-room", size=3)
    with pytest.raises(KeyError, match="did you mean 'two-room'"):
        make("two-rooms")
